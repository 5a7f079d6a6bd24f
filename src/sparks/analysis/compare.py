"""Runs side by side: each run store read into per-snapshot series, and the summary that says which run
behaves cumulatively and which dynamically (``sparks compare``; the report is drawn by analysis.compare_report).

Every number comes from the run stores (runs.store): the lineage (reported circuits, their
bootstrap replicate circuits and confidences), the snapshot records (null churn, faithfulness and its
interval), the logged reward and the summary's reward alignment. Intervals come from the stored
bootstrap: replicate b of every snapshot resamples the same probe pairs, so the circuits of
replicate b across the snapshots form a lineage of their own (``replicate_lineages``), the run as
another draw of probe problems would have shown it; a run-level figure's 95% interval is the 2.5% and
97.5% points of that figure over the replicate lineages. The churn ratio is a ratio of per-snapshot
sums, and its interval resamples the snapshots instead (``churn_ratio_interval``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from sparks.callbacks.config import LINEAGE_SETTINGS
from sparks.probes.pairs import Pair, load_pairs
from sparks.probes.statistics import INTERVAL
from sparks.runs.alignment import REWARD_KEYS
from sparks.runs.lineage import CHURN_KINDS, HeadLineage, event_counts
from sparks.runs.store import SETTINGS_SINCE, RunStore, RunStoreError, first_line, plain_number, snapshot_dir

CHURN_DRAWS = 2000
"""Snapshot resamples behind the churn ratio's interval (seeded, so the report is reproducible)."""
CUMULATIVE_SHARE = 0.5
"""A run is cumulative when the whole interval of the share of born heads alive at the end lies above this, dynamic when below."""


@dataclass(frozen=True)
class Run:
    """One run store as read: its name, settings, head layout, probe pairs, lineage, snapshot records, logs and summary."""

    name: str
    root: Path
    config: dict[str, Any]
    layout: dict[str, Any]
    pairs: list[Pair]
    lineage: HeadLineage
    records: list[dict[str, Any]]
    metrics: list[dict[str, Any]]
    summary: dict[str, Any]
    ablations: dict[str, dict[str, Any]] = field(default_factory=dict)


def store_of(path: Path) -> RunStore:
    """The run store of an output directory (holding ``sparks/``) or of the ``sparks/`` directory itself."""
    if not path.is_dir():
        raise RunStoreError(f"{path}: no such directory")
    if (path / "sparks" / "run.json").is_file():
        return RunStore(path)
    if path.name == "sparks" and (path / "run.json").is_file():
        return RunStore(path.parent)
    raise RunStoreError(f"{path}: not a sparks run (no sparks/run.json): give a training output directory or its sparks/ directory")


def load_run(path: str | Path, name: str | None = None) -> Run:
    """Read one run store, checked first (RunStore.check); a directory that is not a run, a run without
    snapshots, or a store whose lineage names a snapshot it lacks or holds damaged raises one line saying so."""
    path = Path(path)
    store = store_of(path)
    run = store.run()
    if not store.holds_lineage():
        raise RunStoreError(f"{path}: the run has no snapshots yet (no lineage.json): nothing to compare")
    store.check()
    lineage = store.lineage()
    try:
        records = [json.loads((snapshot_dir(store.root, step) / "snapshot.json").read_text()) for step in lineage.steps]
        summary_path = store.root / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise RunStoreError(f"{store.root}: unreadable ({first_line(error)})") from None
    if not len(lineage):
        raise RunStoreError(f"{path}: the run has no snapshots yet: nothing to compare")
    pairs = load_pairs(store.root / "pairs.jsonl")
    return Run(name or store.root.parent.name, store.root, run["config"], run.get("model", {}), pairs, lineage, records,
               store.read("metrics.jsonl"), summary, read_ablations(store.root.parent))


def read_ablations(output_dir: Path) -> dict[str, dict[str, Any]]:
    """The ``sparks ablate`` results stored with a run (``ablations/NAME/ablation.json``), by NAME."""
    results = {}
    for path in sorted((output_dir / "ablations").glob("*/ablation.json")):
        try:
            results[path.parent.name] = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise RunStoreError(f"{path}: unreadable ({first_line(error)})") from None
    return results


def load_runs(paths: Sequence[str | Path]) -> tuple[list[Run], list[str]]:
    """Read the runs, named by their output directories (with the parent directory's name, or the whole path, where
    two share one), and one warning per run left out because its store is damaged or unreadable (load_run).

    A path that is not a run is refused; of several runs, the readable ones are compared, so one damaged
    run does not hide the others (RunStoreError, naming each, when fewer than two can be read).
    """
    dirs = [Path(path) for path in paths]
    roots = [store_of(path).root.parent.resolve() for path in dirs]
    twice = sorted({str(root) for root in roots if roots.count(root) > 1})
    if twice:
        raise RunStoreError(f"the same run is given twice: {', '.join(twice)}")
    for naming in (lambda root: root.name, lambda root: f"{root.parent.name}/{root.name}", str):
        labels = [naming(root) for root in roots]
        if len(set(labels)) == len(labels):
            break
    if len(dirs) == 1:
        return [load_run(dirs[0], labels[0])], []
    runs, warnings = [], []
    for path, label in zip(dirs, labels):
        try:
            runs.append(load_run(path, label))
        except RunStoreError as error:
            warnings.append(f"left out {label}: {first_line(error)}")
    if len(runs) < 2:
        raise RunStoreError("fewer than two runs can be read: " + "; ".join(warnings))
    return runs, warnings


def comparable(runs: Sequence[Run]) -> tuple[list[Run], list[str]]:
    """The runs scored on the first run's probe pairs and head layout, and one warning per run left out or setting that differs.

    Runs on other probe pairs or another head layout measure other circuits, so they are left out;
    when that leaves one run of several, there is nothing to compare and the reason is raised.
    """
    reference, kept, warnings = runs[0], [runs[0]], []
    for run in runs[1:]:
        if run.layout != reference.layout:
            warnings.append(f"left out {run.name}: its head layout {run.layout} differs from {reference.name}'s {reference.layout}")
        elif run.pairs != reference.pairs:
            warnings.append(f"left out {run.name}: its {len(run.pairs)} probe pairs differ from the {len(reference.pairs)} "
                            f"{reference.name} was scored on")
        else:
            kept.append(run)
            ours, theirs = SETTINGS_SINCE | run.config, SETTINGS_SINCE | reference.config
            changed = [name for name in LINEAGE_SETTINGS if name != "pairs" and ours.get(name) != theirs.get(name)]
            if changed:
                warnings.append(f"{run.name} was scored with other settings than {reference.name}: "
                                + ", ".join(f"{name} {ours.get(name)!r} vs {theirs.get(name)!r}" for name in changed))
    if len(runs) > 1 and len(kept) == 1:
        raise RunStoreError("no two runs are comparable: " + "; ".join(warnings))
    return kept, warnings


# -- per-snapshot series ---------------------------------------------------------------------------


def emergent_counts(lineage: HeadLineage) -> tuple[np.ndarray, np.ndarray]:
    """Per snapshot, the emergent heads (in the circuit, not in the base circuit) and the confident ones among them."""
    counts = [event_counts(lineage, index, ["emerge"]) for index in range(len(lineage))]
    return np.array([raw["emerge"] for raw, _ in counts]), np.array([confident["emerge"] for _, confident in counts])


def confident_events(lineage: HeadLineage, kind: str) -> np.ndarray:
    """Per snapshot, the heads event ``kind`` (runs.lineage.EVENT_KINDS) confidently holds for: the confident
    births ("birth") or prunings ("prune") of the reported circuit (0 at the base)."""
    return np.array([event_counts(lineage, index, [kind])[1][kind] for index in range(len(lineage))])


def null_churn(records: Sequence[dict[str, Any]]) -> np.ndarray:
    """Per snapshot, the births + prunings two bootstrap replicates of it differ by (what the probe draw alone changes)."""
    return np.array([record["null_churn"] for record in records], dtype=float)


def faithfulness(records: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per snapshot, the circuit's faithfulness and its 95% bootstrap interval (NaN where it was not measured)."""
    value = [math.nan if record.get("faithfulness") is None else record["faithfulness"] for record in records]
    bounds = [record.get("faithfulness_interval") or [None, None] for record in records]
    low, high = ([math.nan if bound[side] is None else bound[side] for bound in bounds] for side in (0, 1))
    return np.array(value, dtype=float), np.array(low, dtype=float), np.array(high, dtype=float)


def reward_curve(metrics: Sequence[dict[str, Any]]) -> tuple[str | None, np.ndarray, np.ndarray]:
    """The logged reward (GRPO's reward, else SFT's token accuracy, as the tracker chooses): its name, steps and values."""
    key = next((key for key in REWARD_KEYS if any(key in record for record in metrics)), None)
    rows = [(record["step"], record[key]) for record in metrics if key is not None and key in record]
    steps, values = zip(*rows) if rows else ((), ())
    return key, np.array(steps, dtype=float), np.array(values, dtype=float)


def cohort_sizes(lineage: HeadLineage) -> dict[int, np.ndarray]:
    """Per cohort (heads first in the circuit at one snapshot, keyed by its step), how many of its heads are in the circuit at every snapshot."""
    sizes = {}
    for start, cohort in lineage.cohorts().items():
        counts = np.zeros(len(lineage))
        counts[lineage.steps.index(start):] = np.round(np.array(cohort.fraction) * len(cohort.heads))
        sizes[start] = counts
    return sizes


def _jaccard(a: frozenset, b: frozenset) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def jaccard(lineage: HeadLineage) -> tuple[np.ndarray, np.ndarray]:
    """Per snapshot, the Jaccard similarity of its circuit to the previous snapshot's (NaN at the base) and to the base circuit."""
    heads = [snapshot.heads for snapshot in lineage.snapshots]
    previous = [math.nan] + [_jaccard(before, after) for before, after in zip(heads, heads[1:])]
    return np.array(previous), np.array([_jaccard(lineage.base, now) for now in heads])


def replicate_lineages(lineage: HeadLineage) -> list[HeadLineage]:
    """Per bootstrap replicate b, the lineage of replicate b's circuits (none when the run kept no replicates)."""
    if lineage.snapshots[0].replicates is None:
        return []
    lineages = []
    for replicate in range(lineage.snapshots[0].replicates.shape[0]):
        other = HeadLineage(lineage.confidence_level)
        for snapshot in lineage.snapshots:
            assert snapshot.replicates is not None, "a lineage keeps replicates at every snapshot or at none"
            other.update(snapshot.step, np.zeros(lineage.shape), map(tuple, np.argwhere(snapshot.replicates[replicate])))
        lineages.append(other)
    return lineages


def survival_band(lineage: HeadLineage, replicates: Sequence[HeadLineage]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Kaplan-Meier S(t) of the lives born after the base, on a grid of every replicate's durations too, with its 95% band
    over the replicate lineages (the band is S itself without replicates)."""
    curves = [lineage.survival(), *(other.survival() for other in replicates)]
    grid = np.unique(np.concatenate([times for times, _ in curves]))
    values = np.stack([survival[np.searchsorted(times, grid, side="right") - 1] for times, survival in curves])
    low, high = np.quantile(values[1:] if replicates else values, INTERVAL, axis=0)
    return grid, values[0], low, high


# -- run-level figures -----------------------------------------------------------------------------


def share_alive(lineage: HeadLineage) -> float:
    """Of the heads born after the base (a birth at some later snapshot), the share in the final circuit (NaN when none was born)."""
    born = {head for index in range(1, len(lineage)) for head in lineage.births(index)}
    return len(born & lineage.snapshots[-1].heads) / len(born) if born else math.nan


def median_lifespan(lineage: HeadLineage) -> float:
    """The Kaplan-Meier median life in steps of the heads born after the base: inf when S stays above 1/2, NaN when none was born."""
    if not any(birth != lineage.steps[0] for lives in lineage.lifespans().values() for birth, _ in lives):
        return math.nan
    times, survival = lineage.survival()
    below = np.flatnonzero(survival <= 0.5)
    return float(times[below[0]]) if below.size else math.inf


def final_emergent(lineage: HeadLineage) -> float:
    """Heads in the final circuit that the base circuit did not hold."""
    return float(len(lineage.emergent(-1)))


def churn_ratio(confident_churn: np.ndarray, null: np.ndarray) -> float:
    """Confident births + prunings per snapshot over the null churn per snapshot, both summed over the snapshots after the base."""
    total = float(np.sum(null[1:]))
    return float(np.sum(confident_churn[1:])) / total if total > 0 else math.nan


def churn_ratio_interval(confident_churn: np.ndarray, null: np.ndarray, draws: int = CHURN_DRAWS, seed: int = 0) -> tuple[float, float]:
    """The churn ratio's 95% interval from resampling the snapshots after the base with replacement (NaN with fewer than two)."""
    churn, null = np.asarray(confident_churn[1:], dtype=float), np.asarray(null[1:], dtype=float)
    if len(churn) < 2:
        return math.nan, math.nan
    picks = np.random.default_rng(seed).integers(len(churn), size=(draws, len(churn)))
    totals = null[picks].sum(1)
    ratios = np.where(totals > 0, churn[picks].sum(1) / np.where(totals > 0, totals, 1.0), np.nan)
    return _interval(ratios)


def _interval(values: ArrayLike) -> tuple[float, float]:
    """2.5% and 97.5% points of the finite-or-infinite values (NaN ones left out; values that exist, never interpolated)."""
    array = np.asarray(values, dtype=float)
    array = array[~np.isnan(array)]
    if not array.size:
        return math.nan, math.nan
    low, high = np.quantile(array, INTERVAL, method="inverted_cdf")
    return float(low), float(high)


@dataclass(frozen=True)
class Estimate:
    """A run-level figure, its 95% interval and where the interval comes from."""

    value: float
    low: float
    high: float
    source: str


def replicate_estimate(measure: Callable[[HeadLineage], float], lineage: HeadLineage, replicates: Sequence[HeadLineage]) -> Estimate:
    """``measure`` of the reported lineage, with the 95% interval of ``measure`` over the replicate lineages."""
    low, high = _interval([measure(other) for other in replicates]) if replicates else (math.nan, math.nan)
    return Estimate(measure(lineage), low, high, f"{len(replicates)} bootstrap replicate lineages")


@dataclass(frozen=True)
class RunSummary:
    """The summary table's row of one run."""

    name: str
    snapshots: int
    share_alive: Estimate
    churn_ratio: Estimate
    median_lifespan: Estimate
    final_emergent: Estimate
    mode: str


def behaviour(share: Estimate) -> str:
    """"cumulative" when the share of born heads alive at the end lies above CUMULATIVE_SHARE across its interval,
    "dynamic" when below, else "undecided" (also without births or replicates)."""
    if math.isnan(share.low) or math.isnan(share.high):
        return "undecided"
    return "cumulative" if share.low > CUMULATIVE_SHARE else "dynamic" if share.high < CUMULATIVE_SHARE else "undecided"


def summarise(run: Run, replicates: Sequence[HeadLineage]) -> RunSummary:
    """The run's summary row: share of born heads alive at the end, confident churn over null churn, median lifespan, final emergent count."""
    churn = np.sum([confident_events(run.lineage, kind.name) for kind in CHURN_KINDS], axis=0)
    null = null_churn(run.records)
    share = replicate_estimate(share_alive, run.lineage, replicates)
    ratio = Estimate(churn_ratio(churn, null), *churn_ratio_interval(churn, null),
                     f"{CHURN_DRAWS} resamples of the {len(run.lineage) - 1} snapshots after the base")
    return RunSummary(run.name, len(run.lineage), share, ratio, replicate_estimate(median_lifespan, run.lineage, replicates),
                      replicate_estimate(final_emergent, run.lineage, replicates), behaviour(share))


# -- reward alignment ------------------------------------------------------------------------------


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of p-values for testing them together (NaN ones are not tests and stay NaN)."""
    p = np.asarray(p_values, dtype=float)
    tested = np.flatnonzero(~np.isnan(p))
    adjusted = np.full(len(p), math.nan)
    order = tested[np.argsort(p[tested], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()


def alignment_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The summary's reward alignment, one row per series and method: r, lag, n, the lag-search corrected p, and that p
    Holm-adjusted over the run's tests."""
    rows: list[dict[str, Any]] = []
    for key in summary:
        parts = key.split("/")
        if len(parts) == 4 and parts[0] == "alignment" and parts[3] == "r":
            prefix = "/".join(parts[:3])
            rows.append({"series": parts[1], "method": parts[2],
                         **{field: summary.get(f"{prefix}/{field}") for field in ("r", "p", "lag", "n", "insufficient")}})
    adjusted = holm([math.nan if row["p"] is None else row["p"] for row in rows])
    return [{**row, "p_holm": plain_number(value)} for row, value in zip(rows, adjusted)]
