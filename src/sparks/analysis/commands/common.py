"""What several ``sparks`` commands share: their flag converters, the device flag, and the checks of a
model directory and of an arithmetic draw that run before any model loads."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch

from sparks.analysis.rescore import TOKENIZER_FILES
from sparks.probes.settings import Rule
from sparks.tasks import arith

positive_int = Rule("count").flag_value
"""A count flag's value, a whole number > 0 (argparse names the flag when it refuses one)."""
finite_float = Rule("number").flag_value
"""A real flag's value, a finite number: nan and inf would run and write NaN or Infinity (not JSON) into the result."""


def add_device_flag(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    """``--device``, the GPU where there is one, else the CPU."""
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help=help)


def has_tokenizer(model_dir: str) -> bool:
    """Whether a tokenizer is saved in the model directory (transformers makes an empty one, of one token and
    no chat template, from a weights-only directory rather than refuse it)."""
    return any((Path(model_dir) / name).is_file() for name in TOKENIZER_FILES)


def model_directory(path: str, tokenizer: bool = False) -> str:
    """``path`` once it is a model directory, holding a tokenizer too where the command writes prompts with it."""
    if not Path(path).is_dir():
        raise FileNotFoundError(f"model directory {path} does not exist")
    if tokenizer and not has_tokenizer(path):
        raise FileNotFoundError(f"model directory {path} holds no tokenizer ({' or '.join(TOKENIZER_FILES)}); "
                                "save the model's tokenizer with it")
    return path


def check_draw(flag: str, asked: int, split: str, levels: Sequence[int], per_level: bool = False) -> None:
    """Refuse unknown ``--levels``, and more problems asked (``flag``'s ``asked``) than they hold, known without
    drawing (tasks.arith.held): the draw would reject what it cannot use for minutes. With ``per_level`` each
    level is asked for ``asked``, and one holding fewer gives what it has, so at least one must hold them."""
    arith.check_levels(levels, "--levels")
    if per_level:
        most = max(arith.held(split, [level]) for level in levels)
        if asked > most:
            raise ValueError(f"{flag}: {asked} problems asked of each level; no level of {sorted(set(levels))} "
                             f"in the {split} split holds more than {most}")
    elif asked > (held := arith.held(split, levels)):
        raise ValueError(f"{flag}: {asked} problems asked, levels {sorted(set(levels))} of the {split} split hold {held}")
