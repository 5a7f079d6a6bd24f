"""Settings read from a recipe's YAML, a JSON override or a command-line flag: their types and their rules.

``type_problem`` says why a value does not have its annotation's type, in a recipe's words. A ``Rule``
says what values a setting takes, once, for every reader of it: a dataclass of settings checks its
fields with it, and a flag converts and checks its text with it (``Rule.flag_value``), so the tracker's
``tracker.mass`` and ``sparks score --mass`` are refused alike.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast


class SettingError(ValueError):
    """A bad setting (or settings, for a combination), named so that each reader can say it its way:
    ``tracker.mass: ...`` in a recipe, ``--mass: ...`` on the command line."""

    def __init__(self, names: str | Sequence[str], why: str) -> None:
        self.names = (names,) if isinstance(names, str) else tuple(names)
        self.why = why
        super().__init__(f"{', '.join(self.names)}: {why}")

    def named(self, name: typing.Callable[[str], str]) -> str:
        """The message with each setting's name as ``name`` writes it."""
        return f"{', '.join(name(setting) for setting in self.names)}: {self.why}"


@dataclass(frozen=True)
class Rule:
    """The values a setting takes.

    ``kind``: "count" (a whole number >= ``least``, ``too_few`` saying why fewer is refused when ``least``
    is above 1), "whole" (any whole number), "number" (any finite number), "interval" (a finite number
    between ``low`` and ``high``, each end open or closed), "choice" (one of ``choices``); ``optional``:
    None (unset) is taken too.
    """

    kind: str
    least: int = 1
    too_few: str | None = None
    low: float = 0.0
    high: float = 1.0
    open_low: bool = False
    open_high: bool = False
    choices: tuple[str, ...] = ()
    optional: bool = False

    def problem(self, value: Any, name: str) -> str | None:
        """Why ``value`` of the setting ``name`` breaks the rule, or None (its type is type_problem's to check)."""
        if value is None and self.optional:
            return None
        unset = " or unset" if self.optional else ""
        if self.kind == "count" and value < 1:
            return f"must be a whole number > 0{unset}, got {value!r}"
        if self.kind == "count" and value < self.least:
            return f"{self.too_few}, got {value!r}"
        if self.kind == "interval":
            above = value > self.low if self.open_low else value >= self.low
            below = value < self.high if self.open_high else value <= self.high
            if not (above and below):
                span = f"{'(' if self.open_low else '['}{_number(self.low)}, {_number(self.high)}{')' if self.open_high else ']'}"
                return f"must lie in {span}, got {value}"
        if self.kind == "choice" and value not in self.choices:
            return f"unknown {name} {value!r}; choose from {', '.join(self.choices)}"
        return None

    def flag_value(self, text: str) -> Any:
        """A flag's text as the setting's value, refused (argparse.ArgumentTypeError, which argparse names
        the flag in) when it is not a number of the setting's kind or breaks the rule. Not for a choice:
        argparse checks those itself, listing them."""
        value: Any = text
        if self.kind in ("count", "whole"):
            try:
                value = int(text)
            except ValueError:
                wanted = "a whole number > 0" if self.kind == "count" else "a whole number"
                raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}") from None
        elif self.kind in ("number", "interval"):
            try:
                value = float(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
            if not math.isfinite(value):
                raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        problem = self.problem(value, "") if self.kind != "choice" else None  # the name only words a choice's refusal
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value


def plain_setting(value: Any) -> Any:
    """A setting as JSON writes it: a tuple as a list."""
    return list(value) if isinstance(value, tuple) else value


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def check_fields(settings: Any, rules: Mapping[str, Rule]) -> None:
    """Check a dataclass of settings: every field's type from its annotation, then the fields' ``rules``
    (in their order); SettingError naming the first bad field."""
    hints = typing.get_type_hints(type(settings))  # the annotations as types (written as text under `from __future__ import annotations`)
    for name in hints:  # every type first: the rules can then compare and count
        problem = type_problem(getattr(settings, name), hints[name], finite=True)
        if problem:
            raise SettingError(name, problem)
    for name, rule in rules.items():
        problem = rule.problem(getattr(settings, name), name)
        if problem:
            raise SettingError(name, problem)


_SCALARS: dict[Any, tuple[str, str]] = {
    bool: ("true or false", "booleans"),
    int: ("a whole number", "whole numbers"),
    float: ("a number", "numbers"),
    str: ("a string", "strings"),
    type(None): ("null", "nulls"),
}
"""The annotations a YAML or JSON value fills unambiguously, as a recipe's reader would say one of them and a list of them."""


def type_problem(value: Any, annotation: Any, *, finite: bool = False) -> str | None:
    """Why ``value`` does not fit the type ``annotation`` (``must be a number, got '0.8' (a string)``), or None when it fits.

    Strict, for the types a recipe's YAML or JSON writes without doubt: bool, int, float, str, None, lists (or
    tuples) of one of those, and unions of these. A bool is not a number, an int is a float but a float is not
    an int (2.0 included), a string is never converted; ``finite`` refuses nan and inf for a float. Any other
    annotation (a dict, an enum, a Literal) gives None: its owner converts and checks its values itself.
    """
    wanted = _wanted(annotation, finite)
    if wanted is None or _fits(value, annotation, finite):
        return None
    shown = "null" if value is None else json.dumps(value) if isinstance(value, bool) else repr(plain_setting(value))
    items = _item_types(annotation)
    if isinstance(value, (list, tuple)) and items:  # a list where lists are taken: an item is wrong
        wrong = next(item for item in value if not any(_fits(item, kind, finite) for kind in items))
        return f"must be {wanted}, got {shown} (an item is {_kind(wrong)})"
    if value is None or isinstance(value, float) and not math.isfinite(value):  # null, nan and inf say what they are
        return f"must be {wanted}, got {shown}"
    return f"must be {wanted}, got {shown} ({_kind(value)}{_hint(value, annotation)})"


def _hint(value: Any, annotation: Any) -> str:
    """How to write a refused string so that YAML and JSON read what it says: a boolean, or a number YAML reads as text."""
    if isinstance(value, str) and annotation is bool:
        return ": write true or false without quotes"
    if isinstance(value, str) and annotation is float and re.fullmatch(r"[-+]?\d+[eE][-+]?\d+", value):
        mantissa, exponent = re.split("[eE]", value)
        return f": YAML reads {value} as text; write {mantissa}.0e{exponent}"
    return ""


def _item_types(annotation: Any) -> tuple[Any, ...]:
    """The item types of the lists ``annotation`` takes (a list annotation, or a union holding some)."""
    members = typing.get_args(annotation) if _is_union(annotation) else (annotation,)
    return tuple(item for member in members if (item := _item_type(member)) is not None)


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _item_type(annotation: Any) -> Any:
    """The item type of ``list[X]`` or ``tuple[X, ...]``, or None for any other annotation."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if (origin is list and len(args) == 1) or (origin is tuple and len(args) == 2 and args[1] is Ellipsis):
        return args[0]
    return None


def _wanted(annotation: Any, finite: bool) -> str | None:
    """What ``annotation`` asks for in a recipe's words ("a whole number or null"); None for one type_problem leaves alone."""
    if annotation in _SCALARS:
        return "a finite number" if finite and annotation is float else _SCALARS[annotation][0]
    item = _item_type(annotation)
    if item is not None:
        return f"a list of {_SCALARS[item][1]}" if item in _SCALARS else None
    if _is_union(annotation):
        parts = [_wanted(member, finite) for member in typing.get_args(annotation)]
        if None in parts:
            return None
        words = cast("list[str]", parts)  # no None: returned above
        words.sort(key=lambda part: part == "null")  # null last
        plain = len(words) == 2 and not any(" or " in part for part in words)
        return " or ".join(words) if plain else ", ".join(words[:-1]) + f", or {words[-1]}"
    return None


def _fits(value: Any, annotation: Any, finite: bool) -> bool:
    """Whether ``value`` has the type ``annotation`` (one _wanted knows)."""
    if annotation is bool or annotation is str or annotation is type(None):
        return isinstance(value, annotation)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and (not finite or math.isfinite(value))
    item = _item_type(annotation)
    if item is not None:
        return isinstance(value, (list, tuple)) and all(_fits(element, item, finite) for element in value)
    return any(_fits(value, member, finite) for member in typing.get_args(annotation))


def _kind(value: Any) -> str:
    """What a YAML or JSON value is, in a recipe's words."""
    if value is None:
        return "null"
    for kind, name in ((bool, "a boolean"), (int, "a whole number"), (float, "a float"), (str, "a string"),
                       (Mapping, "a mapping"), ((list, tuple), "a list")):
        if isinstance(value, kind):
            return name
    return f"a {type(value).__name__}"

