import pytest
import torch

from sparks.probes.circuit import Circuit, select_edges, select_heads
from sparks.probes.edges import EdgeGraph, edge_scores
from tests.probes.tiny_models import random_pairs, tiny_model

GRAPH = EdgeGraph.build(num_layers=2, num_heads=4, num_kv_heads=2)
UP = {name: i for i, name in enumerate(GRAPH.upstream)}
DOWN = {name: j for j, name in enumerate(GRAPH.downstream)}


def _scores(edges: dict[tuple[str, str], float]) -> torch.Tensor:
    scores = torch.zeros(GRAPH.valid.shape)
    for (up, down), value in edges.items():
        scores[UP[up], DOWN[down]] = value
    return scores


def test_path_pruning():
    scores = _scores({
        ("input", "a0.h1<q>"): 5.0,
        ("a0.h1", "a1.g1<k>"): -4.0,   # a1.g1<k> feeds a1.h2 and a1.h3
        ("a1.h3", "logits"): 3.0,
        ("a0.h2", "m0"): 9.0,          # a0.h2 is never reached from the input
        ("input", "a1.h0<q>"): 8.0,    # a1.h0 reaches nothing downstream
        ("m1", "logits"): 0.5,         # dropped by top_n
    })
    circuit = select_edges(scores, GRAPH, top_n=5)
    assert circuit.heads == [(0, 1), (1, 3)]
    assert circuit.mlps == []
    assert circuit.edges == [("input", "a0.h1<q>"), ("a0.h1", "a1.g1<k>"), ("a1.h3", "logits")]
    # a relative threshold of 0.7 drops the 3.0 edge and with it the whole path
    assert select_edges(scores, GRAPH, top_n=5, tau=0.7).edges == []


def test_ties_break_by_graph_order_and_invalid_edges_never_compete():
    scores = torch.ones(GRAPH.valid.shape)
    scores[~GRAPH.valid] = 100.0
    circuit = select_edges(scores, GRAPH, top_n=1)
    assert circuit.edges == []  # the first valid edge is input -> a0.h0<q>, which reaches no logits
    circuit = select_edges(scores, GRAPH, top_n=int(GRAPH.valid.sum()))
    assert len(circuit.heads) == 8 and circuit.mlps == [0, 1]
    assert len(circuit.edges) == int(GRAPH.valid.sum())


def test_ranking_uses_mean_absolute_score_over_examples():
    per_example = torch.stack([_scores({("input", "logits"): 1.0, ("m1", "logits"): 2.0}),
                               _scores({("input", "logits"): 1.0, ("m1", "logits"): -2.0})])
    with pytest.raises(ValueError):
        select_edges(per_example, GRAPH, top_n=1, tau=2.0)
    circuit = select_edges(per_example, GRAPH, top_n=2)
    assert circuit.scores[UP["m1"], DOWN["logits"]] == 2.0
    assert circuit.edges == [("input", "logits")]  # m1 is never fed from the input


def test_select_heads():
    scores = torch.tensor([[0.1, -4.0, 0.0], [2.0, 2.0, 1.9]])
    assert select_heads(scores, top_k=3) == [(0, 1), (1, 0), (1, 1)]
    assert select_heads(scores, mass=0.4) == [(0, 1)]
    assert select_heads(scores, mass=0.5) == [(0, 1), (1, 0)]
    assert select_heads(scores, mass=0.61) == [(0, 1), (1, 0), (1, 1)]
    assert select_heads(scores, mass=1.0) == [(0, 1), (1, 0), (1, 1), (1, 2), (0, 0)]
    with pytest.raises(ValueError, match="exactly one"):
        select_heads(scores)


@pytest.mark.usefixtures("on_device")
def test_save_load_round_trip(tmp_path):
    model, batch = tiny_model(), random_pairs()
    result = edge_scores(model, batch, steps=2)
    circuit = select_edges(result.edges, result.graph, top_n=40, tau=0.05)
    assert circuit.heads and circuit.edges
    circuit.save(tmp_path / "c")
    loaded = Circuit.load(tmp_path / "c")
    assert loaded.heads == circuit.heads and loaded.mlps == circuit.mlps and loaded.edges == circuit.edges
    assert loaded.upstream == circuit.upstream and loaded.downstream == circuit.downstream
    assert torch.equal(loaded.scores, circuit.scores)
    again = select_edges(result.edges, result.graph, top_n=40, tau=0.05)
    assert again.edges == circuit.edges and again.heads == circuit.heads
