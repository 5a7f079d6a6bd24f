"""The tracker's settings: the `tracker:` section of a recipe, checked before training starts.

Every check names the bad field (``tracker.every: ...``), so a recipe stops with one clear line
before any model loads.
"""

from __future__ import annotations

import functools
import json
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, cast

from sparks.dashboards.registry import KINDS
from sparks.probes.ig import IG_RULE, IG_RULES
from sparks.probes.metrics import METRICS
from sparks.probes.pairs import load_pairs
from sparks.probes.schemes import SCHEMES
from sparks.probes.scoring import LEVELS, METHODS
from sparks.probes.statistics import AGGREGATIONS, Selection
from sparks.runs.store import first_line
from sparks.tasks import arith

DASHBOARDS = ("auto", *KINDS, "none")
"""tracker.dashboards' choices: "auto" (W&B with a key, else trackio), a dashboard of the registry, or none."""


@dataclass(frozen=True)
class TrackerConfig:
    """How often and how the tracker scores the heads, how it picks the circuit, where it logs.

    Snapshots: the base model at the first step, every ``every`` optimizer steps, and the end.
    Pairs: a JSONL pair file (``sparks pairs``), or ``num_problems`` problems of the arithmetic
    world's probe split made into ``scheme`` pairs; a recipe on a real data set (gsm8k, openr1-math)
    makes ``num_problems`` of its held-out questions into style pairs (``levels`` is for the
    arithmetic world only; scheme numbers is refused there). Circuit: at node level the fewest heads holding
    ``mass`` of the total |score|; at edge level the top ``top_n`` edges pruned and thresholded by
    ``tau``; ranked by ``aggregation`` (probes.statistics). Uncertainty: ``replicates`` Poisson
    bootstrap replicates of the probe pairs (no extra forward pass); an event is confident when it
    happens in at least a share ``confidence`` of them. ``dashboards``: "auto" is W&B when a W&B key
    is set, trackio otherwise, in the trainer's ``project``; ``group`` puts runs of one experiment
    side by side; they draw the pictures at every ``pictures_every``-th snapshot and the last (the
    scalars, events and run store at every one). The
    run store under ``<output_dir>/sparks/`` is always written. ``strict`` makes a failed snapshot
    stop training.
    """

    every: int = 50
    method: str = "eap-ig"
    level: str = "node"
    metric: str = "kl"
    ig_steps: int = 5
    ig_rule: str = IG_RULE
    batch_size: int = 16
    chunk_size: int | None = None
    pairs: str | None = None
    scheme: str = "numbers"
    num_problems: int = 64
    levels: tuple[int, ...] = tuple(sorted(arith.LEVELS))
    seed: int = 0
    mass: float = 0.5
    top_n: int = 5000
    tau: float = 0.1
    aggregation: str = "mean_abs"
    replicates: int = 100
    confidence: float = 0.9
    dashboards: tuple[str, ...] = ("auto",)
    pictures_every: int = 1
    group: str | None = None
    max_lag: int = 3
    strict: bool = False

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"tracker.{name}: {why}")

        # The type of every setting first, from its annotation: the checks below can then compare and count.
        for item in fields(self):
            hints = _annotations(type(self))  # type: ignore[arg-type]  # a class is hashable; mypy's Hashable check misreads type[Self] (python/mypy#11470)
            problem = type_problem(getattr(self, item.name), hints[item.name], finite=True)
            if problem:
                raise bad(item.name, problem)
        for name in ("every", "ig_steps", "batch_size", "num_problems", "top_n", "replicates", "pictures_every"):
            value = getattr(self, name)
            if value <= 0:
                raise bad(name, f"must be a whole number > 0, got {value!r}")
        if self.chunk_size is not None and self.chunk_size <= 0:
            raise bad("chunk_size", f"must be a whole number > 0 or unset, got {self.chunk_size!r}")
        for name, choices in (("method", METHODS), ("level", LEVELS), ("metric", tuple(METRICS)), ("scheme", SCHEMES),
                              ("aggregation", AGGREGATIONS), ("ig_rule", IG_RULES)):
            if getattr(self, name) not in choices:
                raise bad(name, f"unknown {name} {getattr(self, name)!r}; choose from {', '.join(choices)}")
        if self.method == "ceap" and self.level == "edge":
            raise bad("method", "ceap (conductance) scores heads at node level only; use eap-ig for edges")
        if self.method == "exact" and self.level == "edge":
            raise bad("method", "exact edge patching is for tests on small models, not the live loop; use eap-ig")
        if self.method == "eap" and self.metric == "kl":
            raise ValueError("tracker.method, tracker.metric: eap with kl scores exactly zero (the KL gradient vanishes "
                             "at the clean input); use method eap-ig, or metric logit_diff or logprob")
        if self.replicates < 2:
            raise bad("replicates", f"needs at least 2 bootstrap replicates, got {self.replicates}")
        if not 0.5 < self.confidence <= 1.0:
            raise bad("confidence", f"must lie in (0.5, 1], got {self.confidence}")
        if self.pairs is not None:
            if not Path(self.pairs).is_file():
                raise bad("pairs", f"pair file {self.pairs!r} does not exist (make one with `sparks pairs`)")
            try:
                load_pairs(self.pairs)
            except (ValueError, OSError) as error:
                raise bad("pairs", first_line(error)) from None
        arith.check_levels(self.levels, "tracker.levels")
        if self.pairs is None:
            held = probe_problems_held(tuple(self.levels), self.num_problems, self.seed)
            if held < self.num_problems:
                raise bad("num_problems", f"{self.num_problems} probe problems asked, levels {list(self.levels)} hold only {held}")
        if not 0.0 < self.mass <= 1.0:
            raise bad("mass", f"must lie in (0, 1], got {self.mass}")
        if not 0.0 <= self.tau <= 1.0:
            raise bad("tau", f"must lie in [0, 1], got {self.tau}")
        if self.max_lag < 0:
            raise bad("max_lag", f"must be >= 0, got {self.max_lag}")
        unknown_dashboards = [name for name in self.dashboards if name not in DASHBOARDS]
        if unknown_dashboards or not self.dashboards:
            raise bad("dashboards", f"{list(self.dashboards)}: choose from {', '.join(DASHBOARDS)}")

    @classmethod
    def from_recipe(cls, section: Mapping[str, Any] | str) -> TrackerConfig:
        """The config from a recipe's `tracker:` mapping (or its JSON text from the command line)."""
        if isinstance(section, str):
            try:
                section = json.loads(section)
            except json.JSONDecodeError as error:
                raise ValueError(f"tracker: not a JSON mapping ({error.msg})") from None
        if not isinstance(section, Mapping):
            raise ValueError(f"tracker: must be a mapping of settings, got {type(section).__name__}")
        if "hysteresis" in section:
            raise ValueError("tracker.hysteresis: retired; every event now carries its bootstrap confidence, and "
                             "tracker.confidence sets the share of replicates a confident event needs (see the README)")
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ValueError(f"tracker.{unknown[0]}: unknown setting; known: {', '.join(sorted(known))}")
        values = dict(section)
        for name in ("levels", "dashboards"):  # one value stands for a list of one
            if name in values:
                value = values[name]
                values[name] = tuple(value) if isinstance(value, (list, tuple)) else (value,)
        return cls(**values)

    @property
    def selection(self) -> Selection:
        """How the snapshot's circuit is selected."""
        return Selection(self.level, self.aggregation, self.mass, self.top_n, self.tau)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able copy, for the run store and the dashboards' run config."""
        return {item.name: _plain(getattr(self, item.name)) for item in fields(self)}


@functools.lru_cache(maxsize=128)
def probe_problems_held(levels: tuple[int, ...], count: int, seed: int) -> int:
    """How many of ``count`` probe problems ``levels`` can give (the tracker's draw, tasks.arith.problems with fill);
    a count beyond all the levels hold (tasks.arith.held) is answered without drawing, which would take minutes."""
    total = arith.held("probe", levels)
    return total if count > total else len(arith.problems("probe", list(levels), count, seed, fill=True))


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@functools.cache
def _annotations(cls: type) -> dict[str, Any]:
    """A dataclass's field annotations as types (this module's are text, written under ``from __future__ import annotations``)."""
    return typing.get_type_hints(cls)


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
    shown = "null" if value is None else json.dumps(value) if isinstance(value, bool) else repr(_plain(value))
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

