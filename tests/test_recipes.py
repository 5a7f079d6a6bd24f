"""Recipes: every shipped config parses, and bad input stops before training with one clear line."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from trl import GRPOConfig, ModelConfig, SFTConfig

from callbacks.config import TrackerConfig
from tasks.tiny_model import TinyModelArguments
from train.arguments import GRPOScriptArguments, RecipeArguments, RecipeError, check_model_path, parse_recipe
from train.pretrain import PretrainArguments

REPO = Path(__file__).resolve().parents[1]
PARSERS = {
    "grpo": (GRPOScriptArguments, GRPOConfig, ModelConfig),
    "sft": (RecipeArguments, SFTConfig, ModelConfig),
    "pretrain": (PretrainArguments, SFTConfig, TinyModelArguments),
}


RECIPES = sorted(path for path in REPO.glob("configs/*/*.yaml") if path.parent.name != "accelerate")


@pytest.mark.parametrize("config", RECIPES, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_every_recipe_key_is_an_argument(config):
    known = {field.name for cls in PARSERS[config.stem] for field in dataclasses.fields(cls)}
    assert set(yaml.safe_load(config.read_text())) <= known


@pytest.mark.parametrize("config", sorted(REPO.glob("configs/tiny/*.yaml")), ids=lambda path: path.name)
def test_every_cpu_recipe_parses_and_checks(config, tmp_path):
    script_args, training_args, _ = parse_recipe(PARSERS[config.stem], ["--config", str(config), "--output_dir", str(tmp_path)])
    script_args.check()
    assert training_args.output_dir == str(tmp_path)


@pytest.mark.parametrize("config", [path for path in RECIPES if path.stem in ("grpo", "sft")], ids=lambda path: f"{path.parent.name}/{path.name}")
def test_every_training_recipe_tracks_its_heads(config):
    tracker = TrackerConfig.from_recipe(yaml.safe_load(config.read_text())["tracker"])
    assert tracker.group is not None


def test_tracker_off_on_the_command_line(tmp_path):
    config = ["--config", str(REPO / "configs/tiny/grpo.yaml"), "--output_dir", str(tmp_path)]
    assert parse_recipe(PARSERS["grpo"], config)[0].tracker_config().num_problems == 32
    assert parse_recipe(PARSERS["grpo"], [*config, "--tracker", "off"])[0].tracker_config() is None


def test_paper_settings_in_the_gpu_recipes():
    grpo = yaml.safe_load((REPO / "configs/qwen2.5-math-1.5b/grpo.yaml").read_text())
    assert (grpo["num_generations"], grpo["learning_rate"], grpo["warmup_steps"], grpo["bf16"]) == (16, 1e-6, 0.1, True)
    assert grpo["use_vllm"] and grpo["vllm_mode"] == "colocate"
    assert grpo["reward_funcs"] == ["accuracy", "format"] and "<think>" in grpo["system_prompt"]
    assert grpo["model_name_or_path"] == "Qwen/Qwen2.5-Math-1.5B"
    assert grpo["tracker"] | {"group": None} == {
        "every": 100, "level": "edge", "scheme": "style", "top_n": 5000, "tau": 0.1, "batch_size": 8, "group": None
    }
    sft = yaml.safe_load((REPO / "configs/qwen2.5-math-1.5b/sft.yaml").read_text())
    assert (sft["learning_rate"], sft["warmup_steps"]) == (4e-5, 0.03)


def test_command_line_overrides_the_recipe(tmp_path):
    _, grpo, _ = parse_recipe(
        PARSERS["grpo"], ["--config", str(REPO / "configs/tiny/grpo.yaml"), "--max_steps", "3", "--output_dir", str(tmp_path)]
    )
    assert grpo.max_steps == 3


def run_grpo(tmp_path: Path, *overrides: str, recipe: str | None = None) -> subprocess.CompletedProcess:
    config = recipe or str(REPO / "configs/tiny/grpo.yaml")
    command = [sys.executable, str(REPO / "train/grpo.py"), "--config", config, "--output_dir", str(tmp_path / "run"), *overrides]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)


def error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("sparks: error:")]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (("--reward_funcs", "accuracy", "lenght"), "unknown reward 'lenght' in reward_funcs"),
        (("--dataset_name", "gsm9k"), "dataset_name: unknown data set 'gsm9k'"),
        (("--model_name_or_path", "./no/such/model"), "model_name_or_path: './no/such/model' does not exist"),
        (("--levels", "1", "12"), "levels:"),
        (("--tracker", '{"method": "eap-gi"}'), "tracker.method: unknown method 'eap-gi'"),
        (("--tracker", '{"every": 0}'), "tracker.every: must be a whole number > 0, got 0"),
        (("--tracker", '{"pairs": "no/such/pairs.jsonl"}'), "tracker.pairs: pair file 'no/such/pairs.jsonl' does not exist"),
        (("--tracker", '{"evrey": 10}'), "tracker.evrey: unknown setting"),
    ],
)
def test_bad_input_stops_before_training_with_one_line(tmp_path, random_model_dir, overrides, expected):
    result = run_grpo(tmp_path, "--model_name_or_path", str(random_model_dir), *overrides)
    assert expected in error_line(result)
    assert not (tmp_path / "run").exists()


def test_unknown_recipe_key_is_named(tmp_path, random_model_dir):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text((REPO / "configs/tiny/grpo.yaml").read_text() + "\nnum_generation: 4\n")
    result = run_grpo(tmp_path, "--model_name_or_path", str(random_model_dir), recipe=str(recipe))
    assert "unknown key 'num_generation' in the recipe" in error_line(result)


def test_hub_model_that_cannot_be_resolved_is_named(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RecipeError, match="'sparks-tests/no-such-model' is not a local directory"):
        check_model_path("sparks-tests/no-such-model")


def test_directory_without_a_config_is_named(tmp_path):
    with pytest.raises(RecipeError, match="directory without config.json"):
        check_model_path(str(tmp_path))
