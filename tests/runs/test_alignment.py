import json
import math
import warnings

import numpy as np
import pytest
from scipy import stats

from sparks.runs.alignment import (
    MIN_LAG_PAIRS,
    MIN_PAIRS,
    LagCorrelation,
    alignment_summary,
    lagged_correlation,
    null_orders,
    reward_alignment,
)

SCIPY = {"pearson": stats.pearsonr, "spearman": stats.spearmanr}


def _pairs(x: np.ndarray, y: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """x[t], y[t + lag] over the t where both exist and are finite: the pairs one lag scores."""
    a, b = (x[: len(x) - lag], y[lag:]) if lag >= 0 else (x[-lag:], y[: len(y) + lag])
    finite = np.isfinite(a) & np.isfinite(b)
    return a[finite], b[finite]


def _lagging_run(lag: int, count: int = 14) -> tuple[list[float | None], np.ndarray]:
    """Window rewards per snapshot (None at the base) and a churn of 6 + 2 x the reward change `lag` snapshots earlier."""
    rng = np.random.default_rng(1)
    level = rng.integers(0, 5, size=count).astype(float)
    windows: list[float | None] = [None, *level[1:].tolist()]
    churn = rng.integers(0, 10, size=count).astype(float)
    for t in range(2 + lag, count):  # the change at snapshot s is level[s] - level[s - 1], s >= 2
        churn[t] = 6 + 2 * (level[t - lag] - level[t - lag - 1])
    return windows, churn


def test_lag_search_finds_churn_following_reward_by_two_snapshots_with_a_small_corrected_p():
    windows, churn = _lagging_run(lag=2)
    result = reward_alignment(windows, {"churn": churn}, max_lag=3)["churn"]
    for method in ("pearson", "spearman"):
        best = result[method]
        assert not best.insufficient and best.lag == 2 and best.r == pytest.approx(1.0)
        # 14 snapshots: 13 changes, the first missing (no base window), 2 lost to the lag
        assert best.n == 14 - 1 - 1 - 2 and best.draws == 999
        # corrected for the 7 lags searched; a perfect relation is still re-found by the ~1 % of draws
        # that only shift within the searched lags and reverse points the pairs do not use
        assert best.p <= 0.02


def test_a_noisy_relation_over_16_points_is_found_at_its_lag_with_scipys_r_and_p_below_005():
    rng = np.random.default_rng(4)
    x = rng.standard_normal(16)
    y = np.empty(16)
    y[1:] = 0.8 * x[:-1] + 0.3 * rng.standard_normal(15)  # y follows x by one snapshot
    y[0] = rng.standard_normal()
    for method in ("pearson", "spearman"):
        best = lagged_correlation(x, y, max_lag=3, method=method)
        assert best.lag == 1 and best.n == 15 and best.p < 0.05
        assert best.r == pytest.approx(SCIPY[method](*_pairs(x, y, 1)).statistic)
    assert lagged_correlation(x, rng.standard_normal(16), max_lag=3).p > 0.05  # and an unrelated y is not


def test_a_series_leading_the_reward_gives_a_negative_lag():
    change = np.array([1.0, -2.0, 0.5, 3.0, -1.0, 2.0, 0.0, -3.0, 1.5, -0.5, 2.5, -1.5, 1.0])
    leading = np.append(-change[1:], 7.0)  # y[t] = -x[t + 1]
    best = lagged_correlation(change, leading, max_lag=2)
    assert best.lag == -1 and best.r == pytest.approx(-1.0) and best.n == len(change) - 1 and best.p < 0.05


def test_nan_pairs_drop_out_and_r_is_scipys_on_the_remaining_pairs():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal(18), rng.standard_normal(18)
    y[2:] += 2 * x[:-2]
    x[[3, 9]] = np.nan
    y[[5, 14]] = np.nan
    for method in ("pearson", "spearman"):
        best = lagged_correlation(x, y, max_lag=3, method=method)
        a, b = _pairs(x, y, best.lag)
        assert best.lag == 2 and best.n == len(a) == 16 - 3  # t = 3 (both), 9 (x) and 12 (y[14]) drop out
        assert best.r == pytest.approx(SCIPY[method](a, b).statistic)


def test_p_is_the_share_of_null_draws_reaching_the_best_abs_r_over_all_lags():
    """A brute-force count with scipy over the very draws null_orders gives, lag search included."""
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal(12), rng.standard_normal(12)
    y[1:] += 0.7 * x[:-1]
    x[4] = np.nan
    for method in ("pearson", "spearman"):
        best = lagged_correlation(x, y, max_lag=3, method=method, permutations=300, seed=5)

        def best_abs_r(series: np.ndarray, method: str = method) -> float:
            return max(abs(SCIPY[method](*_pairs(x, series, lag)).statistic) for lag in range(-3, 4))

        null = np.array([best_abs_r(y[order]) for order in null_orders(len(y), 300, 5)])
        observed = best_abs_r(y)
        assert observed == pytest.approx(abs(best.r))
        assert best.draws == 300
        assert best.p == pytest.approx((1 + np.sum(null >= observed - 1e-12)) / 301)


def test_false_positive_rate_is_nominal_for_independent_series_and_the_uncorrected_lag_search_is_not():
    """300 independent pairs of 12-20 points, half white noise, half both AR(1) with phi = 0.5.

    Corrected p <= 0.05 must happen at most 0.05 + 2.5 binomial standard errors of 300 draws
    (0.05 + 2.5 * sqrt(0.05 * 0.95 / 300) = 0.082); the old per-lag p of the best lag (scipy's p,
    not corrected for the 7 lags) rejects far more often (about 30-45 %).
    """
    rng = np.random.default_rng(2024)
    corrected, uncorrected = [], []
    for trial in range(300):
        length, phi = int(rng.integers(12, 21)), (0.0 if trial < 150 else 0.5)
        noise = rng.standard_normal((2, length + 30))
        for t in range(1, length + 30):
            noise[:, t] += phi * noise[:, t - 1]
        x, y = noise[:, 30:]
        method = ("pearson", "spearman")[trial % 2]
        corrected.append(lagged_correlation(x, y, max_lag=3, method=method, permutations=199, seed=trial).p)
        uncorrected.append(min(SCIPY[method](*_pairs(x, y, lag)).pvalue for lag in range(-3, 4)))
    margin = 0.05 + 2.5 * math.sqrt(0.05 * 0.95 / 300)
    corrected, uncorrected = np.array(corrected), np.array(uncorrected)
    assert np.mean(corrected <= 0.05) <= margin
    assert np.mean(corrected[150:] <= 0.05) <= 0.05 + 2.5 * math.sqrt(0.05 * 0.95 / 150)  # the autocorrelated half
    assert np.mean(uncorrected <= 0.05) > 2 * margin


def test_below_min_pairs_the_result_is_insufficient_and_the_summary_is_strict_json():
    """11 snapshots (the old demo's 200 steps every 20) give 9 reward changes: too few; 12 give 10: enough."""
    rng = np.random.default_rng(6)
    windows = [None, *rng.standard_normal(10).tolist()]  # the base has no reward window
    churn = rng.standard_normal(11)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        short = reward_alignment(windows, {"churn": churn, "emergent": [0, *range(10)]})
        enough = reward_alignment([*windows, 0.5], {"churn": [*churn, 1.0]})
    for by_method in short.values():
        for best in by_method.values():
            assert best.insufficient and best.lag is None and math.isnan(best.r) and math.isnan(best.p) and best.n == 9
    for best in enough["churn"].values():
        assert not best.insufficient and best.n >= MIN_LAG_PAIRS and math.isfinite(best.r) and 0 < best.p <= 1
    summary = alignment_summary(short)
    assert summary["alignment/churn/pearson/r"] is None and summary["alignment/churn/spearman/p"] is None
    assert summary["alignment/emergent/pearson/lag"] is None
    assert summary["alignment/emergent/pearson/insufficient"] is True
    json.dumps(summary, allow_nan=False)


def test_short_empty_or_constant_series_are_insufficient_without_raising_or_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        three = lagged_correlation([1.0, 2.0, 3.0], [3.0, 5.0, 4.0], max_lag=1)  # the old demo's n = 3
        flat = lagged_correlation(np.arange(20.0), np.full(20, 2.0), max_lag=3, method="spearman")
        flat_x = lagged_correlation(np.full(20, 1.0), np.arange(20.0), max_lag=3)
        empty = reward_alignment([], {"churn": []})
        base_only = reward_alignment([None], {"churn": [0]})
    for best, pairs in ((three, 3), (flat, 20), (flat_x, 20)):  # enough pairs, but nothing varies on one side
        assert best.insufficient and best.lag is None and math.isnan(best.r) and math.isnan(best.p) and best.n == pairs
    assert empty["churn"]["pearson"].insufficient and empty["churn"]["pearson"].n == 0
    assert base_only["churn"]["spearman"].insufficient


def test_same_seed_same_p_and_the_seed_is_what_varies_it():
    windows, churn = _lagging_run(lag=1, count=16)
    churn = churn + np.random.default_rng(7).normal(0, 3, size=len(churn))  # a weaker relation: p is not at its floor
    first = reward_alignment(windows, {"churn": churn}, seed=3)
    again = reward_alignment(windows, {"churn": churn}, seed=3)
    other = reward_alignment(windows, {"churn": churn}, seed=4)
    assert first == again
    assert first["churn"]["pearson"].p != other["churn"]["pearson"].p
    assert first["churn"]["pearson"].r == other["churn"]["pearson"].r


def test_null_orders_are_seeded_permutations_that_keep_all_but_3_neighbour_pairs_and_are_many():
    orders = null_orders(10, 2000, seed=0)
    assert np.array_equal(orders, null_orders(10, 2000, seed=0))
    assert all(sorted(order) == list(range(10)) for order in orders)
    for order in orders:
        kept = {frozenset(pair) for pair in zip(order[:-1], order[1:])} & {frozenset((i, i + 1)) for i in range(9)}
        assert len(kept) >= 9 - 3
    assert len({tuple(order) for order in orders}) > 500  # p is not floored at 1 / (2 * 10) as with shifts alone


def test_alignment_summary_flattens_every_series_and_method():
    nan = LagCorrelation(None, math.nan, math.nan, 4, insufficient=True)
    found = LagCorrelation(2, 0.9, 0.01, 12, insufficient=False, draws=999)
    summary = alignment_summary({"churn": {"pearson": found, "spearman": nan}})
    assert summary == {
        "alignment/churn/pearson/r": 0.9, "alignment/churn/pearson/p": 0.01, "alignment/churn/pearson/lag": 2,
        "alignment/churn/pearson/n": 12, "alignment/churn/pearson/insufficient": False,
        "alignment/churn/spearman/r": None, "alignment/churn/spearman/p": None, "alignment/churn/spearman/lag": None,
        "alignment/churn/spearman/n": 4, "alignment/churn/spearman/insufficient": True,
    }


def test_malformed_input_raises():
    with pytest.raises(ValueError):
        reward_alignment([None, 1.0], {"churn": [1, 2, 3]})
    with pytest.raises(ValueError):
        lagged_correlation([1.0, 2.0], [1.0], max_lag=1)
    with pytest.raises(ValueError):
        lagged_correlation([1.0, 2.0], [1.0, 2.0], max_lag=1, method="kendall")
    with pytest.raises(ValueError):
        lagged_correlation([1.0, 2.0], [1.0, 2.0], max_lag=-1)
    with pytest.raises(ValueError):
        lagged_correlation([1.0, 2.0], [1.0, 2.0], max_lag=1, permutations=0)
    assert MIN_LAG_PAIRS <= MIN_PAIRS - 3  # the default max_lag 3 keeps every lag at the minimum
