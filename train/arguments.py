"""Recipe arguments shared by the training scripts, and their checks before training starts.

A bad recipe stops with one line naming the bad field, before any model is loaded or trained.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl import ScriptArguments, TrlParser

from sparks.callbacks.config import TrackerConfig
from sparks.probes.pairs import Pair, load_pairs_for_model
from sparks.tasks import arith
from sparks.tasks.data import DATASETS, DataOptions
from sparks.train.launcher import report_to_launcher

OFF = ("off", "none", "null", "false")


class RecipeError(ValueError):
    """A recipe field that cannot work; the message names the field."""


@dataclass
class DataArguments(ScriptArguments):
    """Which data set to train on, and how much of it."""

    dataset_name: str = field(default="arith", metadata={"help": f"One of {sorted(DATASETS)}."})
    num_train_examples: int = field(default=2000, metadata={"help": "Training examples to draw (0: all)."})
    levels: list[int] = field(
        default_factory=lambda: sorted(arith.LEVELS), metadata={"help": "Arithmetic difficulty levels to draw from."}
    )
    system_prompt: str | None = field(default=None, metadata={"help": "System message put before each question."})

    def data_options(self, kind: str, seed: int) -> DataOptions:
        return DataOptions(
            kind=kind,
            num_examples=self.num_train_examples,
            levels=tuple(self.levels),
            seed=seed,
            system_prompt=self.system_prompt,
        )

    def check(self) -> None:
        if self.dataset_name not in DATASETS:
            raise RecipeError(f"dataset_name: unknown data set {self.dataset_name!r}; known: {', '.join(sorted(DATASETS))}")
        bad_levels = [level for level in self.levels if level not in arith.LEVELS]
        if bad_levels or not self.levels:
            raise RecipeError(f"levels: {self.levels} must be a non-empty list drawn from {sorted(arith.LEVELS)}")
        if self.num_train_examples < 0:
            raise RecipeError(f"num_train_examples: must be >= 0, got {self.num_train_examples}")


@dataclass
class RecipeArguments(DataArguments):
    """Data arguments plus the head tracker's `tracker:` section (callbacks.config.TrackerConfig)."""

    tracker: dict | str | None = field(
        default=None,
        metadata={"help": "Head tracker settings: a YAML mapping in the recipe, JSON on the command line, or 'off'."},
    )

    def tracker_config(self) -> TrackerConfig | None:
        """The checked tracker settings, or None without a `tracker:` section or with `--tracker off`."""
        if self.tracker is None or (isinstance(self.tracker, str) and self.tracker.strip().lower() in OFF):
            return None
        try:
            return TrackerConfig.from_recipe(self.tracker)
        except ValueError as error:
            raise RecipeError(str(error)) from None


@dataclass
class GRPOScriptArguments(RecipeArguments):
    """Data arguments plus the rewards that GRPO optimises."""

    reward_funcs: list[str] = field(
        default_factory=lambda: ["accuracy", "format"], metadata={"help": "Reward names from train/rewards.py."}
    )


def parse_recipe(dataclass_types: tuple[type, ...], argv: list[str] | None = None) -> tuple:
    """Parse `--config recipe.yaml` plus command-line overrides into the given dataclasses.

    Unknown YAML keys, and field values that no dataclass accepts, end the program with one line.
    """
    parser = TrlParser(dataclass_types)
    try:
        *parsed, config_unknown, cli_unknown = parser.parse_args_and_config(
            argv, return_remaining_strings=True, separate_remaining_strings=True
        )
        unknown = [item[2:] for item in config_unknown[::2]]
        if unknown:
            raise RecipeError(f"unknown key {unknown[0]!r} in the recipe: no argument of this script is called that")
        if cli_unknown:
            raise RecipeError(f"unknown command-line argument {cli_unknown[0]!r}")
    except (ValueError, OSError) as error:
        exit_with(error)
    return tuple(parsed)


def check_model_path(model_name_or_path: str | None) -> None:
    """A model must be a local directory with a config, or a hub name that resolves."""
    if not model_name_or_path:
        raise RecipeError("model_name_or_path: not set")
    if os.path.isdir(model_name_or_path):
        if not os.path.isfile(os.path.join(model_name_or_path, "config.json")):
            raise RecipeError(f"model_name_or_path: {model_name_or_path!r} is a directory without config.json")
        return
    looks_local = model_name_or_path.startswith((".", "/", "~")) or model_name_or_path.count("/") > 1
    if looks_local:
        raise RecipeError(f"model_name_or_path: {model_name_or_path!r} does not exist")
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(model_name_or_path)
    except (OSError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RecipeError(
            f"model_name_or_path: {model_name_or_path!r} is not a local directory and could not be "
            f"resolved on the hub ({first_line})"
        ) from None


def check_training_args(training_args: Any, tracker: TrackerConfig | None) -> None:
    """Trainer settings that would quietly do nothing, or fail only once the model has loaded.

    A ``save_steps`` that no save strategy uses, W&B asked for online without an API key (by
    ``report_to`` or the tracker's dashboards, which the trainer reports to as well), and an
    ``output_dir`` that cannot be written. Checked last: it creates ``output_dir``, as the trainer would.
    """
    _check_save_steps(training_args)
    _check_wandb_key(training_args, tracker)
    check_output_dir(training_args.output_dir)


def _check_save_steps(training_args: Any) -> None:
    """An explicit ``save_steps`` (one other than the default) is used by save_strategy "steps" only."""
    default = next(item.default for item in dataclasses.fields(training_args) if item.name == "save_steps")
    strategy = getattr(training_args.save_strategy, "value", training_args.save_strategy)
    steps = training_args.save_steps
    if steps != default and strategy in ("no", "epoch"):
        raise RecipeError(
            f'save_steps: {int(steps) if float(steps).is_integer() else steps} has no effect with save_strategy "{strategy}"; '
            "add --save_strategy steps"
        )


def _check_wandb_key(training_args: Any, tracker: TrackerConfig | None) -> None:
    """W&B online needs an API key; without one wandb.init stops the run at train begin."""
    if "wandb" in (training_args.report_to or []):
        asked_by = "report_to"
    elif tracker is not None:
        from sparks.callbacks.tracker import dashboard_names

        asked_by = "tracker.dashboards" if "wandb" in dashboard_names(tracker) else None
    else:
        asked_by = None
    if asked_by and wandb_lacks_a_key():
        raise RecipeError(
            f'{asked_by}: wandb needs a W&B API key when online: run "wandb login", set WANDB_API_KEY, '
            "or set WANDB_MODE=offline"
        )


def wandb_lacks_a_key() -> bool:
    """Whether W&B is online with no API key where wandb.init looks for one, found without the network.

    W&B's own lookup (wandb 0.31): its settings files and WANDB_* variables (mode, base URL, key),
    WANDB_IDENTITY_TOKEN_FILE, then the netrc entry for the base URL that ``wandb login`` writes.
    It reads a fresh Settings, not W&B's process-wide one, which would freeze the WANDB_* variables
    the tracker sets later. When that lookup itself fails, leave the verdict to wandb.init.
    """
    try:
        from wandb.sdk.lib import wbauth
        from wandb.sdk.wandb_settings import Settings

        settings = Settings()
        config_dir = os.environ.get("WANDB_CONFIG_DIR")
        system = Path(config_dir).expanduser() / "settings" if config_dir else Path("~/.config/wandb/settings").expanduser()
        settings.settings_system = str(system)
        settings.update_from_system_settings()
        settings.update_from_env_vars(dict(os.environ))
        if settings.mode in ("offline", "dryrun", "disabled"):
            return False
        if settings.api_key or os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
            return False
        return wbauth.read_netrc_auth(host=settings.base_url) is None
    except Exception:  # no wandb, or its lookup changed: wandb.init will say what is wrong
        return False


def check_output_dir(output_dir: str) -> None:
    """The output directory can be made and written: create it (as the trainer would) and a temporary file in it."""
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        raise RecipeError(f"output_dir: cannot write to {output_dir} (it is a file, not a directory)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise RecipeError(f"output_dir: cannot write to {output_dir} ({error.strerror or error})") from None


def check_pairs_fit_model(
    tracker: TrackerConfig | None, model_args: Any, tokenizer: Any, trust_remote_code: bool = False
) -> list[Pair] | None:
    """The tracker's pair file read against the model about to be trained: ids in its vocabulary, made
    with its tokenizer (None without a pair file). The tracker then scores these pairs.

    Run after the tokenizer loads and before the model does (its config gives the vocabulary size).
    """
    if tracker is None or tracker.pairs is None:
        return None
    try:
        return load_pairs_for_model(tracker.pairs, model_args.model_name_or_path, tokenizer,
                                    revision=model_args.model_revision, trust_remote_code=trust_remote_code)
    except (ValueError, OSError) as error:
        raise RecipeError(f"tracker.pairs: {str(error).strip()}") from None


def exit_with(error: Exception) -> None:
    """Print one line naming the problem and stop with status 2; under a launcher the line also ends its output."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    line = f"sparks: error: {message}"
    print(line, file=sys.stderr, flush=True)
    report_to_launcher(line)
    raise SystemExit(2)
