"""The tracker under `accelerate launch --num_processes 2` on CPU (gloo): pairs split, scores summed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]
SMALL_GRPO = [
    "--max_steps", "2", "--per_device_train_batch_size", "4", "--num_generations", "4",
    "--max_completion_length", "8", "--num_train_examples", "16", "--logging_steps", "1",
]
TRACKER = {"every": 1, "num_problems": 13, "dashboards": ["none"], "batch_size": 4}


def launch(model_dir: Path, output_dir: Path, processes: int, *overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(REPO / "configs/accelerate/cpu.yaml"),
        "--num_processes", str(processes), str(REPO / "train/grpo.py"), "--config", str(REPO / "configs/tiny/grpo.yaml"),
        "--model_name_or_path", str(model_dir), "--output_dir", str(output_dir), *SMALL_GRPO,
        "--tracker", json.dumps(TRACKER), *overrides,
    ]
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, timeout=600)
    assert not check or result.returncode == 0, result.stdout[-6000:]
    return result


@pytest.fixture(scope="module")
def runs(random_model_dir, tmp_path_factory) -> dict[int, tuple[Path, str]]:
    outputs = {}
    for processes in (1, 2):
        output_dir = tmp_path_factory.mktemp(f"tracked-{processes}")
        result = launch(random_model_dir, output_dir, processes)
        outputs[processes] = (output_dir / "sparks", result.stdout)
    return outputs


def test_two_processes_score_the_base_model_as_one_does(runs):
    one, two = (load_file(str(runs[n][0] / "snapshots/step-00000000/scores.safetensors")) for n in (1, 2))
    pairs = len((runs[1][0] / "pairs.jsonl").read_text().splitlines())
    assert pairs % 2 == 1, "an odd pair count makes one rank score a padding pair that must not count"
    for name in ("mean", "mean_abs", "importance"):
        torch.testing.assert_close(two[name], one[name], rtol=1e-5, atol=1e-7)
    assert json.loads((runs[2][0] / "snapshots/step-00000000/snapshot.json").read_text())["pairs"] == pairs


def test_two_processes_give_the_uncertainty_and_confident_events_of_one(runs):
    for step in ("00000000", "00000001", "00000002"):
        one, two = (json.loads((runs[n][0] / f"snapshots/step-{step}/snapshot.json").read_text()) for n in (1, 2))
        for name in ("stability", "null_churn"):
            assert two[name] == pytest.approx(one[name], rel=1e-9), (step, name)
        # the random model's effects are ~1e-5 (float32 KL), so other batch compositions move them by ~1e-7
        assert two["faithfulness"] == pytest.approx(one["faithfulness"], abs=1e-3)
        assert two["faithfulness_interval"] == pytest.approx(one["faithfulness_interval"], abs=1e-3)
        assert two["membership"] == one["membership"] and two["circuit"] == one["circuit"]
    one, two = ([json.loads(line) for line in (runs[n][0] / "events.jsonl").read_text().splitlines()] for n in (1, 2))
    assert [(e["step"], e["layer"], e["head"], e["event"], e["confidence"], e["confident"]) for e in two] == \
           [(e["step"], e["layer"], e["head"], e["event"], e["confidence"], e["confident"]) for e in one]
    assert all(event["confidence"] is not None for event in one)


def test_only_the_main_process_writes_and_reports(runs):
    store, stdout = runs[2]
    assert sorted(path.name for path in (store / "snapshots").iterdir()) == ["step-00000000", "step-00000001", "step-00000002"]
    assert stdout.count("sparks: step 0:") == 1
    events = [json.loads(line) for line in (store / "events.jsonl").read_text().splitlines()]
    assert len(events) == len({(e["step"], e["layer"], e["head"], e["event"]) for e in events})


def last_line(result: subprocess.CompletedProcess) -> str:
    return [line for line in result.stdout.splitlines() if line.strip()][-1]


@pytest.mark.hostile
def test_two_processes_refuse_a_relaunch_over_the_run_store_with_one_last_line(runs, random_model_dir):
    store = runs[2][0]
    before = (store / "lineage.json").read_text()
    result = launch(random_model_dir, store.parent, 2, check=False)
    assert result.returncode != 0
    assert last_line(result).startswith(f"sparks: error: output_dir: {store} holds the head lineage of an earlier run")
    assert (store / "lineage.json").read_text() == before


@pytest.mark.hostile
def test_two_processes_resume_from_the_last_checkpoint_and_refuse_other_pairs_together(random_model_dir, tmp_path):
    saving = ("--save_strategy", "steps", "--save_steps", "1")
    launch(random_model_dir, tmp_path, 2, *saving, "--max_steps", "1")
    result = launch(random_model_dir, tmp_path, 2, *saving)  # max_steps 2: resumes from checkpoint-1 by itself
    assert result.stdout.count("sparks: resuming the run store at step 1: 2 snapshots kept") == 1
    lineage = json.loads((tmp_path / "sparks/lineage.json").read_text())
    assert [snapshot["step"] for snapshot in lineage["snapshots"]] == [0, 1, 2]
    shutil.rmtree(tmp_path / "checkpoint-2")
    pairs = tmp_path / "sparks/pairs.jsonl"
    pairs.write_text("".join(pairs.read_text().splitlines(keepends=True)[1:]))  # scored on other pairs
    refused = launch(random_model_dir, tmp_path, 2, *saving, check=False)  # both ranks stop at train begin
    assert refused.returncode != 0
    assert last_line(refused).startswith("sparks: error: tracker.pairs: the probe pairs differ")
