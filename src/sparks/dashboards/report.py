"""What one snapshot hands to the dashboards, and the shape every dashboard has.

The tracker (callbacks.tracker) scores the live model, updates the lineage and builds one
SnapshotReport per snapshot on the main process; each dashboard (W&B, trackio) turns it into its
own panels. Dashboards log against the trainer's global step (``train/global_step``), never a
step counter of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from sparks.runs.lineage import Head, HeadLineage


@dataclass(frozen=True)
class SnapshotReport:
    """One snapshot as the dashboards see it.

    ``importance`` is the [L, H] share of |score| per head (sums to 1); ``membership`` the [L, H]
    share of bootstrap replicate circuits holding each head; ``circuit`` the heads the selection
    kept; ``events`` this snapshot's lineage events ({step, layer, head, event, score, reward,
    confidence, confident}); ``metrics`` the ``heads/...`` scalars; ``lineage`` everything so far
    (survival, cohorts, activation frequency, effect E); ``pictures`` whether the dashboards draw the
    pictures this time (TrackerConfig.pictures_every).
    """

    step: int
    importance: np.ndarray
    membership: np.ndarray
    circuit: list[Head]
    events: list[dict]
    metrics: dict[str, float]
    lineage: HeadLineage
    reward: float | None = None
    pictures: bool = True


class Dashboard(Protocol):
    """A live dashboard fed on the main process only."""

    def snapshot(self, report: SnapshotReport) -> None:
        """Log one snapshot's metrics, images, plots and events at ``report.step``."""

    def failure(self, step: int, message: str) -> None:
        """Record that the snapshot at ``step`` failed, with a one-line reason."""

    def summary(self, values: dict[str, float | int | str | None]) -> None:
        """Put run-level results (e.g. reward alignment) into the run summary."""

    def close(self) -> None:
        """Flush; never finish a run the dashboard did not start itself."""
