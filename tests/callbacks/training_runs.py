"""Training runs with the head tracker for the tests: the scripts' own entry points, small and fast."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from trl import GRPOConfig, ModelConfig, SFTConfig

from sparks.runs.lineage import HeadLineage
from sparks.train import grpo, sft
from sparks.train.arguments import GRPOScriptArguments, RecipeArguments, parse_recipe

REPO = Path(__file__).resolve().parents[2]
SMALL_GRPO = [
    "--per_device_train_batch_size", "4", "--num_generations", "4", "--max_completion_length", "8",
    "--num_train_examples", "16", "--logging_steps", "1", "--report_to", "none",
]
SMALL_SFT = [
    "--num_train_examples", "64", "--per_device_train_batch_size", "8", "--logging_steps", "1",
    "--lr_scheduler_type", "constant", "--warmup_steps", "0", "--report_to", "none",
]
TRACKER = {"every": 2, "num_problems": 16, "dashboards": ["none"]}
RUNTIME_KEYS = {"train_runtime", "train_samples_per_second", "train_steps_per_second", "step_time"}
DEVICE = torch.device("cpu")
"""Where run_grpo and run_sft train (TrainingArguments' use_cpu); a test module's fixture may set it (test_tracker.py)."""


def _on_device() -> list[str]:
    return ["--use_cpu", "false" if DEVICE.type == "cuda" else "true"]


def run_grpo(model_dir: Path, output_dir: Path, steps: int, tracker: dict | None, *overrides: str) -> None:
    argv = ["--config", str(REPO / "configs/tiny/grpo.yaml"), "--model_name_or_path", str(model_dir),
            "--output_dir", str(output_dir), "--max_steps", str(steps), *SMALL_GRPO, *_on_device(), *overrides]
    if tracker is not None:
        argv += ["--tracker", json.dumps(tracker)]
    grpo.main(*parse_recipe((GRPOScriptArguments, GRPOConfig, ModelConfig), argv))


def run_sft(model_dir: Path, output_dir: Path, steps: int, tracker: dict, *overrides: str) -> None:
    argv = ["--config", str(REPO / "configs/tiny/sft.yaml"), "--model_name_or_path", str(model_dir),
            "--output_dir", str(output_dir), "--max_steps", str(steps), *SMALL_SFT, *_on_device(), "--tracker", json.dumps(tracker),
            *overrides]
    sft.main(*parse_recipe((RecipeArguments, SFTConfig, ModelConfig), argv))


def history(output_dir: Path) -> list[dict]:
    log_history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    return [{key: value for key, value in entry.items() if key not in RUNTIME_KEYS} for entry in log_history]


def lineage_of(output_dir: Path) -> HeadLineage:
    return HeadLineage.from_state_dict(json.loads((output_dir / "sparks" / "lineage.json").read_text()))


