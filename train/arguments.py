"""Recipe arguments shared by the training scripts, and their checks before training starts.

A bad recipe stops with one line naming the bad field, before any model is loaded or trained.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

from trl import ScriptArguments, TrlParser

from callbacks.config import TrackerConfig
from tasks import arith
from tasks.data import DATASETS, DataOptions

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


def exit_with(error: Exception) -> None:
    """Print one line naming the problem and stop with status 2."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    print(f"sparks: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)
