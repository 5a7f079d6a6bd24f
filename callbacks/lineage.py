"""Head lineage across circuit snapshots: births, prunings, emergence, lifespans, cohorts, effect E.

Fed one snapshot at a time (the base model first, then every N training steps), it keeps each
snapshot's scores and tracked heads and derives everything else from them (DESIGN.md section 2,
"Emergent heads", "Tracking", "Importance effect"). Heads are (layer, head) tuples; the state is a
JSON-able dict, so a resumed run continues exactly where the saved one stopped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np

from callbacks.survival import kaplan_meier

Head = tuple[int, int]
VERSION = 1
EPS = 1e-6  # the paper's denominator guard in E (appendix A.6)


def _holds(rank: np.ndarray, magnitude: np.ndarray, max_rank: int | None, min_score: float | None) -> np.ndarray:
    """[L, H] mask of heads with rank <= ``max_rank`` or |score| >= ``min_score`` (unset: never)."""
    mask = np.zeros(rank.shape, dtype=bool)
    if max_rank is not None:
        mask |= rank <= max_rank
    if min_score is not None:
        mask |= magnitude >= min_score
    return mask


@dataclass(frozen=True)
class Hysteresis:
    """Looser thresholds to stay tracked than to enter, so a head dipping for one snapshot is not pruned.

    Ranks are by |score|, 1 = largest, ties by (layer, head) order. A head enters when it is in the
    snapshot's circuit, or its rank <= ``enter_rank``, or its |score| >= ``enter_score``. A tracked head
    stays while it would enter, or its rank <= ``leave_rank``, or its |score| >= ``leave_score``.
    """

    leave_rank: int | None = None
    leave_score: float | None = None
    enter_rank: int | None = None
    enter_score: float | None = None

    def __post_init__(self) -> None:
        if self.leave_rank is None and self.leave_score is None:
            raise ValueError("hysteresis needs leave_rank or leave_score")
        if self.enter_rank is not None and self.leave_rank is not None and self.leave_rank < self.enter_rank:
            raise ValueError("leave_rank must be >= enter_rank")
        if self.enter_score is not None and self.leave_score is not None and self.leave_score > self.enter_score:
            raise ValueError("leave_score must be <= enter_score")

    def members(self, scores: np.ndarray, circuit: frozenset[Head], previous: frozenset[Head]) -> frozenset[Head]:
        """The tracked heads given this snapshot's scores and circuit and the previously tracked heads."""
        magnitude = np.abs(scores)
        rank = np.empty(magnitude.size, dtype=int)
        rank[np.argsort(-magnitude, axis=None, kind="stable")] = np.arange(1, magnitude.size + 1)
        rank = rank.reshape(magnitude.shape)
        enter = _holds(rank, magnitude, self.enter_rank, self.enter_score)
        stay = _holds(rank, magnitude, self.leave_rank, self.leave_score)
        entering = {(int(layer), int(head)) for layer, head in np.argwhere(enter)}
        return frozenset(circuit | entering | {head for head in previous if stay[head]})


@dataclass(frozen=True)
class Snapshot:
    """One scoring: the step, the [L, H] scores as given, the selected circuit, the tracked heads, the reward."""

    step: int
    scores: np.ndarray
    circuit: frozenset[Head]
    heads: frozenset[Head]
    reward: float | None


@dataclass(frozen=True)
class Cohort:
    """Heads first tracked at one snapshot, and the share of them tracked at that and every later snapshot."""

    heads: list[Head]
    steps: list[int]
    fraction: list[float]


def _heads(pairs: Iterable[Iterable[int]]) -> frozenset[Head]:
    return frozenset((int(layer), int(head)) for layer, head in pairs)


class HeadLineage:
    """Tracked heads per snapshot; the first snapshot is the base model's circuit.

    Without ``hysteresis`` the tracked heads are exactly each snapshot's circuit.
    """

    def __init__(self, hysteresis: Hysteresis | None = None) -> None:
        self.hysteresis = hysteresis
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
        """The base model's tracked heads."""
        return self.snapshots[0].heads

    def update(self, step: int, scores: np.ndarray, circuit: Iterable[Head], reward: float | None = None) -> list[dict]:
        """Add a snapshot and return its events (see ``events``).

        ``scores`` may be signed or |score| (hysteresis and E use the magnitude); ``reward`` is whatever
        the caller wants attached to the snapshot's events, e.g. the mean reward since the last one.
        """
        scores = np.array(scores, dtype=float)
        circuit = _heads(circuit)
        if scores.ndim != 2 or not np.isfinite(scores).all():
            raise ValueError(f"scores must be a finite [layers, heads] array, got shape {scores.shape}")
        if self.snapshots and scores.shape != self.shape:
            raise ValueError(f"scores shape {scores.shape} differs from the first snapshot's {self.shape}")
        if self.snapshots and step <= self.steps[-1]:
            raise ValueError(f"step {step} is not after the last snapshot's step {self.steps[-1]}")
        if any(not (0 <= layer < scores.shape[0] and 0 <= head < scores.shape[1]) for layer, head in circuit):
            raise ValueError(f"circuit heads {sorted(circuit)} fall outside scores of shape {scores.shape}")
        heads = circuit
        if self.hysteresis is not None:
            previous = self.snapshots[-1].heads if self.snapshots else frozenset()
            heads = self.hysteresis.members(scores, circuit, previous)
        reward = None if reward is None else float(reward)
        self.snapshots.append(Snapshot(int(step), scores, circuit, heads, reward))
        return self._events_at(len(self) - 1)

    def _index(self, index: int) -> int:
        return range(len(self))[index]

    def births(self, index: int = -1) -> set[Head]:
        """Heads tracked at snapshot ``index`` and not at the one before (none at the base)."""
        index = self._index(index)
        return set() if index == 0 else set(self.snapshots[index].heads - self.snapshots[index - 1].heads)

    def prunings(self, index: int = -1) -> set[Head]:
        """Heads tracked at the snapshot before ``index`` and not at ``index``."""
        index = self._index(index)
        return set() if index == 0 else set(self.snapshots[index - 1].heads - self.snapshots[index].heads)

    def emergent(self, index: int = -1) -> set[Head]:
        """Heads tracked at snapshot ``index`` and absent from the base (the paper's set difference)."""
        return set(self.snapshots[index].heads - self.base)

    def kept_from_base(self, index: int = -1) -> set[Head]:
        """Base heads still tracked at snapshot ``index``."""
        return set(self.snapshots[index].heads & self.base)

    def churn(self) -> np.ndarray:
        """Births + prunings per snapshot (0 at the base)."""
        return np.array([len(self.births(i)) + len(self.prunings(i)) for i in range(len(self))])

    def _events_at(self, index: int) -> list[dict]:
        snapshot = self.snapshots[index]
        if index == 0:
            kinds = [("base", snapshot.heads)]
        else:
            seen = frozenset().union(*(earlier.heads for earlier in self.snapshots[:index]))
            births = self.births(index)
            kinds = [("prune", self.prunings(index)), ("birth", births), ("emerge", births - seen)]
        return [
            {"step": snapshot.step, "layer": layer, "head": head, "event": kind,
             "score": float(snapshot.scores[layer, head]), "reward": snapshot.reward}
            for kind, heads in kinds
            for layer, head in sorted(heads)
        ]

    @property
    def events(self) -> list[dict]:
        """Every snapshot's events in order, append-only: {step, layer, head, event, score, reward}.

        ``event`` is "base" per base head, then per later snapshot "prune", "birth" and "emerge" (the
        birth of a head never tracked before, base included), each in (layer, head) order; ``score``
        is the head's score as given at that snapshot and ``reward`` the snapshot's reward.
        """
        return [event for index in range(len(self)) for event in self._events_at(index)]

    def lifespans(self) -> dict[Head, list[tuple[int, int | None]]]:
        """Per head ever tracked, its lives as (birth step, death step or None while alive).

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
        """Heads grouped by the step of the snapshot where each was first tracked (the base is one cohort)."""
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
        """[L, H] share of snapshots (base included) in which each head was tracked."""
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
        lineage = HeadLineage(self.hysteresis)
        lineage.snapshots = [snapshot for snapshot in self.snapshots if snapshot.step <= step]
        return lineage

    def state_dict(self) -> dict:
        """A JSON-able copy of the state, versioned."""
        return {
            "version": VERSION,
            "hysteresis": None if self.hysteresis is None else asdict(self.hysteresis),
            "snapshots": [
                {"step": snapshot.step, "scores": snapshot.scores.tolist(),
                 "circuit": [list(head) for head in sorted(snapshot.circuit)],
                 "heads": [list(head) for head in sorted(snapshot.heads)], "reward": snapshot.reward}
                for snapshot in self.snapshots
            ],
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> HeadLineage:
        """The lineage that ``state_dict`` saved."""
        if state.get("version") != VERSION:
            raise ValueError(f"lineage state version {state.get('version')!r}, expected {VERSION}")
        hysteresis = None if state["hysteresis"] is None else Hysteresis(**state["hysteresis"])
        lineage = cls(hysteresis)
        lineage.snapshots = [
            Snapshot(record["step"], np.array(record["scores"], dtype=float), _heads(record["circuit"]),
                     _heads(record["heads"]), record["reward"])
            for record in state["snapshots"]
        ]
        return lineage
