"""The tracker's settings: the `tracker:` section of a recipe, checked before training starts.

Every check names the bad field (``tracker.every: ...``), so a recipe stops with one clear line
before any model loads.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from sparks.dashboards.registry import KINDS
from sparks.probes.pairs import load_pairs
from sparks.probes.probe_set import ProbeSet
from sparks.probes.schemes import SCHEMES
from sparks.probes.settings import Rule, SettingError, plain_setting
from sparks.probes.spec import COUNT, ScoringSpec, declared, setting
from sparks.runs.store import first_line
from sparks.tasks import arith

DASHBOARDS = ("auto", *KINDS, "none")
"""tracker.dashboards' choices: "auto" (W&B with a key, else trackio), a dashboard of the registry, or none."""


@dataclass(frozen=True)
class TrackerConfig(ScoringSpec):
    """How often and how the tracker scores the heads, how it picks the circuit, where it logs: the
    scoring spec (probes.spec) and the tracker's own settings.

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

    every: int = setting(50, COUNT, "optimizer steps between snapshots", rescore=False)
    pairs: str | None = setting(None, None, "a JSONL pair file (sparks pairs) in place of drawn problems", rescore=False)
    scheme: str = setting("numbers", Rule("choice", choices=SCHEMES), "how drawn problems become pairs", rescore=False)
    num_problems: int = setting(64, COUNT, "probe problems drawn", draws=True)
    levels: tuple[int, ...] = setting(tuple(sorted(arith.LEVELS)), None, "arithmetic levels drawn", rescore=False)
    dashboards: tuple[str, ...] = setting(("auto",), None, "where the heads are shown live", lineage=False, rescore=False)
    pictures_every: int = setting(1, COUNT, "snapshots between pictures", lineage=False, rescore=False)
    group: str | None = setting(None, None, "the dashboards' group", lineage=False, rescore=False)
    max_lag: int = setting(3, None, "snapshots the reward alignment looks ahead and behind", lineage=False, rescore=False)
    strict: bool = setting(False, None, "a failed snapshot stops training", lineage=False, rescore=False)

    def __post_init__(self) -> None:
        try:
            super().__post_init__()
        except SettingError as error:
            raise ValueError(error.named(lambda name: f"tracker.{name}")) from None

        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"tracker.{name}: {why}")

        if self.method == "exact" and self.level == "edge":
            raise bad("method", "exact edge patching is for tests on small models, not the live loop; use eap-ig")
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
    def probe_set(self) -> ProbeSet:
        """Where the probe pairs come from."""
        return ProbeSet(self.pairs, self.scheme, self.num_problems, tuple(self.levels), self.seed)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able copy, for the run store and the dashboards' run config."""
        return {item.name: plain_setting(getattr(self, item.name)) for item in fields(self)}


LINEAGE_SETTINGS = declared(TrackerConfig, "lineage")
"""The settings that define what a lineage measures: a resumed run must keep them (runs.store.RunStore.check_settings)."""
RESCORE_SETTINGS = declared(TrackerConfig, "rescore")
"""The settings ``sparks rescore`` may change; the others stay the run's."""
DRAW_SETTINGS = declared(TrackerConfig, "draws")
"""The settings a rescore may change that change which probe problems are drawn."""


@functools.lru_cache(maxsize=128)
def probe_problems_held(levels: tuple[int, ...], count: int, seed: int) -> int:
    """How many of ``count`` probe problems ``levels`` can give (the tracker's draw, tasks.arith.problems with fill);
    a count beyond all the levels hold (tasks.arith.held) is answered without drawing, which would take minutes."""
    total = arith.held("probe", levels)
    return total if count > total else len(arith.problems("probe", list(levels), count, seed, fill=True))

