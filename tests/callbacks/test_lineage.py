import json

import numpy as np
import pytest

from callbacks.lineage import Cohort, HeadLineage, Hysteresis

# 2 layers x 3 heads; base {00, 01, 12} -> {00, 10, 11} -> {00, 01, 10}
STEPS = [0, 100, 200]
CIRCUITS = [{(0, 0), (0, 1), (1, 2)}, {(0, 0), (1, 0), (1, 1)}, {(0, 0), (0, 1), (1, 0)}]
REWARDS = [None, 0.25, 0.5]


def _scores(step: int) -> np.ndarray:
    return np.arange(6, dtype=float).reshape(2, 3) + step


def _three_snapshots() -> HeadLineage:
    lineage = HeadLineage()
    for step, circuit, reward in zip(STEPS, CIRCUITS, REWARDS):
        lineage.update(step, _scores(step), circuit, reward)
    return lineage


def test_births_prunings_emergent_and_kept():
    lineage = _three_snapshots()
    assert [lineage.births(i) for i in range(3)] == [set(), {(1, 0), (1, 1)}, {(0, 1)}]
    assert [lineage.prunings(i) for i in range(3)] == [set(), {(0, 1), (1, 2)}, {(1, 1)}]
    assert [lineage.emergent(i) for i in range(3)] == [set(), {(1, 0), (1, 1)}, {(1, 0)}]
    assert [lineage.kept_from_base(i) for i in range(3)] == [CIRCUITS[0], {(0, 0)}, {(0, 0), (0, 1)}]
    assert lineage.births() == {(0, 1)} and lineage.churn().tolist() == [0, 4, 2]
    assert lineage.base == CIRCUITS[0] and lineage.steps == STEPS


def test_events():
    events = _three_snapshots().events
    summary = [(e["step"], e["event"], (e["layer"], e["head"])) for e in events]
    assert summary == [
        (0, "base", (0, 0)), (0, "base", (0, 1)), (0, "base", (1, 2)),
        (100, "prune", (0, 1)), (100, "prune", (1, 2)),
        (100, "birth", (1, 0)), (100, "birth", (1, 1)),
        (100, "emerge", (1, 0)), (100, "emerge", (1, 1)),
        (200, "prune", (1, 1)), (200, "birth", (0, 1)),  # (0, 1) is back, but it was in the base: no "emerge"
    ]
    assert events[3] == {"step": 100, "layer": 0, "head": 1, "event": "prune", "score": 101.0, "reward": 0.25}
    assert events[0]["reward"] is None and events[-1]["score"] == 201.0


def test_update_returns_the_new_snapshots_events():
    lineage = HeadLineage()
    lineage.update(0, _scores(0), CIRCUITS[0])
    new = lineage.update(100, _scores(100), CIRCUITS[1], 0.25)
    assert new == lineage.events[3:]


def test_lifespans_and_survival():
    lineage = _three_snapshots()
    assert lineage.lifespans() == {
        (0, 0): [(0, None)],
        (0, 1): [(0, 100), (200, None)],
        (1, 0): [(100, None)],
        (1, 1): [(100, 200)],
        (1, 2): [(0, 100)],
    }
    # born in training: 0 (censored, (0,1) reborn at the last snapshot), 100 (censored), 100 (death)
    steps, survival = lineage.survival()
    assert steps.tolist() == [0, 100] and survival.tolist() == [1.0, 0.5]
    # plus the base lives 200 (censored), 100, 100: at 100, 3 deaths among 5 at risk
    steps, survival = lineage.survival(include_base=True)
    assert steps.tolist() == [0, 100, 200] and survival == pytest.approx([1.0, 0.4, 0.4])


def test_cohorts_and_activation_frequency():
    lineage = _three_snapshots()
    assert lineage.cohorts() == {
        0: Cohort([(0, 0), (0, 1), (1, 2)], [0, 100, 200], [1.0, 1 / 3, 2 / 3]),
        100: Cohort([(1, 0), (1, 1)], [100, 200], [1.0, 0.5]),
    }
    assert lineage.activation_frequency() == pytest.approx(np.array([[1, 2 / 3, 0], [2 / 3, 1 / 3, 1 / 3]]))


def test_importance_effect_2x2():
    lineage = HeadLineage()
    lineage.update(0, [[1.0, 1.0], [1.0, 1.0]], [(0, 0)])  # I_pre = 1/4 each
    assert np.isnan(lineage.importance_effect()).all()
    lineage.update(10, [[3.0, 1.0], [0.0, 0.0]], [(0, 0)])  # I = [[3/4, 1/4], [0, 0]]
    lineage.update(20, [[-2.0, 2.0], [0.0, -4.0]], [(0, 0)])  # |.| -> I = [[1/4, 1/4], [0, 1/2]]
    first = np.array([[0.5 / (1 + 1e-6), 0.0], [-0.25 / (0.25 + 1e-6), -0.25 / (0.25 + 1e-6)]])
    second = np.array([[0.0, 0.0], [-0.25 / (0.25 + 1e-6), 0.25 / (0.75 + 1e-6)]])
    assert lineage.importance_effect() == pytest.approx((first + second) / 2, rel=1e-12)


def test_hysteresis_keeps_a_head_that_dips_between_the_thresholds():
    lineage = HeadLineage(Hysteresis(enter_score=3.0, leave_score=2.0))
    tracked = []
    for step, scores in enumerate([[4.0, 2.5], [2.5, 2.5], [-3.5, 1.0], [1.9, 1.0]]):
        lineage.update(step, [scores], set())
        tracked.append(lineage.snapshots[-1].heads)
    # head 0 enters at 4, stays at 2.5 and |-3.5|, leaves at 1.9; head 1 sits at 2.5 but never entered
    assert tracked == [{(0, 0)}, {(0, 0)}, {(0, 0)}, set()]
    assert [e["event"] for e in lineage.events] == ["base", "prune"]


def test_hysteresis_by_rank_on_top_of_the_circuit():
    scores = [[[5.0, 4.0, 3.0, 1.0]], [[5.0, 1.0, 3.0, 4.0]], [[5.0, 3.0, 4.0, 2.0]], [[5.0, 4.0, 3.0, 1.0]]]
    circuits = [{(0, 1)}, {(0, 2)}, set(), set()]
    plain, damped = HeadLineage(), HeadLineage(Hysteresis(leave_rank=2))
    for step, (score, circuit) in enumerate(zip(scores, circuits)):
        plain.update(step, score, circuit)
        damped.update(step, score, circuit)
    assert [s.heads for s in plain.snapshots] == circuits
    # (0, 1) drops to rank 4 at step 1: pruned; (0, 2) is rank 2 at step 2 (stays), rank 3 at step 3 (pruned)
    assert [s.heads for s in damped.snapshots] == [{(0, 1)}, {(0, 2)}, {(0, 2)}, set()]
    assert [s.circuit for s in damped.snapshots] == circuits
    # ties in |score| rank by (layer, head): of the tied 3.0 heads only (1, 0) is rank 1
    tied = HeadLineage(Hysteresis(leave_rank=1, enter_rank=1))
    tied.update(0, [[1.0] * 20, [-3.0] * 20, [3.0] * 20], set())
    assert tied.snapshots[0].heads == {(1, 0)}


def test_hysteresis_rejects_thresholds_the_wrong_way_round():
    with pytest.raises(ValueError):
        Hysteresis(enter_rank=5, leave_rank=3)
    with pytest.raises(ValueError):
        Hysteresis(enter_score=1.0, leave_score=2.0)
    with pytest.raises(ValueError):
        Hysteresis(enter_rank=3)


def test_update_rejects_malformed_snapshots():
    lineage = HeadLineage()
    lineage.update(10, np.zeros((2, 3)), [(1, 2)])
    with pytest.raises(ValueError):
        lineage.update(10, np.zeros((2, 3)), [])  # step not after the last one
    with pytest.raises(ValueError):
        lineage.update(20, np.zeros((3, 3)), [])
    with pytest.raises(ValueError):
        lineage.update(20, np.zeros((2, 3)), [(2, 0)])
    with pytest.raises(ValueError):
        lineage.update(20, np.full((2, 3), np.nan), [])
    assert len(lineage) == 1


def _random_run(rng: np.random.Generator, count: int) -> list[tuple]:
    run = []
    for index in range(count):
        scores = rng.normal(size=(3, 4))
        circuit = {(int(l), int(h)) for l, h in np.argwhere(rng.random((3, 4)) < 0.3)}
        run.append((index * 50, scores, circuit, None if index == 0 else float(rng.random())))
    return run


def test_resume_from_a_json_state_continues_identically():
    run = _random_run(np.random.default_rng(0), 12)
    hysteresis = Hysteresis(leave_rank=4, enter_score=1.5)
    whole = HeadLineage(hysteresis)
    for snapshot in run:
        whole.update(*snapshot)
    first = HeadLineage(hysteresis)
    for snapshot in run[:6]:
        first.update(*snapshot)
    resumed = HeadLineage.from_state_dict(json.loads(json.dumps(first.state_dict())))
    for snapshot in run[6:]:
        resumed.update(*snapshot)
    assert resumed.events == whole.events and len(whole.events) > 12
    assert resumed.lifespans() == whole.lifespans()
    assert resumed.state_dict() == whole.state_dict()
    assert resumed.cohorts() == whole.cohorts()
    assert np.array_equal(resumed.importance_effect(), whole.importance_effect())
    assert all(np.array_equal(a, b) for a, b in zip(resumed.survival(), whole.survival()))
    # hysteresis mattered: the tracked set is not just the circuit
    assert any(s.heads != s.circuit for s in whole.snapshots)


def test_state_version_is_checked():
    state = _three_snapshots().state_dict()
    assert state["version"] == 1
    with pytest.raises(ValueError):
        HeadLineage.from_state_dict({**state, "version": 2})
