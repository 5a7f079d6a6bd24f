"""``sparks rescore``: a tracked run's checkpoints scored again give its live snapshots, other settings a second scoring beside them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sparks.analysis.cli import main
from sparks.probes.pairs import load_pairs
from sparks.runs.store import RunStore
from tests.callbacks.training_runs import DEVICE, TRACKER, lineage_of, run_grpo

# Steps that move the weights (the recipe's cosine warmup leaves the first step at learning rate 0),
# and a checkpoint at every snapshot the tracker takes (TRACKER: every 2 steps).
FAST = ("--learning_rate", "1e-2", "--lr_scheduler_type", "constant", "--warmup_steps", "0")
CHECKPOINTS = ("--save_strategy", "steps", "--save_steps", "2")
LORA = ("--use_peft", "true", "--lora_r", "8", "--lora_alpha", "16", "--lora_target_modules", "q_proj", "k_proj", "v_proj", "o_proj")


def rescore(*argv: str) -> int:
    """``sparks rescore`` on the device the runs trained on (training_runs.DEVICE), where the live snapshots were scored."""
    return main(["rescore", *argv, "--device", str(DEVICE)])


@pytest.fixture(scope="module")
def run_dir(base_model_dir, tmp_path_factory) -> Path:
    """Four GRPO steps, tracked at steps 0, 2, 4, with checkpoints at 2 and 4."""
    output_dir = tmp_path_factory.mktemp("grpo")
    run_grpo(base_model_dir, output_dir, 4, TRACKER, *FAST, *CHECKPOINTS)
    return output_dir


@pytest.fixture(scope="module")
def same_settings(run_dir, base_model_dir) -> Path:
    """The run rescored with its own settings, the base model as step 0."""
    assert rescore(str(run_dir), "--base", str(base_model_dir)) == 0
    return run_dir / "rescores" / "eap-ig-node-kl"


def _scores(output_dir: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(str(output_dir / "sparks" / "snapshots" / f"step-{step:08d}" / "scores.safetensors"))


def _record(output_dir: Path, step: int) -> dict:
    return json.loads((output_dir / "sparks" / "snapshots" / f"step-{step:08d}" / "snapshot.json").read_text())


def assert_same_scoring(live: Path, rescored: Path) -> None:
    """Every live snapshot's scores (within float tolerance), circuit, replicate circuits, window and events, rescored."""
    live_lineage, rescored_lineage = lineage_of(live), lineage_of(rescored)
    assert rescored_lineage.steps == live_lineage.steps
    for ours, theirs in zip(rescored_lineage.snapshots, live_lineage.snapshots):
        assert ours.heads == theirs.heads and (ours.replicates == theirs.replicates).all()
        live_scores, rescored_scores = _scores(live, ours.step), _scores(rescored, ours.step)
        assert live_scores.keys() == rescored_scores.keys()
        for name, value in live_scores.items():
            torch.testing.assert_close(rescored_scores[name], value, rtol=1e-5, atol=1e-6)
        live_record, rescored_record = _record(live, ours.step), _record(rescored, ours.step)
        for name in ("circuit", "windows", "pairs", "replicates", "membership"):
            assert rescored_record[name] == live_record[name]
        assert rescored_record["faithfulness"] == pytest.approx(live_record["faithfulness"], rel=1e-5)
    live_events, rescored_events = RunStore(live).read("events.jsonl"), RunStore(rescored).read("events.jsonl")
    assert [{**event, "score": pytest.approx(event["score"], rel=1e-5)} for event in live_events] == rescored_events


def test_a_rescore_with_the_run_settings_gives_its_live_snapshots(run_dir, same_settings, base_model_dir):
    assert lineage_of(run_dir).steps == [0, 2, 4]
    assert not torch.allclose(_scores(run_dir, 0)["mean"], _scores(run_dir, 4)["mean"])  # the checkpoints are other models
    assert_same_scoring(run_dir, same_settings)
    run = RunStore(same_settings).run()
    assert run["rescore"]["changed"] == {}
    assert run["rescore"]["models"] == {"0": str(base_model_dir.resolve()), "2": str((run_dir / "checkpoint-2").resolve()),
                                        "4": str((run_dir / "checkpoint-4").resolve())}
    assert run["config"]["method"] == "eap-ig" and run["pairs"] == 16
    assert load_pairs(same_settings / "sparks" / "pairs.jsonl") == load_pairs(run_dir / "sparks" / "pairs.jsonl")
    assert RunStore(same_settings).read("metrics.jsonl") == RunStore(run_dir).read("metrics.jsonl")
    live_summary = json.loads((run_dir / "sparks" / "summary.json").read_text())
    assert "alignment/reward_key" in live_summary  # the reward alignment is part of what is compared
    assert json.loads((same_settings / "sparks" / "summary.json").read_text()) == {
        name: pytest.approx(value, rel=1e-5) if isinstance(value, float) else value for name, value in live_summary.items()}
    assert not list((run_dir / "rescores").glob(".*"))  # no temporary directory left


def test_other_settings_are_a_second_scoring_stored_beside(run_dir, same_settings, base_model_dir, capsys):
    live_before, same_before = RunStore(run_dir).contents(), RunStore(same_settings).contents()
    assert rescore(str(run_dir), "--base", str(base_model_dir), "--method", "eap", "--metric", "logit_diff") == 0
    assert rescore(str(run_dir), "--level", "edge", "--top-n", "30", "--tau", "0", "--num-problems", "8",
                 "--name", "edges") == 0
    assert f"wrote {run_dir / 'rescores' / 'edges'}" in capsys.readouterr().out
    assert RunStore(run_dir).contents() == live_before and RunStore(same_settings).contents() == same_before
    eap = run_dir / "rescores" / "eap-node-logit_diff"
    assert lineage_of(eap).steps == [0, 2, 4]
    assert RunStore(eap).run()["rescore"]["changed"] == {"method": ["eap-ig", "eap"], "metric": ["kl", "logit_diff"]}
    for step in (0, 2, 4):
        assert not torch.allclose(_scores(eap, step)["mean"], _scores(run_dir, step)["mean"])
    edges = run_dir / "rescores" / "edges"
    assert lineage_of(edges).steps == [0, 2, 4]  # without --base: the base model the run recorded
    assert RunStore(run_dir).run()["base_model"] == str(base_model_dir.resolve())
    run = RunStore(edges).run()
    assert run["rescore"]["changed"] == {"level": ["node", "edge"], "top_n": [5000, 30], "tau": [0.1, 0.0],
                                         "num_problems": [16, 8], "pairs": [16, 8]}
    assert len(load_pairs(edges / "sparks" / "pairs.jsonl")) == 8 == _record(edges, 2)["pairs"]
    assert _scores(edges, 2)["ranking"].shape != _scores(run_dir, 2)["ranking"].shape  # edges ranked, not heads


def test_an_existing_rescore_is_replaced_only_with_force(run_dir, same_settings, base_model_dir, capsys):
    written = (same_settings / "sparks" / "lineage.json").stat().st_mtime_ns
    assert rescore(str(run_dir), "--base", str(base_model_dir)) == 2
    assert capsys.readouterr().err == f"sparks: error: {same_settings} exists: pass --force to replace it, or another --name\n"
    assert (same_settings / "sparks" / "lineage.json").stat().st_mtime_ns == written
    assert rescore(str(run_dir), "--base", str(base_model_dir), "--force") == 0
    assert (same_settings / "sparks" / "lineage.json").stat().st_mtime_ns != written
    assert_same_scoring(run_dir, same_settings)


def _one_error(capsys, *words: str) -> None:
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if line.startswith("sparks: error:")]
    assert len(errors) == 1 and errors[0] == lines[-1] and all(word in errors[0] for word in words), lines


@pytest.mark.hostile
def test_bad_input_is_one_line_and_writes_nothing(run_dir, tmp_path, capsys):
    assert rescore(str(tmp_path)) == 2
    _one_error(capsys, "not a tracked run", "sparks/run.json")
    shutil.copytree(run_dir / "sparks", tmp_path / "uncheckpointed" / "sparks")
    assert rescore(str(tmp_path / "uncheckpointed")) == 2
    _one_error(capsys, "no checkpoint-* directories and no final model", "--save_strategy steps")
    with pytest.raises(SystemExit) as stopped:  # a bad value is refused as the flag is read, with the command's usage
        rescore(str(run_dir), "--ig-steps", "0", "--name", "bad")
    assert stopped.value.code == 2
    _one_error(capsys, "--ig-steps: must be a whole number > 0, got 0")
    assert rescore(str(run_dir), "--pairs", str(tmp_path / "missing.jsonl"), "--name", "bad") == 2
    _one_error(capsys, "--pairs", "missing.jsonl")
    torn = tmp_path / "torn"
    shutil.copytree(run_dir, torn, ignore=shutil.ignore_patterns("rescores"))
    pair_file = torn / "sparks" / "pairs.jsonl"  # pairs other than the arithmetic world's draw, as from a pair file
    pair_file.write_text("".join(pair_file.read_text().splitlines(keepends=True)[:-1]))
    assert rescore(str(torn), "--num-problems", "8") == 2
    _one_error(capsys, "tracker.num_problems", "--pairs")
    (torn / "checkpoint-4" / "model.safetensors").write_bytes(b"not weights")
    assert rescore(str(torn)) == 2  # checkpoint-2 is scored, then checkpoint-4 fails
    _one_error(capsys, "checkpoint-4", "cannot be loaded")
    assert not (tmp_path / "uncheckpointed" / "rescores").exists() and not (torn / "rescores").exists()
    assert not (run_dir / "rescores" / "bad").exists()


def test_a_lora_run_is_rescored_on_the_base_model_its_adapters_name(base_model_dir, tmp_path):
    """Step 0 is the base model the adapter config names (the live step 0 is the base with the zero-effect initial
    adapter: the same scores up to float rounding); the checkpoints are that base with their adapters."""
    run_grpo(base_model_dir, tmp_path, 2, TRACKER, *LORA, *FAST, *CHECKPOINTS)
    assert (tmp_path / "checkpoint-2" / "adapter_model.safetensors").is_file()
    assert rescore(str(tmp_path), "--name", "lora") == 0
    rescored = tmp_path / "rescores" / "lora"
    assert RunStore(rescored).run()["rescore"]["models"] == {
        "0": str(base_model_dir.resolve()), "2": str((tmp_path / "checkpoint-2").resolve())}
    assert_same_scoring(tmp_path, rescored)


def test_the_final_model_stands_for_a_missing_checkpoint_of_the_last_step(run_dir, base_model_dir, tmp_path):
    """The run's final model, saved in its directory at step 4, is scored as step 4 when no checkpoint holds it."""
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("rescores", "checkpoint-4"))
    assert rescore(str(copy), "--base", str(base_model_dir)) == 0
    rescored = copy / "rescores" / "eap-ig-node-kl"
    assert RunStore(rescored).run()["rescore"]["models"]["4"] == str(copy.resolve())
    assert_same_scoring(copy, rescored)
