"""How a snapshot's heads are scored and its circuit chosen, in one frozen spec.

Every scoring setting is declared here once, with its default, its rule (probes.settings) and what it
means for a run: whether it defines a lineage (a resumed run must keep it, and runs compared side by
side should share it) and whether ``sparks rescore`` may change it. The tracker's settings extend the
spec (callbacks.config.TrackerConfig); the ``sparks`` subcommands make their flags from it
(``add_flags``) and build it from them (``from_flags``), so every reader takes and refuses the same
values with the same words.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from sparks.probes.ig import IG_RULE, IG_RULES
from sparks.probes.metrics import METRICS
from sparks.probes.scoring import LEVELS, METHODS
from sparks.probes.settings import Rule, SettingError, check_fields
from sparks.probes.statistics import AGGREGATIONS, Selection

COUNT = Rule("count")


def setting(default: Any, rule: Rule | None, meaning: str, *, lineage: bool = True, rescore: bool = True,
            draws: bool = False) -> Any:
    """A field of settings: its default, its rule (None: any value of its type), what it means (the flag's
    help), whether it defines a lineage, whether a rescore may change it, and whether it changes which
    probe problems are drawn."""
    return field(default=default,
                 metadata={"rule": rule, "help": meaning, "lineage": lineage, "rescore": rescore, "draws": draws})


@dataclass(frozen=True)
class ScoringSpec:
    """How heads are scored on probe pairs and their circuit selected, with its bootstrap uncertainty."""

    method: str = setting("eap-ig", Rule("choice", choices=METHODS),
                          "eap (one gradient), eap-ig (integrated gradients), ceap (conductance) or exact patching")
    level: str = setting("node", Rule("choice", choices=LEVELS), "score heads (node) or edges between them (edge)")
    metric: str = setting("kl", Rule("choice", choices=tuple(sorted(METRICS))),
                          "what a head changes: kl (the next-token distribution), logit_diff or logprob of the answer")
    ig_steps: int = setting(5, COUNT, "integrated-gradient points between the corrupted and the clean input")
    ig_rule: str = setting(IG_RULE, Rule("choice", choices=IG_RULES),
                           "where eap-ig/ceap place their points: right k/m, left (k-1)/m (hannamw/EAP-IG), midpoint (k-1/2)/m")
    batch_size: int = setting(16, COUNT, "pairs per forward pass", lineage=False)
    chunk_size: int | None = setting(None, Rule("count", optional=True),
                                     "IG points per forward pass (default: all for nodes, one for edges)", lineage=False)
    aggregation: str = setting("mean_abs", Rule("choice", choices=AGGREGATIONS),
                               "per-pair scores to a ranking: mean of |score| or |mean of signed score|")
    mass: float = setting(0.5, Rule("interval", open_low=True), "node level: share of |score| the circuit's heads hold")
    top_n: int = setting(5000, COUNT, "edge level: edges kept before pruning")
    tau: float = setting(0.1, Rule("interval"), "edge level: threshold relative to the largest kept edge")
    replicates: int = setting(100, Rule("count", least=2, too_few="needs at least 2 bootstrap replicates"),
                              "Poisson bootstrap replicates of the pairs")
    seed: int = setting(0, Rule("whole"), "seed of the bootstrap weights", rescore=False)
    confidence: float = setting(0.9, Rule("interval", low=0.5, open_low=True),
                                "share of bootstrap replicates an event (or a head's category) needs to be confident")

    def __post_init__(self) -> None:
        check_fields(self, rules(type(self)))
        if self.method == "ceap" and self.level == "edge":
            raise SettingError("method", "ceap (conductance) scores heads at node level only; use eap-ig for edges")
        if self.method == "eap" and self.metric == "kl":
            raise SettingError(("method", "metric"), "eap with kl scores exactly zero (the KL gradient vanishes at the "
                                                     "clean input); use method eap-ig, or metric logit_diff or logprob")

    @property
    def selection(self) -> Selection:
        """How the circuit is selected from the aggregated scores."""
        return Selection(self.level, self.aggregation, self.mass, self.top_n, self.tau)


def rules(kind: type) -> dict[str, Rule]:
    """The rules of a dataclass of settings' fields, by name."""
    return {item.name: item.metadata["rule"] for item in fields(kind) if item.metadata.get("rule")}


def declared(kind: type, what: str) -> tuple[str, ...]:
    """The settings of ``kind`` that declare ``what`` ("lineage": define a lineage; "rescore": a rescore may change them)."""
    return tuple(item.name for item in fields(kind) if item.metadata.get(what))


def flag(name: str) -> str:
    """A setting's command-line flag: ``ig_steps`` is ``--ig-steps``."""
    return "--" + name.replace("_", "-")


def add_flags(parser: argparse.ArgumentParser, names: Sequence[str], kind: type = ScoringSpec, *,
              defaults: bool = True, helps: Mapping[str, str] | None = None) -> None:
    """Add the settings ``names`` of ``kind`` to ``parser`` as flags, converted and checked by their rules
    (``defaults``: the declared default, else None for "leave as it is"); ``helps`` replaces a meaning."""
    declared_fields = {item.name: item for item in fields(kind)}
    for name in names:
        item = declared_fields[name]
        rule: Rule | None = item.metadata["rule"]
        meaning = (helps or {}).get(name, item.metadata["help"])
        shown = defaults and item.default is not None
        options: dict[str, Any] = {"help": f"{meaning} (default: {item.default})" if shown else meaning,
                                   "default": item.default if defaults else None}
        if rule is not None and rule.kind == "choice":
            options["choices"] = rule.choices
        elif rule is not None:
            options["type"] = rule.flag_value
        parser.add_argument(flag(name), **options)


def from_flags(args: argparse.Namespace, names: Sequence[str], **fixed: Any) -> ScoringSpec:
    """The spec of the flags ``names`` (the others at their defaults, or ``fixed``); ValueError naming the
    flags of a combination the spec refuses (each flag's own value was checked as it was parsed)."""
    try:
        return ScoringSpec(**{name: getattr(args, name) for name in names}, **fixed)
    except SettingError as error:
        raise ValueError(error.named(flag)) from None
