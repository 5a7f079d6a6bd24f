"""The tracker on a sharded model after optimizer steps scores every snapshot as one unsharded process does.

ZeRO-3 (node and edge level; the paper's SFT recipe is ZeRO-3 at edge level): two CPU processes
(gloo) run tiny SFT under `accelerate launch`, and one plain process runs the same SFT in the test's
own process. Two ranks of 8 examples a step take the batches one process of 16 takes, so the weights
agree at every step and so must the stored scores of every snapshot. SFT, since it changes the
weights every step (GRPO on a random model earns no reward and its steps change nothing). ZeRO-3
shards every parameter here (``stage3_param_persistence_threshold: 0``; by default DeepSpeed keeps
every parameter of a model this small whole on every rank), so the tracker's reads outside the
forward must gather them. deepspeed is part of the test environment (`make install`): without it
the ZeRO-3 runs fail.

FSDP2 (edge level): accelerate applies FSDP on accelerators only, so fsdp2_training.py's own loop
takes the optimizer steps, under torchrun and in the test's process.

Every sharded run records that each snapshot scored a model sharded on both ranks (held_parameters).
Edge level runs on a Qwen2 and on a Gemma 2, whose attention output norms take the edge maths
through the norm's Jacobian and earlier layers' norms gathered inside later layers' forward.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.callbacks import fsdp2_training
from tests.callbacks.training_runs import REPO, SMALL_SFT, run_sft

STEPS = 3
assert fsdp2_training.STEPS == STEPS
PER_RANK = 8  # SMALL_SFT's per-device batch
TRACKER = {"every": 1, "num_problems": 5, "batch_size": 2, "replicates": 4, "dashboards": ["none"]}
TOLERANCE = 1e-4
"""Largest difference allowed between a sharded and the plain run's score, relative to the plain
score of largest size in the same tensor (measured: at most 1e-5)."""
LAUNCH = {
    "compute_environment": "LOCAL_MACHINE", "machine_rank": 0, "num_machines": 1, "num_processes": 2,
    "rdzv_backend": "static", "same_network": True, "use_cpu": False,  # as in configs/accelerate/cpu.yaml
}
DEEPSPEED = {
    "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0},
    "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto", "train_batch_size": "auto",
}
RUNS = [("zero3", "node", "qwen2"), ("zero3", "edge", "qwen2"), ("fsdp2", "edge", "qwen2"), ("zero3", "edge", "gemma2"),
        ("fsdp2", "edge", "gemma2")]
MODEL_DIRS = {"qwen2": "random_model_dir", "gemma2": "sandwich_model_dir"}
"""Gemma 2's output norms put its edge maths through a path of their own (probes.architectures)."""
CPU_ONLY = {**os.environ, "DS_ACCELERATOR": "cpu", "CUDA_VISIBLE_DEVICES": ""}  # the CPU, even where there is a GPU


def zero3_config(folder: Path) -> Path:
    """accelerate's config for DeepSpeed ZeRO-3 on 2 CPU processes, written to ``folder``."""
    assert importlib.util.find_spec("deepspeed"), "deepspeed is missing: `make install` installs it"
    (folder / "deepspeed.json").write_text(json.dumps(DEEPSPEED))
    config = {**LAUNCH, "distributed_type": "DEEPSPEED",
              "deepspeed_config": {"deepspeed_config_file": str(folder / "deepspeed.json"), "zero3_init_flag": True}}
    (folder / "accelerate.yaml").write_text(yaml.safe_dump(config))
    return folder / "accelerate.yaml"


def launch(command: list[str]) -> None:
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
                            env=CPU_ONLY, timeout=300)
    assert result.returncode == 0, result.stdout[-6000:]


@pytest.fixture(scope="module", params=RUNS, ids=["-".join(run) for run in RUNS])
def runs(request, tmp_path_factory) -> tuple[Path, Path, list[dict]]:
    """The run stores of the sharded and of the plain run, and the sharded ranks' records (held_parameters)."""
    sharding, level, family = request.param
    random_model_dir = request.getfixturevalue(MODEL_DIRS[family])
    folder = tmp_path_factory.mktemp(f"{sharding}-{level}-{family}")
    tracker = json.dumps({**TRACKER, "level": level})
    if sharding == "zero3":
        launch([sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(zero3_config(folder)),
                "-m", "tests.callbacks.sharded_training", str(folder / "held"),
                "--config", str(REPO / "configs/tiny/sft.yaml"), "--model_name_or_path", str(random_model_dir),
                "--output_dir", str(folder / "sharded"), "--max_steps", str(STEPS), *SMALL_SFT,
                "--use_cpu", "true", "--tracker", tracker])
        run_sft(random_model_dir, folder / "plain", STEPS, json.loads(tracker), "--per_device_train_batch_size",
                str(2 * PER_RANK))
    else:
        launch([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                "-m", "tests.callbacks.fsdp2_training", str(random_model_dir), str(folder / "sharded"),
                tracker, str(folder / "held")])
        fsdp2_training.train(str(random_model_dir), str(folder / "plain"), json.loads(tracker))
    records = [json.loads(line) for rank in (0, 1) for line in (folder / f"held-rank{rank}.jsonl").read_text().splitlines()]
    return folder / "sharded/sparks", folder / "plain/sparks", records


def snapshot(store: Path, step: int) -> tuple[dict[str, torch.Tensor], dict]:
    folder = store / f"snapshots/step-{step:08d}"
    return load_file(str(folder / "scores.safetensors")), json.loads((folder / "snapshot.json").read_text())


def test_every_snapshot_scored_a_model_sharded_on_both_ranks(runs):
    records = runs[2]
    assert sorted(record["step"] for record in records) == sorted(2 * list(range(STEPS + 1)))
    assert all(record["sharded"] and record["shards"] > 0 for record in records), records


def test_every_snapshot_after_optimizer_steps_equals_one_unsharded_process(runs):
    sharded, plain, _ = runs
    steps = [f"step-{step:08d}" for step in range(STEPS + 1)]
    assert sorted(path.name for path in (sharded / "snapshots").iterdir()) == steps
    for step in range(STEPS + 1):
        (scores, meta), (expected, expected_meta) = snapshot(sharded, step), snapshot(plain, step)
        assert scores.keys() == expected.keys()
        for name, value in expected.items():
            scale = value.double().abs().max()
            assert scale > 0, (step, name)
            difference = (scores[name].double() - value.double()).abs().max()
            assert difference <= TOLERANCE * scale, f"step {step} {name}: {difference:.2e} against {scale:.2e}"
        assert meta["circuit"] == expected_meta["circuit"], step


def test_the_optimizer_steps_moved_the_scores_far_beyond_the_tolerance(runs):
    (first, _), (last, _) = snapshot(runs[1], 0), snapshot(runs[1], STEPS)
    scale = first["mean"].double().abs().max()
    assert (last["mean"].double() - first["mean"].double()).abs().max() > 100 * TOLERANCE * scale
