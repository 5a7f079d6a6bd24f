"""The training scripts run end to end: GRPO under accelerate with one and two CPU processes, SFT, evaluation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SMALL_GRPO = [
    "--max_steps", "2", "--per_device_train_batch_size", "4", "--num_generations", "4",
    "--max_completion_length", "8", "--num_train_examples", "16", "--logging_steps", "1",
]


def accelerate(script: str, config: str, model_dir: Path, output_dir: Path, *overrides: str, processes: int = 1):
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(REPO / "configs/accelerate/cpu.yaml"),
        "--num_processes", str(processes), str(REPO / script), "--config", str(REPO / config),
        "--model_name_or_path", str(model_dir), "--output_dir", str(output_dir), *overrides,
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def logged(output_dir: Path, key: str) -> list[float]:
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    return [entry[key] for entry in history if key in entry]


def test_grpo_two_cpu_processes_run_to_the_end(random_model_dir, tmp_path):
    result = accelerate("train/grpo.py", "configs/tiny/grpo.yaml", random_model_dir, tmp_path, *SMALL_GRPO, processes=2)
    assert "GRPO on 2 processes" in result.stdout
    assert (tmp_path / "model.safetensors").exists()
    rewards = logged(tmp_path, "reward")
    assert len(rewards) == 2 and all(0.0 <= reward <= 2.0 for reward in rewards)
    assert "step 2/2" in result.stdout + result.stderr


def test_grpo_one_process_logs_each_reward(random_model_dir, tmp_path):
    run_name = f"grpo-{tmp_path.name}"
    result = accelerate("train/grpo.py", "configs/tiny/grpo.yaml", random_model_dir, tmp_path, *SMALL_GRPO, "--run_name", run_name)
    assert "GRPO on 1 process" in result.stdout
    assert len(logged(tmp_path, "rewards/accuracy_reward/mean")) == 2
    assert len(logged(tmp_path, "rewards/format_reward/mean")) == 2
    from trackio.sqlite_storage import SQLiteStorage  # reads the TRACKIO_DIR that conftest set

    rows = SQLiteStorage.get_logs("sparks", run_name)
    rewards = [row["train/global_step"] for row in rows if "train/rewards/accuracy_reward/mean" in row]
    heads = [row["train/global_step"] for row in rows if "heads/circuit_size" in row]
    assert rewards == [1, 2], "the trainer's reward curve goes to the demo's trackio run"
    assert heads == [0, 2], "the tracker's heads panels join it at the base and the final step"


def test_sft_trains_on_think_traces(random_model_dir, tmp_path):
    overrides = ("--max_steps", "3", "--num_train_examples", "48", "--per_device_train_batch_size", "16", "--logging_steps", "1")
    accelerate("train/sft.py", "configs/tiny/sft.yaml", random_model_dir, tmp_path, *overrides)
    losses = logged(tmp_path, "loss")
    assert len(losses) == 3 and losses[-1] < losses[0]


def test_evaluate_reports_pass_at_1_per_level(random_model_dir, tmp_path):
    out = tmp_path / "eval.json"
    command = [
        sys.executable, str(REPO / "train/evaluate.py"), "--model", str(random_model_dir), "--levels", "1", "2",
        "--per_level", "4", "--max_new_tokens", "4", "--out", str(out),
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(out.read_text())
    assert set(record["pass_at_1"]) == {"direct", "think", "free"}
    assert set(record["pass_at_1"]["think"]) == {"1", "2"}
    assert len(record["completions"]) == 3 * 2 * 4
    assert "evaluating" in result.stderr


def test_pretraining_is_reproducible_from_its_seed(tmp_path):
    from safetensors.torch import load_file

    def pretrain(output_dir: Path) -> dict:
        command = [
            sys.executable, str(REPO / "train/pretrain.py"), "--config", str(REPO / "configs/tiny/pretrain.yaml"),
            "--output_dir", str(output_dir), "--max_steps", "2", "--num_train_examples", "256",
            "--per_device_train_batch_size", "16", "--hidden_size", "32", "--intermediate_size", "64",
            "--num_hidden_layers", "2", "--num_attention_heads", "4", "--num_key_value_heads", "2",
        ]
        result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        return load_file(output_dir / "model.safetensors")

    first, second = pretrain(tmp_path / "a"), pretrain(tmp_path / "b")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)
