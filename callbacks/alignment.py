"""Survival vs reward: does head churn follow the reward curve, and how many snapshots later?

The paper shows this only qualitatively (DESIGN.md section 2, "Survival vs reward"). Here the
reward the trainer logged is averaged over the window each snapshot closes, its snapshot-to-snapshot
change is correlated (Pearson and Spearman) with per-snapshot series such as churn (births +
prunings) or the emergent-head count, and the lag with the strongest correlation is reported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

MIN_POINTS = 3  # fewer pairs give no meaningful correlation (two points always give |r| = 1)
METHODS = {"pearson": stats.pearsonr, "spearman": stats.spearmanr}


@dataclass(frozen=True)
class LagCorrelation:
    """The best lag (None when no lag had enough points), its r and p-value, and the pairs it used."""

    lag: int | None
    r: float
    p: float
    n: int


def _increasing(steps: Sequence[int], name: str, strict: bool) -> np.ndarray:
    steps = np.asarray(steps)
    if steps.ndim != 1:
        raise ValueError(f"{name} must be 1-D")
    gaps = np.diff(steps)
    if (gaps < 0).any() or (strict and (gaps == 0).any()):
        raise ValueError(f"{name} must be {'strictly ' if strict else ''}increasing")
    return steps


def windowed_reward(rewards: Sequence[tuple[int, float]], snapshot_steps: Sequence[int]) -> np.ndarray:
    """Mean logged reward over (previous snapshot's step, this snapshot's step] per snapshot.

    The first snapshot's window holds every reward logged up to its step; an empty window gives NaN
    and rewards after the last snapshot are left out.
    """
    snapshots = _increasing(snapshot_steps, "snapshot steps", strict=True)
    logged = np.asarray(rewards, dtype=float).reshape(len(rewards), 2)
    steps = _increasing(logged[:, 0], "reward steps", strict=False)
    window = np.searchsorted(snapshots, steps, side="left")  # index of the snapshot closing each window
    return np.array([logged[window == i, 1].mean() if (window == i).any() else np.nan for i in range(len(snapshots))])


def lagged_correlation(x: Sequence[float], y: Sequence[float], max_lag: int, method: str = "pearson") -> LagCorrelation:
    """The lag in [-max_lag, max_lag] with the largest |r| between x[t] and y[t + lag] (lag > 0: y follows x).

    Pairs with a NaN are dropped; lags with fewer than MIN_POINTS pairs or a constant side are
    skipped; ties go to the smaller |lag|. No usable lag gives NaN with n = the usable pairs at lag 0.
    The p-value is the chosen lag's own, not corrected for searching 2 * max_lag + 1 lags.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x {x.shape} and y {y.shape} must be equal-length 1-D")
    if max_lag < 0 or method not in METHODS:
        raise ValueError(f"need max_lag >= 0 and a method in {sorted(METHODS)}, got {max_lag}, {method!r}")
    pairs = int((np.isfinite(x) & np.isfinite(y)).sum())
    best = None
    for lag in sorted(range(-max_lag, max_lag + 1), key=lambda lag: (abs(lag), lag)):
        a, b = (x[: len(x) - lag], y[lag:]) if lag >= 0 else (x[-lag:], y[: len(y) + lag])
        finite = np.isfinite(a) & np.isfinite(b)
        a, b = a[finite], b[finite]
        if len(a) < MIN_POINTS or np.ptp(a) == 0 or np.ptp(b) == 0:
            continue
        result = METHODS[method](a, b)
        if best is None or abs(result.statistic) > abs(best.r):
            best = LagCorrelation(lag, float(result.statistic), float(result.pvalue), len(a))
    return best or LagCorrelation(None, float("nan"), float("nan"), pairs)


def reward_alignment(
    rewards: Sequence[tuple[int, float]],
    snapshot_steps: Sequence[int],
    series: Mapping[str, Sequence[float]],
    max_lag: int = 3,
) -> dict[str, dict[str, LagCorrelation]]:
    """Per named series (one value per snapshot) and method, the best-lag correlation with the reward change.

    The reward change at snapshot i is windowed reward i minus i - 1, paired with ``series[name][i]``
    (i >= 1), so lag is counted in snapshots and lag > 0 means the series follows the reward.
    """
    change = np.diff(windowed_reward(rewards, snapshot_steps))
    for name, values in series.items():
        if len(values) != len(snapshot_steps):
            raise ValueError(f"series {name!r} has {len(values)} values for {len(snapshot_steps)} snapshots")
    return {
        name: {method: lagged_correlation(change, np.asarray(values, dtype=float)[1:], max_lag, method) for method in METHODS}
        for name, values in series.items()
    }
