"""Head lineage across circuit snapshots: births, prunings, emergence, lifespans, cohorts, effect E.

Fed one snapshot at a time (the base model first, then every N training steps), it keeps each
snapshot's scores and circuit and derives everything else from them
(docs/method.md, "Head lineage" and "Head importance and the importance effect"). Heads are
(layer, head) tuples; the state is a JSON-able dict, so a resumed run continues exactly where the
saved one stopped.

Every event also carries its confidence (docs/uncertainty.md, "Confident events"): a snapshot may
come with its bootstrap replicate circuits (probes.statistics), and since every snapshot resamples the same
probe pairs the same way, replicate b here and replicate b at the previous snapshot (and at the
base) are comparable. A birth of h happens in replicate b when h is outside replicate b's previous
circuit and inside its current one; the event's confidence is the share of replicates in which it
happens, and it is confident when that share reaches ``level``. A pruning, an emergence (h in
replicate b's circuit and not in replicate b's base circuit) and a base head (h in replicate b's
base circuit) are judged the same way. Events stay raw: the lineage of reported circuits is kept
whole, each event marked with how sure it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from sparks.runs.survival import kaplan_meier

Head = tuple[int, int]
VERSION = 3
READABLE = (2, 3)
"""Lineage state versions this code reads: version 3 names the confidence level ``confidence_level`` (2: ``level``)."""
EPS = 1e-6  # the paper's denominator guard in E (appendix A.6)


@dataclass(frozen=True)
class Snapshot:
    """One scoring: the step, the [L, H] scores as given, the circuit's heads, the reward, and the
    [B, L, H] bool heads of the bootstrap replicate circuits (None without replicates)."""

    step: int
    scores: np.ndarray
    heads: frozenset[Head]
    reward: float | None
    replicates: np.ndarray | None = None


@dataclass(frozen=True)
class Cohort:
    """Heads first in the circuit at one snapshot, and the share of them in it at that and every later snapshot."""

    heads: list[Head]
    steps: list[int]
    fraction: list[float]


def _heads(pairs: Iterable[Iterable[int]]) -> frozenset[Head]:
    return frozenset((int(layer), int(head)) for layer, head in pairs)


class HeadLineage:
    """Circuit heads per snapshot; the first snapshot is the base model's circuit.

    ``confidence_level``: the share of bootstrap replicates in which an event must happen to be confident.
    """

    def __init__(self, confidence_level: float = 0.9) -> None:
        if not 0.0 < confidence_level <= 1.0:
            raise ValueError(f"confidence_level must lie in (0, 1], got {confidence_level}")
        self.confidence_level = confidence_level
        self.snapshots: list[Snapshot] = []

    def __len__(self) -> int:
        return len(self.snapshots)

    @property
    def steps(self) -> list[int]:
        return [snapshot.step for snapshot in self.snapshots]

    @property
    def shape(self) -> tuple[int, int]:
        return self.snapshots[0].scores.shape

    @property
    def base(self) -> frozenset[Head]:
        """The base model's circuit heads."""
        return self.snapshots[0].heads

    def update(
        self,
        step: int,
        scores: np.ndarray,
        circuit: Iterable[Head],
        reward: float | None = None,
        replicates: np.ndarray | None = None,
    ) -> list[dict]:
        """Add a snapshot and return its events (see ``events``).

        ``scores`` may be signed or |score| (E uses the magnitude); ``reward`` is whatever the caller
        wants attached to the snapshot's events, e.g. the mean reward since the last one;
        ``replicates`` the [B, L, H] bool heads of the snapshot's bootstrap replicate circuits, with
        the same B at every snapshot (or None at every snapshot).
        """
        scores = np.array(scores, dtype=float)
        heads = _heads(circuit)
        if scores.ndim != 2 or not np.isfinite(scores).all():
            raise ValueError(f"scores must be a finite [layers, heads] array, got shape {scores.shape}")
        if self.snapshots and scores.shape != self.shape:
            raise ValueError(f"scores shape {scores.shape} differs from the first snapshot's {self.shape}")
        if self.snapshots and step <= self.steps[-1]:
            raise ValueError(f"step {step} is not after the last snapshot's step {self.steps[-1]}")
        if any(not (0 <= layer < scores.shape[0] and 0 <= head < scores.shape[1]) for layer, head in heads):
            raise ValueError(f"circuit heads {sorted(heads)} fall outside scores of shape {scores.shape}")
        if replicates is not None:
            replicates = np.asarray(replicates, dtype=bool)
            expected = self.snapshots[0].replicates.shape if self.snapshots and self.snapshots[0].replicates is not None else None
            if replicates.ndim != 3 or replicates.shape[1:] != scores.shape or (expected and replicates.shape != expected):
                raise ValueError(f"replicates {replicates.shape} must be [B, {scores.shape[0]}, {scores.shape[1]}] "
                                 f"with the first snapshot's B")
        if self.snapshots and (replicates is None) != (self.snapshots[0].replicates is None):
            raise ValueError("every snapshot has replicate circuits, or none has")
        reward = None if reward is None else float(reward)
        self.snapshots.append(Snapshot(int(step), scores, heads, reward, replicates))
        return self._events_at(len(self) - 1)

    def _index(self, index: int) -> int:
        return range(len(self))[index]

    def births(self, index: int = -1) -> set[Head]:
        """Circuit heads at snapshot ``index`` that were not at the one before (none at the base)."""
        index = self._index(index)
        return set() if index == 0 else set(self.snapshots[index].heads - self.snapshots[index - 1].heads)

    def prunings(self, index: int = -1) -> set[Head]:
        """Circuit heads at the snapshot before ``index`` that are not at ``index``."""
        index = self._index(index)
        return set() if index == 0 else set(self.snapshots[index - 1].heads - self.snapshots[index].heads)

    def emergent(self, index: int = -1) -> set[Head]:
        """Circuit heads at snapshot ``index`` absent from the base (the paper's set difference)."""
        return set(self.snapshots[index].heads - self.base)

    def kept_from_base(self, index: int = -1) -> set[Head]:
        """Base heads still in the circuit at snapshot ``index``."""
        return set(self.snapshots[index].heads & self.base)

    def churn(self) -> np.ndarray:
        """Births + prunings per snapshot (0 at the base)."""
        return np.array([len(self.births(i)) + len(self.prunings(i)) for i in range(len(self))])

    def confidence(self, index: int, kind: str) -> np.ndarray | None:
        """[L, H] share of replicates in which the event ``kind`` happens to each head at snapshot ``index``.

        ``kind`` names an entry of EVENT_KINDS, which says when it happens in a replicate. None without replicates.
        """
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {kind!r}; choose from {tuple(EVENT_KINDS)}")
        index = self._index(index)
        now = self.snapshots[index].replicates
        if now is None:
            return None
        event = EVENT_KINDS[kind]
        if event.at_base:
            happens = self._replicates(0)
        elif index == 0:
            happens = np.zeros_like(now)
        else:
            happens = event.in_replicates(self._replicates(index - 1), now, self._replicates(0))
        return happens.mean(0)

    def _replicates(self, index: int) -> np.ndarray:
        """Snapshot ``index``'s replicate circuits, asked for once another snapshot has them."""
        replicates = self.snapshots[index].replicates
        assert replicates is not None, "every snapshot has replicate circuits, or none has (update checks it)"
        return replicates

    def confident(self, heads: Iterable[Head], index: int, kind: str) -> set[Head]:
        """Those of ``heads`` whose ``kind`` event at snapshot ``index`` is confident (none without replicates)."""
        shares = self.confidence(index, kind)
        return set() if shares is None else {head for head in heads if shares[head] >= self.confidence_level}

    def ever_before(self, index: int) -> frozenset[Head]:
        """Heads in any circuit before snapshot ``index``, the base's included."""
        return frozenset().union(*(earlier.heads for earlier in self.snapshots[: self._index(index)]))

    def _events_at(self, index: int) -> list[dict]:
        snapshot = self.snapshots[index]
        events = []
        for kind in EVENT_KINDS.values():
            if kind.at_base != (index == 0):
                continue
            shares = self.confidence(index, kind.name)
            for layer, head in sorted(kind.listed(self, index)):
                share = None if shares is None else float(shares[layer, head])
                events.append({
                    "step": snapshot.step, "layer": layer, "head": head, "event": kind.name,
                    "score": float(snapshot.scores[layer, head]), "reward": snapshot.reward,
                    "confidence": share, "confident": None if share is None else share >= self.confidence_level,
                })
        return events

    @property
    def events(self) -> list[dict]:
        """Every snapshot's events in order, append-only: {step, layer, head, event, score, reward,
        confidence, confident}.

        ``event`` is "base" per base head, then per later snapshot "prune", "birth" and "emerge" (the
        birth of a head never in a circuit before, base included), each in (layer, head) order;
        ``score`` is the head's score as given at that snapshot, ``reward`` the snapshot's reward,
        ``confidence`` the share of replicates in which the event happens (see ``confidence``; an
        "emerge" event's is that of the head's emergence against the base) and ``confident``
        whether it reaches ``level`` (both None without replicates).
        """
        return [event for index in range(len(self)) for event in self._events_at(index)]

    def lifespans(self) -> dict[Head, list[tuple[int, int | None]]]:
        """Per head ever in a circuit, its lives as (birth step, death step or None while alive).

        A base head's first life starts at the base step; a death is the first snapshot without it.
        """
        lives: dict[Head, list[tuple[int, int | None]]] = {}
        previous: frozenset[Head] = frozenset()
        for snapshot in self.snapshots:
            for head in snapshot.heads - previous:
                lives.setdefault(head, []).append((snapshot.step, None))
            for head in previous - snapshot.heads:
                lives[head][-1] = (lives[head][-1][0], snapshot.step)
            previous = snapshot.heads
        return dict(sorted(lives.items()))

    def survival(self, include_base: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Kaplan-Meier S(t) over life durations in steps, lives alive at the last snapshot censored there.

        Lives starting at the base snapshot are left out unless ``include_base``: they began before
        training, so their length is not a lifetime since birth.
        """
        last, base_step = self.steps[-1], self.steps[0]
        lives = [life for head_lives in self.lifespans().values() for life in head_lives]
        lives = [(birth, death) for birth, death in lives if include_base or birth != base_step]
        durations = [(last if death is None else death) - birth for birth, death in lives]
        return kaplan_meier(durations, [death is not None for _, death in lives])

    def cohorts(self) -> dict[int, Cohort]:
        """Heads grouped by the step of the snapshot where each was first in the circuit (the base is one cohort)."""
        first: dict[Head, int] = {}
        for index, snapshot in enumerate(self.snapshots):
            for head in snapshot.heads:
                first.setdefault(head, index)
        cohorts = {}
        for index in sorted(set(first.values())):
            heads = sorted(head for head, start in first.items() if start == index)
            later = self.snapshots[index:]
            fraction = [len(set(heads) & snapshot.heads) / len(heads) for snapshot in later]
            cohorts[self.snapshots[index].step] = Cohort(heads, [snapshot.step for snapshot in later], fraction)
        return cohorts

    def activation_frequency(self) -> np.ndarray:
        """[L, H] share of snapshots (base included) in which each head was in the circuit."""
        counts = np.zeros(self.shape)
        for snapshot in self.snapshots:
            for head in snapshot.heads:
                counts[head] += 1
        return counts / len(self)

    def importance_effect(self) -> np.ndarray:
        """[L, H] E = mean over later snapshots of (I_post - I_pre) / (I_post + I_pre + 1e-6) (appendix A.6).

        I is a snapshot's |scores| normalised to sum 1 and I_pre the base's; all NaN before a second snapshot.
        """
        shares = []
        for snapshot in self.snapshots:
            magnitude = np.abs(snapshot.scores)
            total = magnitude.sum()
            shares.append(magnitude / total if total > 0 else magnitude)
        pre = shares[0]
        effects = [(post - pre) / (post + pre + EPS) for post in shares[1:]]
        return np.mean(effects, axis=0) if effects else np.full(self.shape, np.nan)

    def until(self, step: int) -> HeadLineage:
        """The lineage as it stood after its last snapshot at or before ``step`` (for resuming there)."""
        lineage = HeadLineage(self.confidence_level)
        lineage.snapshots = [snapshot for snapshot in self.snapshots if snapshot.step <= step]
        return lineage

    def state_dict(self) -> dict:
        """A JSON-able copy of the state, versioned; replicate circuits as one hex string of packed bits each."""
        return {
            "version": VERSION,
            "confidence_level": self.confidence_level,
            "snapshots": [
                {"step": snapshot.step, "scores": snapshot.scores.tolist(),
                 "heads": [list(head) for head in sorted(snapshot.heads)], "reward": snapshot.reward,
                 "replicates": None if snapshot.replicates is None else [
                     np.packbits(replicate.reshape(-1)).tobytes().hex() for replicate in snapshot.replicates]}
                for snapshot in self.snapshots
            ],
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> HeadLineage:
        """The lineage that ``state_dict`` saved; ValueError naming the field that is missing or of the wrong type."""
        check_state(state)
        lineage = cls(state[_confidence_key(state["version"])])
        for record in state["snapshots"]:
            scores = np.array(record["scores"], dtype=float)
            replicates = None
            if record["replicates"] is not None:
                bits = [np.unpackbits(np.frombuffer(bytes.fromhex(text), dtype=np.uint8))[: scores.size]
                        for text in record["replicates"]]
                replicates = np.stack(bits).astype(bool).reshape(len(bits), *scores.shape)
            lineage.snapshots.append(Snapshot(record["step"], scores, _heads(record["heads"]), record["reward"], replicates))
        return lineage


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class EventKind:
    """A kind of head event (docs/events.md): which heads it happens to at a snapshot, in the reported circuits
    and in each bootstrap replicate's, and how the tracker counts it.

    ``heads``: the heads it holds for at snapshot i (the lineage, i), counted in ``heads/<counted_as>`` and
    ``heads/confident_<counted_as>`` when ``counted_as`` is set; ``listed_heads``: those events.jsonl lists at
    i, when not ``heads``; ``in_replicates``: where it happens in each replicate, from the previous snapshot's,
    this one's and the base's replicate circuits ([B, L, H] each); ``at_base``: it happens at the base snapshot
    only (the others never do); ``churn``: it counts in the churn (births + prunings).
    """

    name: str
    heads: Callable[[HeadLineage, int], set[Head]]
    in_replicates: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
    counted_as: str | None = None
    churn: bool = False
    at_base: bool = False
    listed_heads: Callable[[HeadLineage, int], set[Head]] | None = None

    def listed(self, lineage: HeadLineage, index: int) -> set[Head]:
        """The heads events.jsonl lists for this kind at snapshot ``index``."""
        return (self.listed_heads or self.heads)(lineage, index)


EVENT_KINDS: dict[str, EventKind] = {kind.name: kind for kind in (
    EventKind("base", heads=lambda lineage, index: set(lineage.base),
              in_replicates=lambda previous, now, base: base, at_base=True),
    EventKind("prune", heads=HeadLineage.prunings, in_replicates=lambda previous, now, base: previous & ~now,
              counted_as="prunings", churn=True),
    EventKind("birth", heads=HeadLineage.births, in_replicates=lambda previous, now, base: now & ~previous,
              counted_as="births", churn=True),
    EventKind("emerge", heads=HeadLineage.emergent, in_replicates=lambda previous, now, base: now & ~base,
              counted_as="emergent",
              listed_heads=lambda lineage, index: lineage.births(index) - lineage.ever_before(index)),
)}
"""Every event kind, in the order events.jsonl lists a snapshot's events: "base" (in the base circuit), "prune"
and "birth" (leaves and enters the circuit since the previous snapshot), "emerge" (in the circuit and not in
the base circuit: listed at a head's first birth, judged by its emergence against the base)."""
CHURN_KINDS = tuple(kind for kind in EVENT_KINDS.values() if kind.churn)
"""The kinds the churn counts: prunings and births."""


def event_counts(lineage: HeadLineage, index: int, kinds: Iterable[str] = tuple(EVENT_KINDS)) -> tuple[dict[str, int], dict[str, int]]:
    """Per event kind of ``kinds`` (all by default), how many heads it holds for at snapshot ``index``
    (EventKind.heads) and how many of them confidently."""
    heads = {name: EVENT_KINDS[name].heads(lineage, index) for name in kinds}
    return ({name: len(held) for name, held in heads.items()},
            {name: len(lineage.confident(held, index, name)) for name, held in heads.items()})


def _confidence_key(version: int) -> str:
    """Where a lineage state of ``version`` keeps its confidence level (version 2 called it ``level``)."""
    return "confidence_level" if version >= 3 else "level"


def check_state(state: object) -> None:
    """Check a saved lineage field by field, so that a damaged one is named where it is damaged
    (``snapshots[2].step: ...``) instead of failing somewhere downstream."""
    if not isinstance(state, dict):
        raise ValueError(f"not a lineage state: a JSON {type(state).__name__}")
    if state.get("version") not in READABLE:
        raise ValueError(f"version: {state.get('version')!r}, this sparks reads lineage state versions {list(READABLE)}")
    key = _confidence_key(state["version"])
    if not _number(state.get(key)) or not 0 < state[key] <= 1:
        raise ValueError(f"{key}: must be a number in (0, 1], got {state.get(key)!r}")
    snapshots = state.get("snapshots")
    if not isinstance(snapshots, list):
        raise ValueError(f"snapshots: must be a list, got {type(snapshots).__name__}")
    shape, previous = None, -1
    replicate_count: int | None = None  # the first snapshot's number of replicates (0 without), which every one keeps
    for index, record in enumerate(snapshots):
        where = f"snapshots[{index}]"
        if not isinstance(record, dict):
            raise ValueError(f"{where}: must be a mapping, got {type(record).__name__}")
        missing = [key for key in ("step", "scores", "heads", "reward", "replicates") if key not in record]
        if missing:
            raise ValueError(f"{where}.{missing[0]}: missing")
        step = record["step"]
        if not isinstance(step, int) or isinstance(step, bool) or step <= previous:
            raise ValueError(f"{where}.step: must be a whole number above the previous snapshot's {previous}, got {step!r}")
        previous = step
        scores = record["scores"]
        rows = scores if isinstance(scores, list) else None
        if not rows or not all(isinstance(row, list) and row and all(_number(value) for value in row) for row in rows) \
                or len({len(row) for row in rows}) != 1:
            raise ValueError(f"{where}.scores: must be a [layers][heads] table of numbers")
        if shape is not None and (len(rows), len(rows[0])) != shape:
            raise ValueError(f"{where}.scores: {len(rows)}x{len(rows[0])}, the lineage's heads are {shape[0]}x{shape[1]}")
        shape = (len(rows), len(rows[0]))
        heads = record["heads"]
        if not isinstance(heads, list) or not all(
                isinstance(head, list) and len(head) == 2 and all(isinstance(part, int) and not isinstance(part, bool) for part in head)
                and 0 <= head[0] < shape[0] and 0 <= head[1] < shape[1] for head in heads):
            raise ValueError(f"{where}.heads: must be a list of [layer, head] within {shape[0]}x{shape[1]}")
        if record["reward"] is not None and not _number(record["reward"]):
            raise ValueError(f"{where}.reward: must be a number or null, got {record['reward']!r}")
        replicates = record["replicates"]
        if replicates is not None and not (isinstance(replicates, list) and replicates and all(isinstance(text, str) for text in replicates)):
            raise ValueError(f"{where}.replicates: must be a non-empty list of hex strings or null")
        count = 0 if replicates is None else len(replicates)
        if replicate_count is not None and count != replicate_count:
            raise ValueError(f"{where}.replicates: {count or 'none'}, where the first snapshot has {replicate_count or 'none'}")
        replicate_count = count
        if replicates:
            try:
                sizes = {len(bytes.fromhex(text)) for text in replicates}
            except ValueError:
                raise ValueError(f"{where}.replicates: not hex strings") from None
            if sizes != {-(-shape[0] * shape[1] // 8)}:
                raise ValueError(f"{where}.replicates: each must pack {shape[0] * shape[1]} bits")
