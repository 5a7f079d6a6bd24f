"""The main process's side of a snapshot: lineage, run store, dashboards, console line and summary.

Fed each snapshot's statistics (callbacks.snapshot) once that step's logs are in, it updates the
head lineage with the circuit and its bootstrap replicates, writes the run store, feeds the
dashboards and prints one line naming confident and raw event counts next to the null churn.
The reward series the trainer logs come in through ``log``; the window each snapshot closes is
computed here, once, and the alignment reads those windows.
"""

from __future__ import annotations

import functools
import logging
import math
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from sparks.callbacks.config import TrackerConfig
from sparks.dashboards.report import Dashboard, SnapshotReport
from sparks.probes.statistics import SnapshotStats
from sparks.runs.alignment import REWARD_KEYS, alignment_summary, reward_alignment
from sparks.runs.lineage import CHURN_KINDS, EVENT_KINDS, HeadLineage, event_counts
from sparks.runs.store import RunStore, first_line, plain_number

logger = logging.getLogger(__name__)



def kept_series(logs: dict[str, Any]) -> dict[str, float]:
    """The logged values the tracker keeps: rewards, completion length, SFT loss and token accuracy."""
    names = ("reward", "loss", "mean_token_accuracy", "completions/mean_length")
    return {
        name: float(value)
        for name, value in logs.items()
        if isinstance(value, (int, float)) and (name in names or (name.startswith("rewards/") and name.endswith("/mean")))
    }


def snapshot_metrics(lineage: HeadLineage, stats: SnapshotStats, seconds: float) -> dict[str, float]:
    """The ``heads/...`` scalars of the lineage's last snapshot: raw and confident counts of every counted
    event kind (runs.lineage.EVENT_KINDS) and of the churn, and the uncertainty."""
    raw, confident = event_counts(lineage, -1)
    metrics: dict[str, float] = {"heads/circuit_size": len(stats.circuit.heads)}
    for kind in EVENT_KINDS.values():
        if kind.counted_as:
            metrics[f"heads/{kind.counted_as}"] = raw[kind.name]
            metrics[f"heads/confident_{kind.counted_as}"] = confident[kind.name]
    return metrics | {
        "heads/churn": sum(raw[kind.name] for kind in CHURN_KINDS),
        "heads/confident_churn": sum(confident[kind.name] for kind in CHURN_KINDS),
        "heads/null_churn": stats.null_churn,
        "heads/kept_from_base": len(lineage.kept_from_base()),
        "heads/stability": stats.stability,
        "heads/faithfulness": math.nan if stats.faithfulness is None else stats.faithfulness,
        "heads/faithfulness_low": math.nan if stats.faithfulness_interval is None else stats.faithfulness_interval[0],
        "heads/faithfulness_high": math.nan if stats.faithfulness_interval is None else stats.faithfulness_interval[1],
        "heads/snapshot_seconds": seconds,
        "heads/failed": 0,
    }


class SnapshotRecorder:
    """Everything the main process does with a scored snapshot.

    Args:
        config: the tracker's settings (confidence level, max lag).
        store: the run store, already started or resumed.
        lineage: the lineage so far (empty, or restored with the store).
        dashboards: the live dashboards to feed.
        series: the kept logged series so far, as (step, values), e.g. from a resumed trainer state.
    """

    def __init__(
        self,
        config: TrackerConfig,
        store: RunStore,
        lineage: HeadLineage,
        dashboards: Sequence[Dashboard],
        series: Sequence[tuple[int, dict[str, float]]] = (),
    ) -> None:
        self.config = config
        self.store = store
        self.lineage = lineage
        self.dashboards = list(dashboards)
        self.series = list(series)

    def log(self, step: int, values: dict[str, float]) -> None:
        """Keep one log call's kept series, in memory and in the store (later, if the store cannot be written now)."""
        self.series.append((step, values))
        waiting = bool(self.store.backlog.get("metrics.jsonl"))
        try:
            self.store.append("metrics.jsonl", [{"step": step, **values}])
        except OSError as error:
            if not waiting:
                print(f"sparks: step {step}: could not write metrics.jsonl ({error}); the logged values wait "
                      f"in memory until the run store can be written", flush=True)

    def record(self, step: int, stats: SnapshotStats, seconds: float, pictures: bool = True) -> None:
        """Add the snapshot to the lineage, the store and the dashboards (with ``pictures`` or without), and say what changed."""
        windows = self._windows(step)
        reward = next((windows[key] for key in REWARD_KEYS if key in windows), None)
        importance = stats.importance.numpy()
        events = self.lineage.update(step, importance, stats.circuit.heads, reward, stats.replicates.numpy())
        metrics = snapshot_metrics(self.lineage, stats, seconds)
        if reward is not None:
            metrics["heads/reward_window"] = reward
        membership = stats.membership
        try:
            self.store.commit(
                self.lineage,
                self.lineage.events,
                {"seconds": seconds, "pairs": int(round(stats.pair_weight)), "circuit": [list(head) for head in stats.circuit.heads],
                 "windows": windows, "stability": stats.stability, "null_churn": stats.null_churn,
                 "faithfulness": plain_number(stats.faithfulness),
                 "faithfulness_interval": None if stats.faithfulness_interval is None else [
                     plain_number(value) for value in stats.faithfulness_interval],
                 "replicates": int(stats.replicates.shape[0]),
                 "membership": membership.tolist()},
                {"mean": stats.mean, "mean_abs": stats.mean_abs, "importance": stats.importance,
                 "importance_low": stats.importance_interval[0], "importance_high": stats.importance_interval[1],
                 "membership": membership, "ranking": stats.ranking},
                stats.circuit,
                self.summary(),
            )
        except Exception as error:
            self.lineage = self.lineage.until(step - 1)
            if self.config.strict:
                raise
            self.fail(step, f"could not write the run store ({first_line(error)}); this snapshot is not in the lineage")
            return
        self._flush()
        report = SnapshotReport(
            step=step, importance=importance, membership=membership.numpy(), circuit=list(stats.circuit.heads),
            events=events, metrics=metrics, lineage=self.lineage, reward=reward, pictures=pictures,
        )
        for dashboard in self.dashboards:
            self._safely(step, functools.partial(dashboard.snapshot, report))
        print(f"sparks: step {step}: {metrics['heads/circuit_size']} heads in the circuit "
              f"(stability {stats.stability:.2f}, faithfulness {metrics['heads/faithfulness']:.2f} "
              f"[{metrics['heads/faithfulness_low']:.2f}, {metrics['heads/faithfulness_high']:.2f}]); "
              f"confident/raw births {metrics['heads/confident_births']}/{metrics['heads/births']}, "
              f"prunings {metrics['heads/confident_prunings']}/{metrics['heads/prunings']} "
              f"against a null churn of {stats.null_churn:.1f}; "
              f"emergent {metrics['heads/confident_emergent']}/{metrics['heads/emergent']}; "
              f"scored in {seconds:.2f} s", flush=True)

    def _windows(self, step: int) -> dict[str, float]:
        """Per kept series, its mean over the logs since the previous snapshot, up to ``step``."""
        previous = self.lineage.steps[-1] if len(self.lineage) else -1
        values: dict[str, list[float]] = {}
        for logged_step, logged in self.series:
            if previous < logged_step <= step:
                for name, value in logged.items():
                    values.setdefault(name, []).append(value)
        return {name: float(np.mean(items)) for name, items in values.items()}

    def summary(self) -> dict[str, Any]:
        """Run-level figures: counts so far, confident ones beside raw ones, and the reward alignment."""
        lineage = self.lineage
        if not len(lineage):
            return {"heads/snapshots": 0}
        confident = [event_counts(lineage, index)[1] for index in range(len(lineage))]
        confident_churn = [sum(counts[kind.name] for kind in CHURN_KINDS) for counts in confident]
        confident_emergent = [counts["emerge"] for counts in confident]
        summary: dict[str, Any] = {
            "heads/snapshots": len(lineage),
            "heads/base_circuit_size": len(lineage.base),
            "heads/ever_emerged": len(frozenset().union(*(s.heads for s in lineage.snapshots)) - lineage.base),
            "heads/raw_churn_total": int(lineage.churn().sum()),
            "heads/confident_churn_total": int(sum(confident_churn)),
            "heads/confident_emergent_final": confident_emergent[-1],
            "heads/confidence_level": lineage.confidence_level,
        }
        reward_key = next((key for key in REWARD_KEYS if any(key in logged for _, logged in self.series)), None)
        if reward_key is None or len(lineage) < 2:
            return summary
        # The emergent count trends; its change from snapshot to snapshot suits a null without trends.
        emergent_change = [0] + np.diff(confident_emergent).tolist()
        series = {"confident_churn": confident_churn, "confident_emergent_change": emergent_change}
        alignment = reward_alignment([snapshot.reward for snapshot in lineage.snapshots], series, self.config.max_lag)
        return {**summary, "alignment/reward_key": reward_key, **alignment_summary(alignment)}

    def fail(self, step: int, error: str) -> None:
        """Record a failed snapshot in the store and the dashboards, and say so on the console."""
        reason = error.strip().splitlines()[-1]
        print(f"sparks: step {step}: the head snapshot failed: {reason}", flush=True)
        try:
            self.store.append("failures.jsonl", [{"step": step, "error": reason, "traceback": error}])
        except OSError as store_error:
            print(f"sparks: step {step}: could not write failures.jsonl ({store_error}); the failure waits in "
                  f"memory until the run store can be written", flush=True)
        for dashboard in self.dashboards:
            self._safely(step, functools.partial(dashboard.failure, step, reason), record=False)

    def finish(self) -> None:
        """Write the final summary and close the dashboards."""
        summary = self.summary()
        try:
            self.store.save_summary(summary)
        except OSError as error:
            print(f"sparks: could not write summary.json ({error}); it keeps the summary of the last snapshot", flush=True)
        self._flush()
        step = self.lineage.steps[-1] if len(self.lineage) else 0
        for dashboard in self.dashboards:
            self._safely(step, functools.partial(dashboard.summary, summary), record=False)
            self._safely(step, dashboard.close, record=False)

    def _flush(self) -> None:
        """Write what earlier failed writes left waiting, if the store can be written again."""
        for name in list(self.store.backlog):
            try:
                self.store.append(name, [])
            except OSError:
                return

    def _safely(self, step: int, call: Callable[[], None], record: bool = True) -> None:
        """Run one dashboard call; a dashboard that fails is logged (and recorded), the run store already holds the data.

        With ``strict`` a recorded failure is raised instead, for the callback to record and stop on.
        """
        try:
            call()
        except Exception:
            error = traceback.format_exc()
            logger.error("sparks: a dashboard failed at step %d:\n%s", step, error)
            if record and self.config.strict:
                raise
            if record:
                self.fail(step, error)
