import numpy as np
import pytest

from sparks.runs.survival import kaplan_meier


def test_textbook_leukemia_6mp_group():
    # Freireich et al. 1963, 6-MP arm (Kleinbaum & Klein, "Survival Analysis", ch. 2); False = censored
    weeks = [6, 6, 6, 6, 7, 9, 10, 10, 11, 13, 16, 17, 19, 20, 22, 23, 25, 32, 32, 34, 35]
    died = [1, 1, 1, 0, 1, 0, 1, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0]
    times, survival = kaplan_meier(weeks, [bool(d) for d in died])
    curve = dict(zip(times.tolist(), survival.tolist()))
    assert times.tolist() == [0, 6, 7, 9, 10, 11, 13, 16, 17, 19, 20, 22, 23, 25, 32, 34, 35]
    expected = {0: 1.0, 6: 18 / 21, 7: 18 / 21 * 16 / 17, 10: 18 / 21 * 16 / 17 * 14 / 15}
    expected[13] = expected[10] * 11 / 12
    expected[16] = expected[13] * 10 / 11
    expected[22] = expected[16] * 6 / 7
    expected[23] = expected[22] * 5 / 6
    for t, value in expected.items():
        assert curve[t] == pytest.approx(value)
    # the published table, to three places
    assert [round(curve[t], 3) for t in (6, 7, 10, 13, 16, 22, 23)] == [0.857, 0.807, 0.753, 0.690, 0.627, 0.538, 0.448]
    assert curve[9] == curve[7] and curve[35] == curve[23]  # censorings leave S flat


def test_a_life_censored_at_a_death_time_is_still_at_risk():
    times, survival = kaplan_meier([1, 2, 3, 3, 3, 5, 6, 8], [1, 0, 1, 1, 0, 1, 0, 1])
    assert times.tolist() == [0, 1, 2, 3, 5, 6, 8]
    assert survival == pytest.approx([1, 7 / 8, 7 / 8, 7 / 12, 7 / 18, 7 / 18, 0])


def test_empty_and_malformed_input():
    times, survival = kaplan_meier([], [])
    assert times.tolist() == [0] and survival.tolist() == [1.0]
    with pytest.raises(ValueError):
        kaplan_meier([1, 2], [True])
    with pytest.raises(ValueError):
        kaplan_meier([-1], [True])


def test_order_of_lives_does_not_matter():
    shuffled = kaplan_meier([3, 1, 2, 2], [1, 0, 1, 1])
    ordered = kaplan_meier([1, 2, 2, 3], [0, 1, 1, 1])
    assert np.array_equal(shuffled[0], ordered[0]) and np.array_equal(shuffled[1], ordered[1])
    assert ordered[1] == pytest.approx([1, 1, 1 / 3, 0])
