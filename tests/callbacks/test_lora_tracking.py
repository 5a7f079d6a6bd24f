"""GRPO with a LoRA adapter (TRL's `--use_peft`), tracked: the edge scores follow the adapter, and the
tracker leaves the adapter's training as it found it."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from sparks.callbacks.config import TrackerConfig
from sparks.callbacks.snapshot import score_snapshot
from sparks.probes.edges import edge_scores
from sparks.probes.pairs import Pair, load_pairs
from sparks.probes.patching import exact_edge_effects
from sparks.probes.scoring import graph_of
from sparks.runs.store import RunStore
from tests.callbacks.training_runs import TRACKER, history, lineage_of, run_grpo
from tests.probes.tiny_models import VOCAB, assert_unchanged, lora, random_pairs, snapshot, tiny_model

# The override the README gives for a LoRA run of any recipe.
LORA = ("--use_peft", "true", "--lora_r", "8", "--lora_alpha", "16", "--lora_target_modules", "q_proj", "k_proj", "v_proj", "o_proj")
# Two steps that move the adapter clearly (the recipe's cosine warmup leaves the first step at learning rate 0).
FAST = ("--learning_rate", "1e-2", "--lr_scheduler_type", "constant", "--warmup_steps", "0")
EDGE_TRACKER = TRACKER | {"level": "edge", "top_n": 30, "tau": 0.0}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices: intra-op threads only add spin-wait on a busy machine (as in the probes tests)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def lora_run(base_model_dir, tmp_path_factory) -> Path:
    output_dir = tmp_path_factory.mktemp("lora")
    run_grpo(base_model_dir, output_dir, 2, EDGE_TRACKER, *LORA, *FAST)
    return output_dir


def _stored_ranking(output_dir: Path, step: int) -> torch.Tensor:
    return load_file(str(output_dir / "sparks" / "snapshots" / f"step-{step:08d}" / "scores.safetensors"))["ranking"]


def test_a_tracked_lora_run_scores_the_edges_of_the_adapted_model(base_model_dir, lora_run):
    """Each snapshot is the model as it was then: the base model at step 0, base plus the trained adapter at the end."""
    assert lineage_of(lora_run).steps == [0, 2]
    adapter = load_file(str(lora_run / "adapter_model.safetensors"))
    assert all(adapter[name].abs().max() > 0 for name in adapter if "lora_B" in name)
    assert len([name for name in adapter if "lora_B" in name]) == 4 * 4  # q, k, v, o of 4 layers
    store = RunStore(lora_run)
    config, pairs = TrackerConfig.from_recipe(store.run()["config"]), load_pairs(store.root / "pairs.jsonl")
    base = AutoModelForCausalLM.from_pretrained(base_model_dir, dtype=torch.float32)
    at_start = score_snapshot(base, pairs, config, graph_of(base), 0, 0).ranking
    adapted = PeftModel.from_pretrained(base, lora_run)
    at_end = score_snapshot(adapted, pairs, config, graph_of(adapted), 0, 2).ranking
    torch.testing.assert_close(_stored_ranking(lora_run, 0), at_start, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(_stored_ranking(lora_run, 2), at_end, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(at_end, at_start, rtol=1e-3, atol=1e-3)  # the adapter moved the scores


def test_same_seed_same_adapter_and_logs_with_and_without_the_tracker(base_model_dir, lora_run, tmp_path):
    """TRL's LoRA dropout draws from the RNG at every training step: a tracker that moved the RNG, left
    dropout off or touched the adapter would change the trained adapter."""
    run_grpo(base_model_dir, tmp_path, 2, None, *LORA, *FAST)
    tracked, plain = (load_file(str(directory / "adapter_model.safetensors")) for directory in (lora_run, tmp_path))
    assert tracked.keys() == plain.keys()
    assert all(tracked[name].equal(plain[name]) for name in plain)
    assert history(lora_run) == history(tmp_path)


def test_edge_scores_read_the_adapter_s_projections():
    """q/k/v/o maps read outside the forward include the adapter: scores equal those of the model with
    W + (alpha/r) B A merged in (PEFT's own merge), by EAP-IG and by exact edge patching, and differ
    from the base model's."""
    base, batch = tiny_model(), random_pairs()
    adapted = lora(copy.deepcopy(base), init_b_zero=False)
    merged = copy.deepcopy(adapted).merge_and_unload()
    scores = edge_scores(adapted, batch, "logit_diff", steps=3)
    torch.testing.assert_close(scores.edges, edge_scores(merged, batch, "logit_diff", steps=3).edges, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(scores.edges.sum(2), scores.nodes, rtol=1e-4, atol=1e-6)  # a node's edges add up to it
    exact = exact_edge_effects(adapted, batch, "logit_diff")
    torch.testing.assert_close(exact, exact_edge_effects(merged, batch, "logit_diff"), rtol=1e-5, atol=1e-7)
    plain = edge_scores(base, batch, "logit_diff", steps=3).edges
    assert (scores.edges - plain).abs().max() > 0.1 * plain.abs().max()


def test_a_snapshot_of_a_lora_model_in_training_leaves_it_as_found():
    """Adapter weights and their .grad, every dropout module's training flag and the RNG, as found;
    the scores are those of the model in eval mode (no dropout while scoring)."""
    model = lora(tiny_model(dtype=torch.float32), init_b_zero=False)
    generator = torch.Generator().manual_seed(3)
    for name, parameter in model.named_parameters():
        if "lora_" in name:
            parameter.grad = torch.randn(parameter.shape, generator=generator)
    ids = torch.randint(1, VOCAB, (6, 2, 7), generator=generator)
    ids[:, 1, :3] = ids[:, 0, :3]
    pairs = [Pair("", "", clean.tolist(), corrupted.tolist(), [6]) for clean, corrupted in ids]
    config = TrackerConfig(level="edge", metric="kl", ig_steps=2, replicates=10, top_n=20, tau=0.0, num_problems=8)
    graph = graph_of(model)
    model.train()
    dropouts = [module for name, module in model.named_modules() if name.endswith("lora_dropout.default")]
    assert dropouts and all(module.training and module.p > 0 for module in dropouts)
    before = snapshot(model)
    in_training = score_snapshot(model, pairs, config, graph, 0, 0)
    assert_unchanged(model, before)
    model.eval()
    torch.testing.assert_close(in_training.ranking, score_snapshot(model, pairs, config, graph, 0, 0).ranking, rtol=0, atol=0)
