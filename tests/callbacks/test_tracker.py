"""HeadTrackerCallback inside real TRL training: schedule, run store, non-interference, failures, resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

import sparks.callbacks.snapshot
import sparks.callbacks.tracker
import sparks.dashboards.registry
import sparks.probes.circuit_scoring
import sparks.probes.probe_set
from sparks.probes.pairs import load_pairs, save_pairs
from sparks.probes.schemes import numbers_pairs
from sparks.runs.store import RunStore
from sparks.tasks import arith
from tests.callbacks import training_runs
from tests.callbacks.training_runs import TRACKER, history, lineage_of, run_grpo, run_sft


@pytest.fixture(scope="module", autouse=True)
def on_device(device):
    """Every test here trains on each device present (conftest.DEVICES): run_grpo and run_sft use training_runs.DEVICE."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training_runs, "DEVICE", device)
        yield device


@pytest.fixture(scope="module")
def tracked_run(base_model_dir, tmp_path_factory) -> Path:
    output_dir = tmp_path_factory.mktemp("tracked")
    run_grpo(base_model_dir, output_dir, 5, TRACKER)
    return output_dir


def test_snapshots_at_the_start_every_n_steps_and_the_end(tracked_run):
    assert lineage_of(tracked_run).steps == [0, 2, 4, 5]
    store = RunStore(tracked_run)
    assert store.run()["job_type"] == "grpo"
    directories = sorted(path.name for path in (store.root / "snapshots").iterdir())
    assert directories == ["step-00000000", "step-00000002", "step-00000004", "step-00000005"]
    snapshot = json.loads((store.root / "snapshots/step-00000002/snapshot.json").read_text())
    assert snapshot["pairs"] == len(store.read("pairs.jsonl")) > 0
    tensors = load_file(str(store.root / "snapshots/step-00000002/scores.safetensors"))
    assert tensors["importance"].shape == (4, 8)
    assert float(tensors["importance"].sum()) == pytest.approx(1.0)
    assert sorted(map(tuple, snapshot["circuit"])) == sorted(lineage_of(tracked_run).snapshots[1].heads)
    assert snapshot["replicates"] == 100 and np.array(snapshot["membership"]).shape == (4, 8)
    membership = np.array(snapshot["membership"])
    assert ((membership >= 0) & (membership <= 1)).all()
    assert all(membership[layer, head] > 0 for layer, head in snapshot["circuit"])
    assert 0.0 < snapshot["stability"] <= 1.0 and snapshot["null_churn"] >= 0.0
    low, high = snapshot["faithfulness_interval"]
    assert low <= snapshot["faithfulness"] <= high and low < high
    assert (tensors["importance_low"] <= tensors["importance_high"]).all()


def test_event_log_is_the_lineage_events_with_their_confidence(tracked_run):
    events = RunStore(tracked_run).read("events.jsonl")
    assert events == lineage_of(tracked_run).events
    assert all(0.0 <= event["confidence"] <= 1.0 and event["confident"] == (event["confidence"] >= 0.9) for event in events)


def test_reward_window_is_the_mean_reward_since_the_previous_snapshot(tracked_run):
    rewards = {entry["step"]: entry["reward"] for entry in history(tracked_run) if "reward" in entry}
    assert sorted(rewards) == [1, 2, 3, 4, 5] and len(set(rewards.values())) > 1
    lineage = lineage_of(tracked_run)
    expected = [None, np.mean([rewards[1], rewards[2]]), np.mean([rewards[3], rewards[4]]), rewards[5]]
    assert [snapshot.reward for snapshot in lineage.snapshots][0] is None
    assert [snapshot.reward for snapshot in lineage.snapshots][1:] == pytest.approx(expected[1:])
    kept = RunStore(tracked_run).read("metrics.jsonl")
    assert [record["step"] for record in kept] == [1, 2, 3, 4, 5]
    assert all("rewards/accuracy_reward/mean" in record for record in kept)


def test_summary_counts_the_snapshots(tracked_run):
    text = (tracked_run / "sparks" / "summary.json").read_text()
    summary = json.loads(text)
    assert "NaN" not in text
    assert summary["heads/snapshots"] == 4
    assert summary["alignment/reward_key"] == "reward"
    # 4 snapshots give 2 usable reward changes: no correlation is stated
    for series in ("confident_churn", "confident_emergent_change"):
        assert summary[f"alignment/{series}/pearson/insufficient"] is True
        assert summary[f"alignment/{series}/pearson/r"] is None and summary[f"alignment/{series}/spearman/p"] is None
    assert summary["heads/confident_churn_total"] <= summary["heads/raw_churn_total"]


def test_same_seed_same_weights_and_logs_with_and_without_the_tracker(base_model_dir, tracked_run, tmp_path):
    run_grpo(base_model_dir, tmp_path, 5, None)
    base = load_file(str(base_model_dir / "model.safetensors"))
    tracked, plain = load_file(str(tracked_run / "model.safetensors")), load_file(str(tmp_path / "model.safetensors"))
    assert tracked.keys() == plain.keys()
    for name in plain:
        assert tracked[name].equal(plain[name]), name
    assert any(not plain[name].equal(base[name]) for name in plain), "training must have moved the weights"
    assert history(tracked_run) == history(tmp_path)


def test_a_failed_snapshot_is_recorded_and_training_goes_on(random_model_dir, tmp_path, monkeypatch):
    real_score_pairs = sparks.probes.circuit_scoring.score_pairs
    calls = []

    def failing_second_time(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("scoring broke")
        return real_score_pairs(*args, **kwargs)

    monkeypatch.setattr(sparks.probes.circuit_scoring, "score_pairs", failing_second_time)
    run_grpo(random_model_dir, tmp_path, 4, TRACKER)
    failures = RunStore(tmp_path).read("failures.jsonl")
    assert [(failure["step"], failure["error"]) for failure in failures] == [(2, "RuntimeError: scoring broke")]
    assert "Traceback" in failures[0]["traceback"]
    assert lineage_of(tmp_path).steps == [0, 4]
    assert (tmp_path / "model.safetensors").exists()


def test_strict_makes_a_failed_snapshot_fatal(random_model_dir, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("scoring broke")

    monkeypatch.setattr(sparks.probes.circuit_scoring, "score_pairs", broken)
    with pytest.raises(RuntimeError, match="tracker.strict"):
        run_grpo(random_model_dir, tmp_path, 2, TRACKER | {"strict": True})
    assert not (tmp_path / "model.safetensors").exists()


class BrokenDashboard:
    def snapshot(self, report) -> None:
        raise RuntimeError("dashboard down")

    def failure(self, step: int, message: str) -> None:
        pass

    def summary(self, values: dict) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_failing_dashboard_is_recorded_and_fatal_only_when_strict(random_model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(sparks.dashboards.registry, "make_dashboards", lambda *args, **kwargs: [BrokenDashboard()])
    run_grpo(random_model_dir, tmp_path / "lenient", 2, TRACKER)
    failures = RunStore(tmp_path / "lenient").read("failures.jsonl")
    assert [failure["step"] for failure in failures] == [0, 2]
    assert all(failure["error"] == "RuntimeError: dashboard down" for failure in failures)
    assert lineage_of(tmp_path / "lenient").steps == [0, 2]  # the run store holds every snapshot
    with pytest.raises(RuntimeError, match="tracker.strict"):
        run_grpo(random_model_dir, tmp_path / "strict", 2, TRACKER | {"strict": True})
    assert not (tmp_path / "strict" / "model.safetensors").exists()


def test_resuming_gives_the_events_and_confidences_of_one_uninterrupted_run(random_model_dir, tmp_path):
    tracker = TRACKER | {"every": 3}
    saving = ("--save_strategy", "steps", "--save_steps", "3")
    run_sft(random_model_dir, tmp_path / "whole", 6, tracker)
    run_sft(random_model_dir, tmp_path / "split", 3, tracker, *saving)
    (tmp_path / "split" / "model.safetensors").unlink()
    run_sft(random_model_dir, tmp_path / "split", 6, tracker, *saving,
            "--resume_from_checkpoint", str(tmp_path / "split" / "checkpoint-3"))
    whole, split = lineage_of(tmp_path / "whole"), lineage_of(tmp_path / "split")
    assert split.steps == whole.steps == [0, 3, 6]
    for one, other in zip(whole.snapshots, split.snapshots):
        np.testing.assert_allclose(one.scores, other.scores, rtol=1e-5, atol=1e-7)
        assert one.heads == other.heads and one.reward == pytest.approx(other.reward, nan_ok=True)
    events = RunStore(tmp_path / "split").read("events.jsonl")
    assert events == RunStore(tmp_path / "whole").read("events.jsonl")  # confidences included
    assert all(event["confidence"] is not None for event in events)
    for one, other in zip(whole.snapshots, split.snapshots):
        assert np.array_equal(one.replicates, other.replicates)
    steps = [record["step"] for record in RunStore(tmp_path / "split").read("metrics.jsonl")]
    assert steps == sorted(set(steps)) and steps[-1] == 6


def test_resume_drops_what_came_after_the_checkpoint(random_model_dir, tmp_path):
    run_grpo(random_model_dir, tmp_path, 4, TRACKER)
    store = RunStore(tmp_path)
    resumed = store.resume(3, store.read("metrics.jsonl"))
    assert resumed.lineage.steps == [0, 2]
    assert resumed.notes == ["dropped the snapshots after step 3 (steps 4); training from the checkpoint scores them again"]
    assert sorted(path.name for path in (tmp_path / "sparks/snapshots").iterdir()) == ["step-00000000", "step-00000002"]
    assert max(record["step"] for record in store.read("metrics.jsonl")) == 3
    assert lineage_of(tmp_path).steps == [0, 2]
    assert store.read("events.jsonl") == resumed.lineage.events
    shutil.rmtree(tmp_path / "sparks")
    assert RunStore(tmp_path).resume(3, []) is None


def test_gradient_checkpointing_runs_train_the_same_with_the_tracker(base_model_dir, tmp_path):
    checkpointing = ("--gradient_checkpointing", "true")
    run_grpo(base_model_dir, tmp_path / "tracked", 3, TRACKER, *checkpointing)
    run_grpo(base_model_dir, tmp_path / "plain", 3, None, *checkpointing)
    tracked, plain = (load_file(str(tmp_path / name / "model.safetensors")) for name in ("tracked", "plain"))
    assert all(tracked[name].equal(plain[name]) for name in plain)
    assert history(tmp_path / "tracked") == history(tmp_path / "plain")
    assert lineage_of(tmp_path / "tracked").steps == [0, 2, 3]


def test_edge_level_snapshots_store_edges_and_their_circuit(random_model_dir, tmp_path):
    run_grpo(random_model_dir, tmp_path, 2, TRACKER | {"level": "edge", "top_n": 30, "tau": 0.0})
    snapshot = tmp_path / "sparks" / "snapshots" / "step-00000002"
    tensors = load_file(str(snapshot / "scores.safetensors"))
    circuit = json.loads((snapshot / "circuit" / "circuit.json").read_text())
    assert tensors["ranking"].shape == (len(circuit["upstream"]), len(circuit["downstream"]))
    record = json.loads((snapshot / "snapshot.json").read_text())
    assert 0.0 < record["faithfulness"] <= 1.0 + 1e-6 and 0.0 < record["stability"] <= 1.0
    assert 0 < len(circuit["edges"]) <= 30
    senders = {upstream for upstream, _ in circuit["edges"]}
    assert {f"a{layer}.h{head}" for layer, head in circuit["heads"]} <= senders
    assert float(tensors["importance"].sum()) == pytest.approx(1.0)


def test_a_pair_file_is_read_once_before_the_model_loads_and_scored(random_model_dir, tmp_path, monkeypatch):
    pairs = numbers_pairs(AutoTokenizer.from_pretrained(random_model_dir), arith.problems("probe", [3, 4], 8, seed=0))
    save_pairs(pairs, tmp_path / "pairs.jsonl")
    built = []
    build = sparks.probes.probe_set.ProbeSet.build
    monkeypatch.setattr(sparks.probes.probe_set.ProbeSet, "build", lambda *args, **kwargs: built.append(1) or build(*args, **kwargs))
    run_sft(random_model_dir, tmp_path / "run", 2, TRACKER | {"pairs": str(tmp_path / "pairs.jsonl")})
    assert built == [1], "read again at train begin"
    assert load_pairs(tmp_path / "run" / "sparks" / "pairs.jsonl") == pairs
    assert lineage_of(tmp_path / "run").steps == [0, 2]


def test_a_torch_compile_run_is_scored_on_the_uncompiled_module(random_model_dir, tmp_path, monkeypatch):
    """The trainer compiles a wrapper (accelerate's dynamo plugin) and hands callbacks the module itself, whose
    hooks run: every snapshot equals the uncompiled run's. A module compiled in place is refused (test_architectures)."""
    run_grpo(random_model_dir, tmp_path / "plain", 2, TRACKER)
    compiled_models = []
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, *a, **k: compiled_models.append(model) or compile_(model, *a, **k))
    run_grpo(random_model_dir, tmp_path / "compiled", 2, TRACKER, "--torch_compile", "true", "--torch_compile_backend", "eager")
    assert any(isinstance(model, torch.nn.Module) for model in compiled_models), "the trainer compiled nothing"
    for step in ("00000000", "00000002"):
        plain, compiled = (load_file(str(tmp_path / run / f"sparks/snapshots/step-{step}/scores.safetensors"))
                           for run in ("plain", "compiled"))
        assert plain["mean_abs"].abs().max() > 0
        for name in ("mean", "mean_abs"):
            torch.testing.assert_close(compiled[name], plain[name], rtol=1e-5, atol=1e-8)


def test_edge_level_on_a_node_only_family_stops_before_the_first_step(tmp_path):
    """Gemma 4's residual is rescaled per layer (probes.architectures): at edge level the run stops at train
    begin with the table's one line, before any step or snapshot."""
    import transformers

    from sparks.tasks.tokenizer import build_tokenizer

    tokenizer = build_tokenizer()
    config = transformers.AutoConfig.for_model(
        "gemma4_text", vocab_size=-(-len(tokenizer) // 8) * 8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, global_head_dim=16, hidden_size_per_layer_input=0,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    model_dir = tmp_path / "gemma4"
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    with pytest.raises(ValueError, match="^gemma4_text is scored at node level only, not edge: each layer's layer_scalar"):
        run_grpo(model_dir, tmp_path / "run", 2, {**TRACKER, "level": "edge"})
    assert not (tmp_path / "run" / "sparks" / "snapshots").exists()
    assert not list((tmp_path / "run").glob("checkpoint-*"))
