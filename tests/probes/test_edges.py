import pytest
import torch

import sparks.probes.scoring
from sparks.probes.attribution import node_scores
from sparks.probes.edges import EdgeGraph, edge_scores
from sparks.probes.forward import target_logits
from sparks.probes.ig import CHUNK_SIZES
from sparks.probes.metrics import get_metric
from sparks.probes.pairs import Pair
from sparks.probes.sites import resolve
from tests.probes.tiny_models import ARCHS, lora, random_pairs, tiny_model

pytestmark = pytest.mark.usefixtures("on_device")  # every device present (conftest.DEVICES)


def _identity_error(result):
    return ((result.edges.sum(2) - result.nodes).abs().max() / result.nodes.abs().max()).item()


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_edges_of_a_node_sum_to_its_node_score(arch, float64_norms):
    result = edge_scores(tiny_model(arch, layers=3), random_pairs(batch=3), "kl", steps=4, chunk_size=3)
    error = _identity_error(result)
    print(f"identity relative error {arch}: {error:.2e}")
    assert error <= 1e-10
    assert result.nodes.abs().min() > 0


@pytest.mark.parametrize("metric", ["kl", "logit_diff"])
def test_identity_with_transformers_float32_norms(metric):
    """transformers' RMSNorm computes in float32 even in a float64 model: still well within 1e-4."""
    result = edge_scores(tiny_model("qwen2", layers=3), random_pairs(), metric, steps=3)
    error = _identity_error(result)
    print(f"identity relative error, stock norms, {metric}: {error:.2e}")
    assert error <= 1e-4


def test_identity_through_lora_projections(float64_norms):
    model = lora(tiny_model("qwen3"), init_b_zero=False)
    assert _identity_error(edge_scores(model, random_pairs(), "logit_diff", steps=2)) <= 1e-10


def test_head_node_scores_match_attribution():
    model, batch = tiny_model("llama", layers=3), random_pairs()
    result = edge_scores(model, batch, "kl", steps=4)
    graph = result.graph
    heads = torch.stack(
        [result.nodes[:, graph.head_index(layer, 0) : graph.head_index(layer, 0) + 4] for layer in range(3)], dim=1
    )
    torch.testing.assert_close(heads, node_scores(model, batch, "kl", steps=4), rtol=1e-10, atol=1e-12)


def test_input_node_is_complete(float64_norms):
    """The embedding is a cut of the whole graph: with many steps its score is L(corrupted) - L(clean)."""
    model, batch = tiny_model(layers=2), random_pairs()
    sites = resolve(model)
    with torch.no_grad():
        clean = target_logits(sites, batch.attention_mask, batch.target_positions, input_ids=batch.clean_ids)
        corrupted = target_logits(sites, batch.attention_mask, batch.target_positions, input_ids=batch.corrupted_ids)
    total = get_metric("kl")(corrupted, clean, None, None)
    result = edge_scores(model, batch, "kl", steps=200, chunk_size=100)
    torch.testing.assert_close(result.nodes[:, 0], total, rtol=2e-2, atol=0)


def test_edge_scores_are_chunk_and_batch_invariant():
    model, batch = tiny_model(), random_pairs(batch=3)
    whole = edge_scores(model, batch, steps=4).edges
    torch.testing.assert_close(edge_scores(model, batch, steps=4, chunk_size=1).edges, whole, rtol=1e-9, atol=1e-12)
    from sparks.probes.pairs import PairBatch

    first = PairBatch(*(None if t is None else t[:1] for t in (
        batch.clean_ids, batch.corrupted_ids, batch.attention_mask, batch.target_positions,
        batch.clean_answer_ids, batch.corrupted_answer_ids)))
    torch.testing.assert_close(edge_scores(model, first, steps=4).edges[0], whole[0], rtol=1e-9, atol=1e-12)


def test_graph_layout():
    graph = EdgeGraph.build(num_layers=2, num_heads=4, num_kv_heads=2)
    assert graph.upstream[:3] == ("input", "a0.h0", "a0.h1") and graph.upstream[5] == "m0"
    assert len(graph.upstream) == 1 + 2 * 5 and len(graph.downstream) == 2 * 9 + 1
    assert graph.downstream[4:9] == ("a0.g0<k>", "a0.g1<k>", "a0.g0<v>", "a0.g1<v>", "m0")
    down = {name: j for j, name in enumerate(graph.downstream)}
    up = {name: i for i, name in enumerate(graph.upstream)}
    assert graph.feeds[down["a1.g1<k>"]] == (up["a1.h2"], up["a1.h3"])
    assert graph.valid[up["input"]].all()
    assert graph.valid[up["a0.h2"], down["m0"]] and not graph.valid[up["a0.h2"], down["a0.h0<q>"]]
    assert graph.valid[up["m0"], down["a1.h0<q>"]] and not graph.valid[up["m0"], down["m0"]]
    assert not graph.valid[up["a1.h0"], down["a1.g0<v>"]] and graph.valid[up["m1"], down["logits"]]


def test_invalid_edges_are_zero():
    result = edge_scores(tiny_model(), random_pairs(), steps=2)
    assert torch.equal(result.edges[:, ~result.graph.valid], torch.zeros_like(result.edges[:, ~result.graph.valid]))
    assert (result.edges[:, result.graph.valid] != 0).float().mean() > 0.9


def test_the_scoring_entry_point_runs_each_levels_default_points_per_pass(monkeypatch):
    """The tracker and `sparks score` call score_pairs: it must run the path bench/probe_cost.py measures."""
    chunks = {}
    for name, real in (("edge_scores", sparks.probes.scoring.edge_scores), ("node_scores", sparks.probes.scoring.node_scores)):
        def spy(*args, _name=name, _real=real, **kwargs):
            chunks[_name] = args[5]
            return _real(*args, **kwargs)
        monkeypatch.setattr(sparks.probes.scoring, name, spy)
    pairs = [Pair("", "", [1, 2, 3, 4], [1, 5, 3, 4], [3])]
    model = tiny_model(layers=1)
    for level in ("node", "edge"):
        sparks.probes.scoring.score_pairs(model, pairs, level=level, steps=3, progress=False)
    assert chunks == {"node_scores": CHUNK_SIZES["node"], "edge_scores": CHUNK_SIZES["edge"]} == {
        "node_scores": None, "edge_scores": 1}
    sparks.probes.scoring.score_pairs(model, pairs, level="edge", steps=3, chunk_size=3, progress=False)
    assert chunks["edge_scores"] == 3
