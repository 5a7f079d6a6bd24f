"""Survival vs reward: does head churn follow the reward curve, and how many snapshots later?

The paper shows this only qualitatively (docs/method.md, "From the paper"). Here the
change of the windowed reward from one snapshot to the next is correlated (Pearson and Spearman)
with per-snapshot series such as churn (births + prunings) or the emergent-head count, at every lag
in [-max_lag, max_lag]. The statistic is the largest |r| over those lags, and its p-value comes from
a permutation null that repeats the same lag search, so searching lags does not buy significance.
With a dozen snapshots only strong relations come out small; that is the honest answer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from sparks.runs.store import plain_number

REWARD_KEYS = ("reward", "mean_token_accuracy")
"""The series a snapshot's reward window and the alignment use: GRPO's reward, else SFT's token accuracy."""

MIN_PAIRS = 10
"""Usable (finite) pairs at lag 0 below which there is no result (``insufficient``).

Why 10: a 3- or 5-point r is reached by chance almost at will (two points always give |r| = 1).
For independent white-noise series at max_lag 3, the best |r| over the lags exceeds 0.94 one time
in 20 at 8 pairs (its outer lags rest on 5 pairs), 0.86 at 10, 0.79 at 12 and 0.61 at 20; from 10
pairs on, only a strong relation can come out significant, and the outer lags keep 7 pairs. The
null (``null_orders``) then has ~700 distinct draws and a perfect relation gets p ~0.01, where
circular shifts alone could not go below 1 / (2n) = 0.05. The base snapshot has no reward window,
so the first reward change is missing: 10 pairs take 12 snapshots (base + 11 windows), more if a
window is empty.
"""

MIN_LAG_PAIRS = 5
"""A lag is scored only with this many finite pairs and neither side constant: the |r| of fewer
points is so noisy it would win the search by chance (the null would keep p honest, but r would
come from a handful of points)."""

CORRELATIONS = ("pearson", "spearman")
"""The correlations the alignment reports at every lag."""


@dataclass(frozen=True)
class LagCorrelation:
    """The best lag's r, the p-value of the best |r| over all lags, and what it rests on.

    ``n``: pairs at the best lag (at lag 0 when insufficient); ``draws``: null draws the p-value
    used. ``insufficient``: fewer than MIN_PAIRS pairs, or no lag with both sides varying; then
    r and p are NaN and lag is None.
    """

    lag: int | None
    r: float
    p: float
    n: int
    insufficient: bool
    draws: int = 0


def _segments(x: np.ndarray, y: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """x[t] and y[..., t + lag] over the t where both exist (y may carry leading rows)."""
    m = x.shape[-1]
    return (x[: m - lag], y[..., lag:]) if lag >= 0 else (x[-lag:], y[..., : m + lag])


def _row_correlations(a: np.ndarray, b: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
    """r and the pair count of ``a`` against each row of ``b`` over the pairs finite on both sides.

    NaN where a row has fewer than MIN_LAG_PAIRS pairs or a constant side. Spearman ranks each row's
    own finite pairs (ties averaged), so it agrees with scipy's spearmanr on the same pairs.
    """
    a = np.broadcast_to(a, b.shape)
    ok = np.isfinite(a) & np.isfinite(b)
    n = ok.sum(axis=-1)
    a, b = np.where(ok, a, np.nan), np.where(ok, b, np.nan)
    if method == "spearman":
        a = stats.rankdata(a, axis=-1, nan_policy="omit")
        b = stats.rankdata(b, axis=-1, nan_policy="omit")
    usable = n >= MIN_LAG_PAIRS
    for side in (a, b):  # a constant side, tested exactly: rounding can leave its variance at 1e-17, not 0
        highest = np.where(ok, side, -np.inf).max(axis=-1, initial=-np.inf)
        usable &= highest > np.where(ok, side, np.inf).min(axis=-1, initial=np.inf)
    a, b = np.where(ok, a, 0.0), np.where(ok, b, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        da = np.where(ok, a - a.sum(axis=-1, keepdims=True) / n[..., None], 0.0)
        db = np.where(ok, b - b.sum(axis=-1, keepdims=True) / n[..., None], 0.0)
        r = (da * db).sum(axis=-1) / np.sqrt((da * da).sum(axis=-1) * (db * db).sum(axis=-1))
    return np.where(usable, np.clip(r, -1.0, 1.0), np.nan), n


def _lags(max_lag: int, length: int) -> list[int]:
    """The searched lags, smallest |lag| first (ties go to it), within what MIN_LAG_PAIRS allows."""
    reach = min(max_lag, length - MIN_LAG_PAIRS)
    return sorted(range(-reach, reach + 1), key=lambda lag: (abs(lag), lag)) if reach >= 0 else []


def null_orders(length: int, draws: int, seed: int) -> np.ndarray:
    """[draws, length] index arrays, each a rearrangement of a series that keeps its autocorrelation.

    Each draw reverses one stretch of 2 .. length // 2 points of the series read as a circle, then
    reads the circle from a random start, backwards in half the draws. Reversal keeps the
    autocorrelation of a stationary, time-reversible series (Gaussian ones are), and a draw changes
    at most 3 neighbour pairs (the circle's seam and the stretch's two ends), so the null keeps the
    short-range structure that makes two smooth series correlate by chance.

    Why not the usual schemes (figures: ~1000 simulated independent pairs of 10-20 points, max_lag
    3, both series AR(1) with the coefficient given): circular shifts (and reflections) keep all but
    one neighbour pair, but n points have only 2n of them and the 2 * max_lag + 1 shifts within the
    searched lags re-find the observed alignment, so even a perfect relation gets p of about
    (2 * max_lag + 1) / (2n), 0.35 at 10 points; leaving those shifts out gives 9-14 % false
    positives at nominal 5 % for AR(1) 0.5 (the best |r| over a window of lags barely changes from
    one shift to the next, so the few shifts left act as one draw). Block permutations reach small
    p but break a neighbour pair per block: 7-9 % false positives for AR(1) 0.5 and 12-16 % for
    AR(1) 0.8 with 2-point blocks. Here: ~n^3 distinct draws (700 at 10 points), a perfect relation
    gets p ~0.01 at 10 points, and false positives at nominal 5 % are ~2.5 % for white noise, ~4 %
    for AR(1) 0.5 and 6-7.5 % for AR(1) 0.8: the seams leave strongly autocorrelated series a little
    optimistic. Trends (non-stationary series, e.g. a count that only grows) are not covered.
    """
    rng = np.random.default_rng(seed)
    position = np.arange(length)
    start = rng.integers(length, size=(draws, 1))
    stretch = rng.integers(2, max(length // 2, 2) + 1, size=(draws, 1))
    offset = (position - start) % length
    reversed_stretch = np.where(offset < stretch, (start + stretch - 1 - offset) % length, position)
    backwards = rng.random((draws, 1)) < 0.5
    shift = rng.integers(length, size=(draws, 1))
    read = np.where(backwards, (shift - position) % length, (shift + position) % length)
    return np.take_along_axis(reversed_stretch, read, axis=1)


def lagged_correlation(
    x: ArrayLike,
    y: ArrayLike,
    max_lag: int,
    method: str = "pearson",
    *,
    permutations: int = 999,
    seed: int = 0,
) -> LagCorrelation:
    """The lag in [-max_lag, max_lag] with the largest |r| between x[t] and y[t + lag] (lag > 0: y follows x).

    Pairs with a NaN drop out; ties go to the smaller |lag|. p = (1 + #{null >= observed}) /
    (1 + #null), where each null value is the same best |r| over the same lags after rearranging y
    by ``null_orders`` (seeded, so deterministic); it is corrected for the lag search. Fewer than
    MIN_PAIRS finite pairs at lag 0, or no lag with both sides varying, give an insufficient result.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x {x.shape} and y {y.shape} must be equal-length 1-D")
    if max_lag < 0 or method not in CORRELATIONS or permutations < 1:
        raise ValueError(
            f"need max_lag >= 0, a method in {CORRELATIONS} and permutations >= 1, got {max_lag}, {method!r}, {permutations}"
        )
    pairs = int((np.isfinite(x) & np.isfinite(y)).sum())
    lags = _lags(max_lag, len(x))
    observed = [_row_correlations(*_segments(x, y[None], lag), method) for lag in lags]
    r = np.array([float(r[0]) for r, _ in observed])
    if pairs < MIN_PAIRS or np.isnan(r).all():
        return LagCorrelation(None, math.nan, math.nan, pairs, insufficient=True)
    best = int(np.nanargmax(np.abs(r)))  # the first maximum: lags run smallest |lag| first
    shuffled = y[null_orders(len(y), permutations, seed)]
    null = np.stack([np.abs(_row_correlations(*_segments(x, shuffled, lag), method)[0]) for lag in lags], axis=-1)
    usable = ~np.isnan(null).all(axis=-1)  # a draw with no scorable lag has no statistic
    null = np.nanmax(np.where(np.isnan(null), -1.0, null), axis=-1)[usable]
    exceed = int((null >= abs(r[best]) * (1 - 1e-9)).sum())  # a draw equal to the observed one counts
    p = (1 + exceed) / (1 + len(null)) if len(null) else math.nan
    return LagCorrelation(lags[best], float(r[best]), p, int(observed[best][1][0]), insufficient=False, draws=len(null))


def reward_alignment(
    window_rewards: Sequence[float | None],
    series: Mapping[str, Sequence[float | None]],
    max_lag: int = 3,
    *,
    permutations: int = 999,
    seed: int = 0,
) -> dict[str, dict[str, LagCorrelation]]:
    """Per named series (one value per snapshot) and method, the lag-searched correlation with the reward change.

    ``window_rewards[i]`` is the mean reward logged since snapshot i - 1 (None for an empty window
    and at the base). The change at snapshot i >= 1 is window i minus window i - 1, paired with
    ``series[name][i]``, so lag is counted in snapshots and lag > 0 means the series follows the
    reward; None or NaN on either side drops the pair.
    """
    rewards = np.array([math.nan if value is None else value for value in window_rewards], dtype=float)
    for name, values in series.items():
        if len(values) != len(rewards):
            raise ValueError(f"series {name!r} has {len(values)} values for {len(rewards)} snapshots")
    change = np.diff(rewards)
    return {
        name: {
            method: lagged_correlation(
                change, np.array([math.nan if v is None else v for v in values], dtype=float)[1:], max_lag, method,
                permutations=permutations, seed=seed,
            )
            for method in CORRELATIONS
        }
        for name, values in series.items()
    }


def alignment_summary(alignment: Mapping[str, Mapping[str, LagCorrelation]]) -> dict[str, Any]:
    """Flat strict-JSON summary keys ``alignment/{series}/{method}/{r,p,lag,n,insufficient}`` (None for NaN)."""
    summary: dict[str, Any] = {}
    for name, by_method in alignment.items():
        for method, result in by_method.items():
            prefix = f"alignment/{name}/{method}"
            summary.update({
                f"{prefix}/r": plain_number(result.r),
                f"{prefix}/p": plain_number(result.p),
                f"{prefix}/lag": result.lag,
                f"{prefix}/n": result.n,
                f"{prefix}/insufficient": result.insufficient,
            })
    return summary
