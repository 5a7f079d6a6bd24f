"""Four hand-made snapshots of a 2-layer, 3-head model, as the tracker would hand them to dashboards."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from sparks.dashboards.report import SnapshotReport
from sparks.runs.lineage import HeadLineage

STEPS = [0, 10, 20, 30]
# base {00, 01, 12} -> {00, 10, 11} -> {00, 01, 10} -> {00, 10}
CIRCUITS = [{(0, 0), (0, 1), (1, 2)}, {(0, 0), (1, 0), (1, 1)}, {(0, 0), (0, 1), (1, 0)}, {(0, 0), (1, 0)}]
REWARDS = [None, 0.25, 0.5, 0.75]


def _scores(step: int) -> np.ndarray:
    return np.arange(1, 7, dtype=float).reshape(2, 3) + step / 10


def circuit_size(step: int) -> int:
    """The ``heads/circuit_size`` metric the report at ``step`` carries."""
    return len(CIRCUITS[STEPS.index(step)])


def _replicates(circuit: set, step: int) -> np.ndarray:
    """Ten replicate circuits: the circuit itself, except that replicate (step / 10) also holds head (1, 1)."""
    replicates = np.zeros((10, 2, 3), dtype=bool)
    for head in circuit:
        replicates[(slice(None), *head)] = True
    replicates[step // 10, 1, 1] = True
    return replicates


def reports() -> Iterator[SnapshotReport]:
    """One report per snapshot, each built right after its lineage update (the lineage is shared and grows)."""
    lineage = HeadLineage(confidence_level=0.9)
    for step, circuit, reward in zip(STEPS, CIRCUITS, REWARDS):
        scores = _scores(step)
        replicates = _replicates(circuit, step)
        events = lineage.update(step, scores, circuit, reward, replicates)
        metrics = {
            "heads/circuit_size": float(len(circuit)),
            "heads/births": float(len(lineage.births())),
            "heads/prunings": float(len(lineage.prunings())),
            "heads/emergent": float(len(lineage.emergent())),
            "heads/confident_births": float(len(lineage.confident(lineage.births(), -1, "birth"))),
            "heads/confident_prunings": float(len(lineage.confident(lineage.prunings(), -1, "prune"))),
            "heads/null_churn": 0.18,
            "heads/stability": 0.95,
            "heads/faithfulness": 0.5 + step / 100,
        }
        yield SnapshotReport(step, scores / scores.sum(), replicates.mean(0), sorted(circuit), events, metrics, lineage, reward)


def final_lineage() -> HeadLineage:
    """The lineage after all four snapshots."""
    *_, last = reports()
    return last.lineage
