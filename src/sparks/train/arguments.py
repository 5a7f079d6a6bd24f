"""Recipe arguments shared by the training scripts, and their checks before training starts.

A bad recipe stops with one line naming the bad field, before any model is loaded or trained.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import yaml
from transformers import TrainingArguments
from transformers.hf_argparser import DataClassType
from trl import ScriptArguments, TrlParser

from sparks.callbacks.config import TrackerConfig
from sparks.dashboards.wandb_key import wandb_lacks_a_key
from sparks.probes.pairs import Pair, vocabulary_size
from sparks.probes.settings import type_problem
from sparks.runs.store import first_line
from sparks.tasks import arith
from sparks.tasks.data import DATASETS, HUB_SOURCES, PROBE_ONE_IN, DataOptions, probe_questions
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
    dataset_path: str | None = field(
        default=None,
        metadata={"help": "A local directory read in place of the data set's hub repository: a snapshot of it, "
                          "or its files in the same layout (train.jsonl, train.parquet, ...)."},
    )

    def data_options(self, kind: str, seed: int) -> DataOptions:
        return DataOptions(
            kind=kind,
            num_examples=self.num_train_examples,
            levels=tuple(self.levels),
            seed=seed,
            system_prompt=self.system_prompt,
            dataset_path=self.dataset_path,
        )

    def check(self) -> None:
        if self.dataset_name not in DATASETS:
            raise RecipeError(f"dataset_name: unknown data set {self.dataset_name!r}; known: {', '.join(sorted(DATASETS))}")
        try:
            arith.check_levels(self.levels, "levels")
        except ValueError as error:
            raise RecipeError(str(error)) from None
        if self.num_train_examples < 0:
            raise RecipeError(f"num_train_examples: must be >= 0, got {self.num_train_examples}")
        if self.dataset_path is not None:
            if self.dataset_name not in HUB_SOURCES:
                raise RecipeError(f"dataset_path: {self.dataset_name} is generated, not read; dataset_path is for "
                                  f"{', '.join(sorted(HUB_SOURCES))}")
            if not os.path.isdir(self.dataset_path):
                raise RecipeError(f"dataset_path: {self.dataset_path!r} is not a directory")


@dataclass
class RecipeArguments(DataArguments):
    """Data arguments plus the head tracker's `tracker:` section (callbacks.config.TrackerConfig)."""

    tracker: dict | str | None = field(
        default=None,
        metadata={"help": "Head tracker settings: a YAML mapping in the recipe, JSON on the command line, or 'off'."},
    )
    report_to_none: bool = field(default=False, init=False, repr=False)
    """Set by parse_recipe when the recipe or command line says ``report_to: none``: no dashboard either."""

    def tracker_config(self) -> TrackerConfig | None:
        """The checked tracker settings, or None without a `tracker:` section or with `--tracker off`.

        An explicit ``report_to: none`` means nothing is reported anywhere: the tracker's dashboards
        are off too (its run store under output_dir is still written).

        Without a pair file, a real data set's probe pairs are style pairs of its held-out questions:
        number swaps need the arithmetic world's questions.
        """
        if self.tracker is None or (isinstance(self.tracker, str) and self.tracker.strip().lower() in OFF):
            return None
        try:
            config = TrackerConfig.from_recipe(self.tracker)
        except ValueError as error:
            raise RecipeError(str(error)) from None
        if self.dataset_name != "arith" and config.pairs is None and config.scheme != "style":
            raise RecipeError(
                f"tracker.scheme: {config.scheme} pairs swap operands of arithmetic-world questions, not of "
                f"{self.dataset_name}'s; use scheme: style (pairs of {self.dataset_name}'s held-out questions) "
                "or a pair file (tracker.pairs)"
            )
        return dataclasses.replace(config, dashboards=("none",)) if self.report_to_none else config


@dataclass
class GRPOScriptArguments(RecipeArguments):
    """Data arguments plus the rewards that GRPO optimises."""

    reward_funcs: list[str] = field(
        default_factory=lambda: ["accuracy", "format"], metadata={"help": "Reward names from train/rewards.py."}
    )


def parse_recipe(dataclass_types: tuple[type, ...], argv: list[str] | None = None) -> tuple:
    """Parse `--config recipe.yaml` plus command-line overrides into the given dataclasses.

    Unknown YAML keys, and field values that no dataclass accepts (a string argparse cannot convert, a
    value of the wrong type: check_types), end the program with one line.
    """
    parser = TrlParser([DataClassType(kind) for kind in dataclass_types], exit_on_error=False)  # argparse's error: one line, not the 200-line usage
    try:
        *parsed, config_unknown, cli_unknown = parser.parse_args_and_config(
            argv, return_remaining_strings=True, separate_remaining_strings=True
        )
        unknown = [item[2:] for item in config_unknown[::2]]
        if unknown:
            raise RecipeError(f"unknown key {unknown[0]!r} in the recipe: no argument of this script is called that")
        if cli_unknown:
            raise RecipeError(f"unknown command-line argument {cli_unknown[0]!r}")
        check_types(parsed)
    except argparse.ArgumentError as error:  # a string, from the recipe or the command line, argparse cannot convert
        name = (error.argument_name or "").split("/")[0].lstrip("-")
        exit_with(RecipeError(f"{name}: {error.message}" if name else error.message))
    except (ValueError, OSError) as error:
        exit_with(error)
    recipes = [item for item in parsed if isinstance(item, RecipeArguments)]
    if recipes:
        recipes[0].report_to_none = _says_report_to_none(parser, parsed, argv)
    return tuple(parsed)


DOCUMENTED_TYPES: dict[str, Any] = {"lora_target_modules": str | list[str] | None}
"""Fields whose owner takes more than their annotation says. TRL's ModelConfig documents lora_target_modules as
``str | list[str]`` and turns a list of one into its string, which PEFT reads as a regular expression (or "all-linear")."""


def check_types(parsed: Iterable[Any]) -> None:
    """Refuse a recipe value whose type does not fit its field's annotation, before anything loads.

    TrlParser hands the recipe's YAML values to argparse as defaults, and argparse converts only strings
    (which keeps ``learning_rate: 1e-4``, text to YAML, a number): any other value reached the trainer as
    written, ``max_steps: true`` training one step, ``levels: 1`` failing with a traceback. The simple
    annotations only (bool, int, float, str, their lists and Optional: probes.settings.type_problem); enums, dicts
    and mixed unions are converted and checked by transformers and TRL themselves. nan and inf pass, as
    in transformers.
    """
    for arguments in parsed:
        annotations = typing.get_type_hints(type(arguments))
        for item in dataclasses.fields(arguments):
            if item.init:
                annotation = DOCUMENTED_TYPES.get(item.name, annotations[item.name])
                problem = type_problem(getattr(arguments, item.name), annotation)
                if problem:
                    raise RecipeError(f"{item.name}: {problem}")


def _says_report_to_none(parser: TrlParser, parsed: list, argv: list[str] | None) -> bool:
    """Whether the recipe file or the command line sets ``report_to`` to nothing ("none", []).

    TrainingArguments turns "none" into [], and "none" is also its default: only the recipe's own
    words tell an explicit none from a recipe that says nothing.
    """
    training = [item for item in parsed if isinstance(item, TrainingArguments)]
    if not training or training[0].report_to:
        return False
    args = list(sys.argv[1:] if argv is None else argv)
    if "--config" in args:
        at = args.index("--config")
        with open(args[at + 1]) as recipe:
            if "report_to" in (yaml.safe_load(recipe) or {}):
                return True
        del args[at : at + 2]
    unset = object()
    parser.set_defaults(report_to=unset)  # the parser itself tells, aliases and abbreviations included
    return parser.parse_known_args(args)[0].report_to is not unset


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
        raise RecipeError(
            f"model_name_or_path: {model_name_or_path!r} is not a local directory and could not be "
            f"resolved on the hub ({first_line(error)})"
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
    asked_by: str | None
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


def tracker_pairs(
    tracker: TrackerConfig | None, data_args: DataArguments, model_args: Any, tokenizer: Any, trust_remote_code: bool = False
) -> list[Pair] | None:
    """The probe pairs the tracker will score, made with the model's tokenizer before the model loads.

    The pair file read against the model about to be trained (ids in its vocabulary, made with its
    tokenizer; the model's config gives the vocabulary size); or, for a real data set, style pairs of
    ``num_problems`` of its held-out questions (tasks.data.probe_questions) in the recipe's chat
    format and system prompt. None without a tracker, and for the arithmetic world, whose probe
    pairs the tracker builds when training begins.
    """
    if tracker is None:
        return None
    if tracker.pairs is not None:
        try:
            vocab_size = vocabulary_size(model_args.model_name_or_path, revision=model_args.model_revision,
                                         trust_remote_code=trust_remote_code)
            return tracker.probe_set.build(tokenizer, vocab_size)
        except (ValueError, OSError) as error:
            raise RecipeError(f"tracker.pairs: {str(error).strip()}") from None
    name = data_args.dataset_name
    if name not in HUB_SOURCES:
        return None
    try:
        questions = probe_questions(name, tracker.num_problems, tracker.seed, data_args.dataset_path)
    except (ValueError, OSError) as error:
        where = f"dataset_path: {data_args.dataset_path!r}" if data_args.dataset_path else f"dataset_name: {name}"
        raise RecipeError(f"{where} could not be read for the tracker's probe questions "
                          f"({first_line(error)})") from None
    if len(questions) < tracker.num_problems:
        raise RecipeError(f"tracker.num_problems: {tracker.num_problems} probe questions asked, {name} holds "
                          f"{len(questions)} (one question in {PROBE_ONE_IN} is held out from training)")
    try:
        return tracker.probe_set.build(tokenizer, questions=questions, system_prompt=data_args.system_prompt)
    except ValueError as error:
        raise RecipeError(first_line(error)) from None


def exit_with(error: Exception, *, to_launcher: bool = True) -> NoReturn:
    """Print one line naming the problem and stop with status 2; under a launcher the line also ends its
    output, unless ``to_launcher`` is false (the line of a rank stopped by another rank's failure)."""
    line = f"sparks: error: {first_line(error)}"
    print(line, file=sys.stderr, flush=True)
    if to_launcher:
        report_to_launcher(line)
    raise SystemExit(2)
