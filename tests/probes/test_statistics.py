"""Snapshot statistics: Poisson bootstrap weights, summable sums, importance intervals, membership,
stability and null churn, checked against cases with a known answer."""

from __future__ import annotations

import itertools
import re
from dataclasses import replace

import numpy as np
import pytest
import torch

from sparks.probes.bootstrap import poisson_weights
from sparks.probes.circuit import select_edges
from sparks.probes.edges import EdgeGraph
from sparks.probes.statistics import NonFiniteScores, ScoreSums, Selection, SnapshotStats

GRAPH = EdgeGraph.build(num_layers=2, num_heads=2, num_kv_heads=1)


HALF = Selection(mass=0.5)


def _stats(heads: torch.Tensor, selection: Selection = HALF, replicates: int = 400, seed: int = 0) -> SnapshotStats:
    count = heads.shape[0]
    sums = ScoreSums.of({"heads": heads}, GRAPH, selection, torch.ones(count), poisson_weights(range(count), replicates, seed))
    return SnapshotStats.of(sums, GRAPH, selection)


def test_a_pairs_weights_depend_on_the_seed_and_its_index_alone():
    whole = poisson_weights(range(10), 50, seed=3)
    assert torch.equal(poisson_weights([7, 2], 50, seed=3), whole[:, [7, 2]])
    assert not torch.equal(poisson_weights(range(10), 50, seed=4), whole)
    many = poisson_weights(range(2000), 100, seed=0)
    assert many.mean().item() == pytest.approx(1.0, abs=0.01)
    assert many.var().item() == pytest.approx(1.0, abs=0.02)
    assert (many == many.round()).all() and (many >= 0).all()


def test_sums_over_shards_add_up_to_the_sums_over_all_pairs():
    torch.manual_seed(0)
    heads = torch.randn(13, 2, 2)
    edges = torch.randn(13, *GRAPH.valid.shape) * GRAPH.valid
    nodes = torch.randn(13, len(GRAPH.upstream))
    selection = Selection(level="edge", top_n=5, tau=0.0)
    scores = {"heads": heads, "edges": edges, "nodes": nodes}
    whole = ScoreSums.of(scores, GRAPH, selection, torch.ones(13), poisson_weights(range(13), 8, 1))
    parts = [range(0, 7), range(7, 13)]
    shards = [ScoreSums.of({name: value[list(part)] for name, value in scores.items()}, GRAPH, selection,
                           torch.ones(len(part)), poisson_weights(part, 8, 1)) for part in parts]
    shapes = ScoreSums.shapes(GRAPH, "edge", 8)
    total = ScoreSums.unflatten(shards[0].flatten() + shards[1].flatten(), shapes)
    torch.testing.assert_close(total.flatten(), whole.flatten())
    torch.testing.assert_close(whole.heads, GRAPH.per_head(nodes.double()).sum(0))
    with pytest.raises(ValueError):
        ScoreSums.unflatten(whole.flatten()[:-1], shapes)


def test_aggregation_mean_of_abs_against_abs_of_mean():
    # head (0, 0) flips sign from pair to pair; head (1, 1) is small and steady
    heads = torch.zeros(4, 2, 2)
    heads[:, 0, 0] = torch.tensor([1.0, -1.0, 1.0, -1.0])
    heads[:, 1, 1] = 0.25
    mean_abs = _stats(heads, Selection(aggregation="mean_abs", mass=0.5))
    abs_mean = _stats(heads, Selection(aggregation="abs_mean", mass=0.5))
    assert mean_abs.ranking[0, 0] == 1.0 and abs_mean.ranking[0, 0] == 0.0
    assert mean_abs.circuit.heads == [(0, 0)] and abs_mean.circuit.heads == [(1, 1)]
    torch.testing.assert_close(mean_abs.mean, abs_mean.mean)
    assert mean_abs.importance.sum().item() == pytest.approx(1.0)


def test_importance_interval_matches_the_normal_interval_of_a_known_mean():
    # two heads sharing a constant total per pair: importance of (0, 0) is mean(x) / 4 exactly
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.uniform(0.0, 4.0, size=400))
    heads = torch.zeros(400, 2, 2, dtype=torch.float64)
    heads[:, 0, 0], heads[:, 0, 1] = x, 4.0 - x
    stats = _stats(heads, replicates=2000)
    half_width = 1.96 * x.std().item() / np.sqrt(len(x)) / 4.0
    centre = x.mean().item() / 4.0
    assert stats.importance[0, 0].item() == pytest.approx(centre)
    low, high = stats.importance_interval[:, 0, 0].tolist()
    assert low == pytest.approx(centre - half_width, abs=0.15 * half_width)
    assert high == pytest.approx(centre + half_width, abs=0.15 * half_width)


def test_membership_stability_and_null_churn_of_a_clear_and_a_coin_flip_head():
    # (0, 0) dominates; (1, 1) holds the scores of (1, 0) shuffled over the pairs: equal means in the
    # sample, so each replicate's mass rule takes whichever of the two its weights favour
    rng = np.random.default_rng(1)
    x = rng.exponential(1.0, 200)
    heads = torch.zeros(200, 2, 2, dtype=torch.float64)
    heads[:, 0, 0] = 10.0
    heads[:, 1, 0] = torch.from_numpy(x)
    heads[:, 1, 1] = torch.from_numpy(rng.permutation(x))
    stats = _stats(heads, Selection(mass=10.5 / 12.0), replicates=1000)
    membership = stats.membership
    assert membership[0, 0] == 1.0 and membership[0, 1] == 0.0
    assert membership[1, 0].item() + membership[1, 1].item() == pytest.approx(1.0)
    assert 0.4 < membership[1, 0].item() < 0.6
    # two replicates disagree on both marginal heads whenever they pick different ones
    p = membership[1, 0].item()
    assert stats.null_churn == pytest.approx(2 * 2 * p * (1 - p) * 1000 / 999, rel=1e-9)
    reported = set(stats.circuit.heads)
    picks_same = membership[1, 0].item() if (1, 0) in reported else membership[1, 1].item()
    assert stats.stability == pytest.approx(picks_same + (1 - picks_same) / 3)


def test_null_churn_is_the_mean_symmetric_difference_over_replicate_pairs():
    torch.manual_seed(2)
    stats = _stats(torch.rand(30, 2, 2) ** 3, Selection(mass=0.6), replicates=40)
    sets = [set(map(tuple, np.argwhere(replicate.numpy()))) for replicate in stats.replicates]
    brute = np.mean([len(a ^ b) for a, b in itertools.permutations(sets, 2)])
    assert stats.null_churn == pytest.approx(brute)
    assert stats.null_churn > 0
    jaccard = [len(s & set(stats.circuit.heads)) / len(s | set(stats.circuit.heads)) for s in sets]
    assert stats.stability == pytest.approx(np.mean(jaccard))


def test_edge_level_replicates_select_edge_circuits():
    torch.manual_seed(3)
    edges = torch.rand(20, *GRAPH.valid.shape) * GRAPH.valid
    selection = Selection(level="edge", top_n=6, tau=0.0)
    sums = ScoreSums.of({"edges": edges, "nodes": edges.sum(-1)}, GRAPH, selection, torch.ones(20),
                        poisson_weights(range(20), 30, 0))
    stats = SnapshotStats.of(sums, GRAPH, selection)
    assert stats.ranking.shape == GRAPH.valid.shape and stats.replicates.shape == (30, 2, 2)
    weights = poisson_weights(range(20), 30, 0)
    for replicate in (0, 17):
        ranking = torch.einsum("n,nud->ud", weights[replicate], edges.double()) / weights[replicate].sum()
        heads = select_edges(ranking, GRAPH, 6, 0.0).heads
        assert set(map(tuple, np.argwhere(stats.replicates[replicate].numpy()))) == set(heads)
    assert 0 < stats.stability <= 1
    assert stats.importance.sum().item() == pytest.approx(1.0)
    assert (stats.importance_interval[0] <= stats.importance_interval[1]).all()


def test_no_pairs_is_an_error():
    sums = ScoreSums.zeros(ScoreSums.shapes(GRAPH, "node", 4))
    with pytest.raises(ValueError, match="no probe pair"):
        SnapshotStats.of(sums, GRAPH, Selection())


def _finite_sums(replicates: int = 4) -> ScoreSums:
    """Node-level sums over 3 pairs, by hand: 4 heads, every replicate weighting the pairs alike."""
    heads = torch.tensor([[1.0, -2.0], [0.5, 6.0]], dtype=torch.float64)
    return ScoreSums(count=torch.tensor([3.0], dtype=torch.float64), heads=heads, heads_abs=heads.abs(),
                     ranked=heads.abs(), replicate_count=torch.full((replicates,), 3.0, dtype=torch.float64),
                     replicate_ranked=heads.abs().expand(replicates, 2, 2).clone())


@pytest.mark.parametrize(
    "field, index, value, message",
    [
        ("heads", (0, 1), float("nan"), "1 of 24"),
        ("ranked", (1, 0), float("inf"), "1 of 24"),
        ("replicate_ranked", (2, 1, 1), float("-inf"), "1 of 24"),
        ("replicate_ranked", (slice(None), 0, 0), float("nan"), "4 of 24"),
    ],
)
@pytest.mark.hostile
def test_non_finite_head_sums_are_refused(field, index, value, message):
    sums = _finite_sums()
    assert SnapshotStats.of(sums, GRAPH, Selection()).circuit.heads == [(1, 1)]
    broken = getattr(sums, field).clone()
    broken[index] = value
    expected = f"non-finite head scores: {message} summed values are NaN or inf (does the model produce NaN/inf logits?)"
    with pytest.raises(NonFiniteScores, match=f"^{re.escape(expected)}$"):
        SnapshotStats.of(replace(sums, **{field: broken}), GRAPH, Selection())


def test_unscored_heads_are_left_out_of_the_finiteness_check():
    """Exact patching of chosen heads leaves the others NaN: those NaNs are no error, a scored head's NaN is."""
    sums = _finite_sums()
    unscored = torch.tensor([[False, True], [False, False]])
    nan = {name: getattr(sums, name).masked_fill(unscored, float("nan")) for name in ("heads", "heads_abs", "ranked", "replicate_ranked")}
    scored = ~unscored
    stats = SnapshotStats.of(replace(sums, **nan), GRAPH, Selection(), scored)
    assert stats.importance[0, 1].isnan() and stats.circuit.heads == [(1, 1)]
    scored[0, 1] = True
    with pytest.raises(NonFiniteScores, match=r"^non-finite head scores: 6 of 24 summed values"):
        SnapshotStats.of(replace(sums, **nan), GRAPH, Selection(), scored)
    with pytest.raises(NonFiniteScores, match=r"^non-finite head scores: 6 of 24 summed values"):
        SnapshotStats.of(replace(sums, **nan), GRAPH, Selection())


@pytest.mark.hostile
def test_non_finite_circuit_effects_are_refused():
    stats = SnapshotStats.of(_finite_sums(), GRAPH, Selection())
    effects = torch.tensor([[1.0, 4.0]] * 5, dtype=torch.float64)
    assert stats.with_faithfulness(effects).faithfulness == pytest.approx(0.75)
    effects[3, 0] = float("nan")
    expected = "non-finite circuit effects: 1 of 10 summed values are NaN or inf (does the model produce NaN/inf logits?)"
    with pytest.raises(NonFiniteScores, match=f"^{re.escape(expected)}$"):
        stats.with_faithfulness(effects)
    assert issubclass(NonFiniteScores, ValueError)
