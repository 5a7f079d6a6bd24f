import math
import warnings

import numpy as np
import pytest

from callbacks.alignment import lagged_correlation, reward_alignment, windowed_reward


def test_windowed_reward_means_each_window_closed_by_a_snapshot():
    rewards = [(10, 1.0), (50, 3.0), (100, 2.0), (150, 4.0), (250, 9.0)]
    windows = windowed_reward(rewards, [0, 100, 200])
    # step 0: nothing logged yet; (0, 100]: 1, 3, 2; (100, 200]: 4; step 250 is after the last snapshot
    assert np.isnan(windows[0]) and windows[1:].tolist() == [2.0, 4.0]
    assert windowed_reward([(0, 5.0), (0, 7.0)], [0, 10]).tolist()[0] == 6.0


def _lagging_run(lag: int, count: int = 14) -> tuple[list, list[int], np.ndarray]:
    """Rewards with one log per snapshot window, and a churn that is 6 + 2 x the reward change `lag` snapshots earlier."""
    rng = np.random.default_rng(1)
    level = rng.integers(0, 5, size=count).astype(float)
    steps = [100 * i for i in range(count)]
    rewards = [(max(step - 50, 0), value) for step, value in zip(steps, level)]
    change = np.diff(level)  # change[t - 1] belongs to snapshot t
    churn = rng.integers(0, 10, size=count).astype(float)
    for t in range(1, count):
        if 1 <= t - lag < count:
            churn[t] = 6 + 2 * change[t - lag - 1]
    return rewards, steps, churn


def test_lag_search_finds_churn_following_reward_by_two_snapshots():
    rewards, steps, churn = _lagging_run(lag=2)
    result = reward_alignment(rewards, steps, {"churn": churn}, max_lag=3)["churn"]
    for method in ("pearson", "spearman"):
        assert result[method].lag == 2
        assert result[method].r == pytest.approx(1.0)
        assert result[method].p < 1e-6
        assert result[method].n == len(steps) - 1 - 2


def test_a_series_leading_the_reward_gives_a_negative_lag():
    change = np.array([1.0, -2.0, 0.5, 3.0, -1.0, 2.0, 0.0, -3.0, 1.5])
    leading = np.append(-change[1:], 7.0)  # y[t] = -x[t + 1]
    best = lagged_correlation(change, leading, max_lag=2)
    assert best.lag == -1 and best.r == pytest.approx(-1.0) and best.n == len(change) - 1


def test_short_or_constant_series_give_nan_without_raising_or_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = reward_alignment([(50, 1.0), (150, 2.0)], [0, 100, 200], {"churn": [0, 3, 1]}, max_lag=2)
        two = lagged_correlation([1.0, 2.0], [3.0, 5.0], max_lag=0)  # two points always give |r| = 1
        flat_y = lagged_correlation([1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 2.0, 2.0], max_lag=1, method="spearman")
        flat_x = lagged_correlation([2.0, 2.0, 2.0, 2.0], [1.0, 2.0, 3.0, 4.0], max_lag=1)
        empty = reward_alignment([], [], {"churn": []})
    # windows [nan, 1, 2] -> one finite reward change, paired with churn 3
    for best in result["churn"].values():
        assert best.lag is None and math.isnan(best.r) and math.isnan(best.p) and best.n == 1
    for best, pairs in ((two, 2), (flat_y, 4), (flat_x, 4)):
        assert best.lag is None and math.isnan(best.r) and best.n == pairs
    assert empty["churn"]["pearson"].lag is None and empty["churn"]["pearson"].n == 0


def test_malformed_input_raises():
    with pytest.raises(ValueError):
        windowed_reward([(10, 1.0)], [100, 0])
    with pytest.raises(ValueError):
        windowed_reward([(10, 1.0)], [0, 0])
    with pytest.raises(ValueError):
        windowed_reward([(20, 1.0), (10, 1.0)], [0, 100])
    with pytest.raises(ValueError):
        windowed_reward([(10, 1.0, 2.0)], [0, 100])
    with pytest.raises(ValueError):
        reward_alignment([(10, 1.0)], [0, 100], {"churn": [1, 2, 3]})
    with pytest.raises(ValueError):
        lagged_correlation([1.0, 2.0], [1.0], max_lag=1)
    with pytest.raises(ValueError):
        lagged_correlation([1.0, 2.0], [1.0, 2.0], max_lag=1, method="kendall")
