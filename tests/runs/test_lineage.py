import json
import re

import numpy as np
import pytest

from sparks.runs.lineage import Cohort, HeadLineage

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
    assert events[3] == {"step": 100, "layer": 0, "head": 1, "event": "prune", "score": 101.0, "reward": 0.25,
                         "confidence": None, "confident": None}
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
        circuit = {(int(layer), int(head)) for layer, head in np.argwhere(rng.random((3, 4)) < 0.3)}
        replicates = rng.random((16, 3, 4)) < 0.4
        run.append((index * 50, scores, circuit, None if index == 0 else float(rng.random()), replicates))
    return run


def test_resume_from_a_json_state_continues_identically():
    run = _random_run(np.random.default_rng(0), 12)
    whole = HeadLineage(confidence_level=0.25)
    for snapshot in run:
        whole.update(*snapshot)
    first = HeadLineage(confidence_level=0.25)
    for snapshot in run[:6]:
        first.update(*snapshot)
    resumed = HeadLineage.from_state_dict(json.loads(json.dumps(first.state_dict())))
    for snapshot in run[6:]:
        resumed.update(*snapshot)
    assert resumed.events == whole.events and len(whole.events) > 12
    assert any(event["confident"] for event in whole.events) and not all(event["confident"] for event in whole.events)
    assert resumed.lifespans() == whole.lifespans()
    assert resumed.state_dict() == whole.state_dict()
    assert resumed.cohorts() == whole.cohorts()
    assert np.array_equal(resumed.importance_effect(), whole.importance_effect())
    assert all(np.array_equal(a, b) for a, b in zip(resumed.survival(), whole.survival()))
    assert all(np.array_equal(a.replicates, b.replicates) for a, b in zip(resumed.snapshots, whole.snapshots))


def test_state_version_is_checked():
    state = _three_snapshots().state_dict()
    assert state["version"] == 3
    with pytest.raises(ValueError):
        HeadLineage.from_state_dict({**state, "version": 1})


def test_a_version_2_state_with_its_confidence_level_called_level_reads_the_same():
    lineage = HeadLineage(confidence_level=0.25)
    for snapshot in _random_run(np.random.default_rng(2), 4):
        lineage.update(*snapshot)
    state = json.loads(json.dumps(lineage.state_dict()))
    old = {"version": 2, "level": state.pop("confidence_level"), "snapshots": state["snapshots"]}
    read = HeadLineage.from_state_dict(old)
    assert read.confidence_level == 0.25 and read.events == lineage.events and read.state_dict() == lineage.state_dict()
    with pytest.raises(ValueError, match=r"^level: must be a number in \(0, 1\], got 2$"):
        HeadLineage.from_state_dict({**old, "level": 2})


def _replicates(*circuits_per_replicate: set) -> np.ndarray:
    """[B, 2, 3] membership from one head set per replicate."""
    members = np.zeros((len(circuits_per_replicate), 2, 3), dtype=bool)
    for index, heads in enumerate(circuits_per_replicate):
        for head in heads:
            members[(index, *head)] = True
    return members


def test_event_confidence_is_the_share_of_replicates_in_which_it_happens():
    lineage = HeadLineage(confidence_level=0.75)
    # base {00, 01}; replicates: 01 is in 2 of 4 base replicates
    lineage.update(0, _scores(0), {(0, 0), (0, 1)}, None, _replicates({(0, 0), (0, 1)}, {(0, 0)}, {(0, 0), (0, 1)}, {(0, 0)}))
    # step 100: 10 born (in 3 of 4 replicates, out of all earlier ones), 01 pruned (out of every replicate now)
    events = lineage.update(100, _scores(100), {(0, 0), (1, 0)}, 0.5,
                            _replicates({(0, 0), (1, 0)}, {(0, 0), (1, 0)}, {(0, 0), (1, 0)}, {(0, 0)}))
    confidence = {(e["event"], e["layer"], e["head"]): (e["confidence"], e["confident"]) for e in events}
    assert confidence == {
        ("prune", 0, 1): (0.5, False),  # only the 2 replicates that held it at the base can lose it
        ("birth", 1, 0): (0.75, True),
        ("emerge", 1, 0): (0.75, True),
    }
    assert [e["confidence"] for e in lineage.events[:2]] == [1.0, 0.5]  # base heads: membership of the base replicates
    assert lineage.confident(lineage.births(), -1, "birth") == {(1, 0)}
    assert lineage.confident(lineage.prunings(), -1, "prune") == set()
    # step 200: 10 stays in the reported circuit, drops from replicate 0: no event, but its emergence is now 2/4
    lineage.update(200, _scores(200), {(0, 0), (1, 0)}, 0.6,
                   _replicates({(0, 0)}, {(0, 0), (1, 0)}, {(0, 0), (1, 0)}, {(0, 0)}))
    assert lineage.confidence(-1, "emerge")[1, 0] == 0.5
    assert lineage.confident(lineage.emergent(), -1, "emerge") == set()


def test_replicates_must_match_the_scores_and_each_other():
    lineage = HeadLineage()
    lineage.update(0, _scores(0), {(0, 0)}, None, np.zeros((4, 2, 3), dtype=bool))
    with pytest.raises(ValueError):
        lineage.update(10, _scores(10), {(0, 0)}, None, np.zeros((5, 2, 3), dtype=bool))
    with pytest.raises(ValueError):
        lineage.update(10, _scores(10), {(0, 0)}, None, np.zeros((4, 3, 2), dtype=bool))
    with pytest.raises(ValueError):
        lineage.update(10, _scores(10), {(0, 0)}, None, None)
    assert len(lineage) == 1


@pytest.mark.parametrize("damage, message", [
    (lambda snapshots: snapshots[0].update(replicates=None), "snapshots[1].replicates: 16, where the first snapshot has none"),
    (lambda snapshots: snapshots[1].update(replicates=snapshots[1]["replicates"][:3]), "snapshots[1].replicates: 3, where the first snapshot has 16"),
    (lambda snapshots: snapshots[2].update(replicates=[]), "snapshots[2].replicates: must be a non-empty list of hex strings or null"),
])
def test_a_state_whose_snapshots_disagree_on_replicates_is_refused_naming_the_snapshot(damage, message):
    """Every snapshot has the same number of replicate circuits, or none has: events compare replicate b across them."""
    lineage = HeadLineage(confidence_level=0.25)
    for snapshot in _random_run(np.random.default_rng(1), 3):
        lineage.update(*snapshot)
    state = json.loads(json.dumps(lineage.state_dict()))
    damage(state["snapshots"])
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        HeadLineage.from_state_dict(state)
