"""Recipes: every shipped config parses, and bad input stops before training with one clear line."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from trl import GRPOConfig, ModelConfig, SFTConfig

from sparks.callbacks.config import TrackerConfig
from sparks.dashboards.wandb_key import wandb_lacks_a_key
from sparks.tasks.tiny_model import TinyModelArguments
from sparks.train.arguments import (
    GRPOScriptArguments,
    RecipeArguments,
    RecipeError,
    check_model_path,
    check_output_dir,
    check_training_args,
    parse_recipe,
)
from sparks.train.pretrain import PretrainArguments

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
    check_training_args(training_args, getattr(script_args, "tracker_config", lambda: None)())
    assert training_args.output_dir == str(tmp_path)


@pytest.mark.parametrize("config", [path for path in RECIPES if path.stem in ("grpo", "sft")], ids=lambda path: f"{path.parent.name}/{path.name}")
def test_every_training_recipe_tracks_its_heads(config):
    tracker = TrackerConfig.from_recipe(yaml.safe_load(config.read_text())["tracker"])
    assert tracker.group is not None


@pytest.mark.parametrize("config", RECIPES, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_every_recipe_parses_with_its_types(config, tmp_path):
    """The type check (train.arguments.check_types) passes every shipped recipe; use_cpu lets bf16 parse on a CPU."""
    parse_recipe(PARSERS[config.stem], ["--config", str(config), "--output_dir", str(tmp_path), "--use_cpu", "true"])


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
        (("--tracker", '{"strict": "false"}'),
         "tracker.strict: must be true or false, got 'false' (a string: write true or false without quotes)"),
        (("--tracker", '{"mass": "0.8"}'), "tracker.mass: must be a finite number, got '0.8' (a string)"),
        (("--max_steps", "ten"), "max_steps: invalid int value: 'ten'"),
    ],
)
@pytest.mark.hostile
def test_bad_input_stops_before_training_with_one_line(tmp_path, capsys, random_model_dir, no_model_loads, overrides, expected):
    assert expected in stop_line(capsys, "grpo", random_model_dir, "--output_dir", str(tmp_path / "run"), *overrides)
    assert not (tmp_path / "run").exists()


@pytest.mark.hostile
def test_unknown_recipe_key_is_named(tmp_path, random_model_dir):  # the whole command line, in a subprocess
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text((REPO / "configs/tiny/grpo.yaml").read_text() + "\nnum_generation: 4\n")
    result = run_grpo(tmp_path, "--model_name_or_path", str(random_model_dir), recipe=str(recipe))
    assert "unknown key 'num_generation' in the recipe" in error_line(result)


@pytest.mark.hostile
def test_hub_model_that_cannot_be_resolved_is_named(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RecipeError, match="'sparks-tests/no-such-model' is not a local directory"):
        check_model_path("sparks-tests/no-such-model")


@pytest.mark.hostile
def test_directory_without_a_config_is_named(tmp_path):
    with pytest.raises(RecipeError, match="directory without config.json"):
        check_model_path(str(tmp_path))


# Settings that would quietly not do what was asked, or fail only once the model has loaded. These run the
# scripts' main() in-process (a subprocess costs seconds each) with model loading made to fail the test.


@pytest.fixture
def no_model_loads(monkeypatch):
    """Fail the test if a script gets as far as loading a model."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the bad setting was refused")

    import transformers

    monkeypatch.setattr(importlib.import_module("sparks.train.preparation"), "load_model", refuse)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)


@pytest.fixture
def wandb_online_without_a_key(tmp_path, monkeypatch):
    """W&B online with no API key anywhere W&B looks; nothing here touches the network."""
    home = tmp_path / "home"
    home.mkdir()
    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("NETRC", str(home / ".netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(home / ".config" / "wandb"))
    return home


def stop_line(capsys, script: str, model_dir: Path, *argv: str, recipe: Path | None = None) -> str:
    """Parse and run a script's main() on a recipe (its tiny one by default) in-process; it must stop with status 2
    and one error line."""
    module = importlib.import_module(f"sparks.train.{script}")
    recipe = ["--config", str(recipe or REPO / f"configs/tiny/{script}.yaml"), "--model_name_or_path", str(model_dir)]
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        module.main(*parse_recipe(PARSERS[script], [*recipe, *argv]))
    assert stopped.value.code == 2
    stderr = capsys.readouterr().err
    lines = [line for line in stderr.splitlines() if line.startswith("sparks: error: ")]
    assert len(lines) == 1, stderr[-2000:]
    return lines[0].removeprefix("sparks: error: ")


def tiny_recipe(tmp_path: Path, script: str, changes: str) -> Path:
    """The tiny recipe of ``script`` with the YAML mapping ``changes`` written over it."""
    recipe = tmp_path / "recipe.yaml"
    base = yaml.safe_load((REPO / f"configs/tiny/{script}.yaml").read_text())
    recipe.write_text(yaml.safe_dump(base | yaml.safe_load(changes)))
    return recipe


@pytest.mark.parametrize(
    ("script", "changes", "expected"),
    [
        ("grpo", 'max_steps: "ten"', "max_steps: invalid int value: 'ten'"),
        ("grpo", "max_steps: true", "max_steps: must be a whole number, got true (a boolean)"),
        ("sft", "max_steps: 2.5", "max_steps: must be a whole number, got 2.5 (a float)"),
        ("grpo", "num_train_examples: 2.5", "num_train_examples: must be a whole number, got 2.5 (a float)"),
        ("grpo", "seed: [1]", "seed: must be a whole number, got [1] (a list)"),
        ("grpo", "learning_rate: true", "learning_rate: must be a number, got true (a boolean)"),
        ("sft", "learning_rate: fast", "learning_rate: invalid float value: 'fast'"),
        ("grpo", "bf16: 1", "bf16: must be true or false, or null, got 1 (a whole number)"),
        ("sft", "levels: '1'", "levels: must be a list of whole numbers, got 1 (a whole number)"),
        ("grpo", "levels: ['1']", "levels: must be a list of whole numbers, got ['1'] (an item is a string)"),
        ("grpo", "reward_funcs: accuracy", "reward_funcs: must be a list of strings, got 'accuracy' (a string)"),
        ("sft", "system_prompt: 5", "system_prompt: must be a string or null, got 5 (a whole number)"),
        ("grpo", "lora_target_modules: 5", "lora_target_modules: must be a string, a list of strings, or null, got 5 (a whole number)"),
        ("grpo", "tracker: {strict: 'false'}",
         "tracker.strict: must be true or false, got 'false' (a string: write true or false without quotes)"),
        ("sft", "tracker: {tau: 1e-3}", "tracker.tau: must be a finite number, got '1e-3' (a string: YAML reads 1e-3 as text; write 1.0e-3)"),
    ],
)
@pytest.mark.hostile
def test_recipe_value_of_the_wrong_type_is_refused(script, changes, expected, tmp_path, capsys, random_model_dir, no_model_loads):
    recipe = tiny_recipe(tmp_path, script, changes)
    assert stop_line(capsys, script, random_model_dir, "--output_dir", str(tmp_path / "run"), recipe=recipe) == expected
    assert not (tmp_path / "run").exists()


def test_recipe_values_argparse_or_trl_convert_still_pass(tmp_path):
    """Strings argparse converts (YAML reads 1e-4 as text), and a lora_target_modules string TRL and PEFT take, pass."""
    changes = "{learning_rate: 1e-4, max_steps: '3', bf16: 'false', lora_target_modules: all-linear, report_to: none}"
    recipe = tiny_recipe(tmp_path, "grpo", changes)
    _, training, model = parse_recipe(PARSERS["grpo"], ["--config", str(recipe), "--output_dir", str(tmp_path)])
    assert (training.learning_rate, training.max_steps, training.bf16, training.report_to) == (1e-4, 3, False, [])
    assert model.lora_target_modules == "all-linear"


@pytest.mark.parametrize("script", ["grpo", "sft"])
@pytest.mark.hostile
def test_save_steps_without_a_save_strategy_is_refused(script, tmp_path, capsys, random_model_dir, no_model_loads):
    line = stop_line(capsys, script, random_model_dir, "--output_dir", str(tmp_path / "run"), "--save_steps", "10")
    assert line == 'save_steps: 10 has no effect with save_strategy "no"; add --save_strategy steps'
    assert not (tmp_path / "run").exists()


def test_save_steps_with_a_step_strategy_or_the_default_passes(tmp_path):
    base = ["--config", str(REPO / "configs/tiny/grpo.yaml"), "--output_dir", str(tmp_path / "run")]
    _, steps, _ = parse_recipe(PARSERS["grpo"], [*base, "--save_strategy", "steps", "--save_steps", "10"])
    check_training_args(steps, None)
    _, default, _ = parse_recipe(PARSERS["grpo"], base)  # save_strategy "no", save_steps untouched
    check_training_args(default, None)
    _, epoch, _ = parse_recipe(PARSERS["grpo"], [*base, "--save_strategy", "epoch", "--save_steps", "0.25"])
    with pytest.raises(RecipeError, match=r'^save_steps: 0.25 has no effect with save_strategy "epoch"; add --save_strategy steps$'):
        check_training_args(epoch, None)


@pytest.mark.parametrize(
    ("script", "argv", "field"),
    [
        ("grpo", ("--report_to", "wandb"), "report_to"),
        ("sft", ("--report_to", "all"), "report_to"),  # every installed integration, W&B among them
        ("grpo", ("--report_to", "trackio", "--tracker", '{"dashboards": ["wandb"], "num_problems": 8}'), "tracker.dashboards"),
    ],
)
@pytest.mark.hostile
def test_wandb_online_without_a_key_is_refused(
    script, argv, field, tmp_path, capsys, random_model_dir, no_model_loads, wandb_online_without_a_key
):
    line = stop_line(capsys, script, random_model_dir, "--output_dir", str(tmp_path / "run"), *argv)
    assert line == (f'{field}: wandb needs a W&B API key when online: run "wandb login", set WANDB_API_KEY, '
                    "or set WANDB_MODE=offline")


def test_wandb_key_is_looked_for_where_wandb_looks(monkeypatch, wandb_online_without_a_key):
    assert wandb_lacks_a_key()
    (wandb_online_without_a_key / ".netrc").write_text(f"machine api.wandb.ai\n  login user\n  password {'0' * 40}\n")
    assert not wandb_lacks_a_key()  # what `wandb login` writes
    (wandb_online_without_a_key / ".netrc").unlink()
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
    assert not wandb_lacks_a_key()
    monkeypatch.delenv("WANDB_API_KEY")
    for mode in ("offline", "disabled", "dryrun"):
        monkeypatch.setenv("WANDB_MODE", mode)
        assert not wandb_lacks_a_key()


@pytest.mark.parametrize("script", ["grpo", "sft"])
@pytest.mark.hostile
def test_output_dir_under_a_file_is_refused(script, tmp_path, capsys, random_model_dir, no_model_loads):
    (tmp_path / "file").write_text("not a directory")
    out = tmp_path / "file" / "out"
    line = stop_line(capsys, script, random_model_dir, "--output_dir", str(out))
    assert line == f"output_dir: cannot write to {out} (Not a directory)"


@pytest.mark.hostile
def test_output_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(RecipeError, match=r"^output_dir: cannot write to .*file \(it is a file, not a directory\)$"):
        check_output_dir(str(tmp_path / "file"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only directories")
@pytest.mark.hostile
def test_output_dir_in_a_read_only_directory_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(RecipeError, match=r"^output_dir: cannot write to .*locked/out \(Permission denied\)$"):
            check_output_dir(str(locked / "out"))
    finally:
        locked.chmod(0o700)


def test_output_dir_is_made_and_left_clean(tmp_path):
    check_output_dir(str(tmp_path / "a" / "b"))
    assert (tmp_path / "a" / "b").is_dir() and not list((tmp_path / "a" / "b").iterdir())


@pytest.mark.hostile
def test_more_probe_problems_than_the_levels_hold_is_refused(tmp_path, capsys, random_model_dir, no_model_loads):
    tracker = json.dumps({"num_problems": 500, "levels": [1]})
    line = stop_line(capsys, "grpo", random_model_dir, "--output_dir", str(tmp_path / "run"), "--tracker", tracker)
    assert line == "tracker.num_problems: 500 probe problems asked, levels [1] hold only 6"


def write_pairs(path: Path, **changes) -> Path:
    pair = {"clean_text": "", "corrupted_text": "", "clean_ids": [5, 6, 7], "corrupted_ids": [5, 6, 8], "targets": [2]}
    path.write_text(json.dumps(pair | changes) + "\n")
    return path


@pytest.mark.parametrize("script", ["grpo", "sft"])
@pytest.mark.hostile
def test_pair_file_outside_the_models_vocabulary_is_refused(script, tmp_path, capsys, random_model_dir, no_model_loads):
    from transformers import AutoConfig

    vocab = AutoConfig.from_pretrained(random_model_dir).vocab_size
    pairs = write_pairs(tmp_path / "pairs.jsonl", clean_ids=[5, 6, vocab + 3])
    tracker = json.dumps({"pairs": str(pairs), "dashboards": ["none"]})
    line = stop_line(capsys, script, random_model_dir, "--output_dir", str(tmp_path / "run"), "--tracker", tracker)
    assert line.startswith(f"tracker.pairs: {pairs}:1: clean_ids: id {vocab + 3} ")
    assert str(vocab) in line.removeprefix(f"tracker.pairs: {pairs}:1: clean_ids: id {vocab + 3} ")


@pytest.mark.hostile
def test_pair_file_made_with_another_tokenizer_is_refused(tmp_path, capsys, random_model_dir, no_model_loads):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(random_model_dir)
    clean, corrupted = tokenizer.encode("1+2="), tokenizer.encode("1+3=")
    pairs = write_pairs(tmp_path / "pairs.jsonl", clean_text="7*8=", corrupted_text="7*9=", clean_ids=clean,
                        corrupted_ids=corrupted, targets=[len(clean) - 1])
    tracker = json.dumps({"pairs": str(pairs), "dashboards": ["none"]})
    line = stop_line(capsys, "grpo", random_model_dir, "--output_dir", str(tmp_path / "run"), "--tracker", tracker)
    assert line.startswith(f"tracker.pairs: {pairs}:1: ")
