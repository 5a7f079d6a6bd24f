"""Tests generated from the architecture table: every row, every check (adding a row adds its tests).

Each family is a tiny random model built from the installed transformers' own config class
(tiny_models.FAMILY_CONFIGS), in float64. References: a central finite difference of the test's own
patching hook (what EAP's gradient at the clean input must equal), exact head and edge patching, the
identity "a node's edge scores sum to its node score", and each pair scored alone.
"""

from __future__ import annotations

import pytest
import torch
from scipy.stats import spearmanr

from sparks.probes.architectures import ARCHITECTURES, DOCS, REFUSED
from sparks.probes.attribution import node_scores
from sparks.probes.edges import edge_scores
from sparks.probes.forward import target_logits
from sparks.probes.metrics import get_metric
from sparks.probes.pairs import PairBatch
from sparks.probes.patching import exact_edge_effects, exact_head_effects
from sparks.probes.sites import resolve
from tests.probes.tiny_models import FAMILY_CONFIGS, family_model, random_pairs

pytestmark = pytest.mark.usefixtures("on_device")  # every device present (conftest.DEVICES)

FAMILIES = sorted(ARCHITECTURES)
EDGE_FAMILIES = [family for family in FAMILIES if ARCHITECTURES[family].edge_refusal is None]
NODE_ONLY = [family for family in FAMILIES if ARCHITECTURES[family].edge_refusal is not None]
DENSE = [family for family in FAMILIES if not ARCHITECTURES[family].routed]
RAGGED_NAN = {"gemma2"}
"""transformers' eager Gemma 2 attention turns fully masked padding rows into NaN in float64 (the mask's
minimum overflows), which then reaches real positions: its float64 checks run on unpadded pairs."""


def _pairs(family: str, **kwargs) -> PairBatch:
    return random_pairs(ragged=family not in RAGGED_NAN, **kwargs)


def _alone(batch: PairBatch, row: int) -> PairBatch:
    """Pair ``row`` of ``batch`` on its own, its padding cut off."""
    pad = int((batch.attention_mask[row] == 0).sum())

    def cut(value):
        return None if value is None else value[row : row + 1]

    return PairBatch(batch.clean_ids[row : row + 1, pad:], batch.corrupted_ids[row : row + 1, pad:],
                     batch.attention_mask[row : row + 1, pad:], cut(batch.target_positions) - pad,
                     cut(batch.clean_answer_ids), cut(batch.corrupted_answer_ids))


def _o_projs(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Each attention layer's output projection, by the path its row declares (a hybrid's other layers have none)."""
    row = ARCHITECTURES[model.config.model_type]
    return [module for name, module in model.named_modules()
            if name.startswith(row.layers + ".") and name.endswith("." + row.o_proj)]


def _gated_metric(model, batch, layer, head, gate):
    """logit_diff with head (layer, head)'s o_proj input moved by gate * (corrupted - clean): the test's own hook.

    ``gate`` is a number or a [B, 1, 1] tensor (one gate per example)."""
    o_proj = _o_projs(model)[layer]
    seen = {}
    record = o_proj.register_forward_pre_hook(lambda module, args: seen.__setitem__("z", args[0]))
    sites = resolve(model)
    with torch.no_grad():
        clean_logits = target_logits(sites, batch.attention_mask, batch.target_positions, input_ids=batch.clean_ids)
        clean = seen["z"]
        target_logits(sites, batch.attention_mask, batch.target_positions, input_ids=batch.corrupted_ids)
        corrupted = seen["z"]
    record.remove()
    width = (o_proj.weight.shape[0] if type(o_proj).__name__ == "Conv1D" else o_proj.in_features) // model.config.num_attention_heads
    delta = torch.zeros_like(clean)
    delta[..., head * width : (head + 1) * width] = (corrupted - clean)[..., head * width : (head + 1) * width]
    patch = o_proj.register_forward_pre_hook(lambda module, args: (args[0] + gate * delta, *args[1:]))
    try:
        logits = target_logits(sites, batch.attention_mask, batch.target_positions, input_ids=batch.clean_ids)
    finally:
        patch.remove()
    return get_metric("logit_diff")(logits, clean_logits, batch.clean_answer_ids, batch.corrupted_answer_ids)


def test_every_row_has_a_tiny_model_and_the_docs_name_it():
    from pathlib import Path

    assert set(FAMILY_CONFIGS) == set(ARCHITECTURES)
    docs = (Path(__file__).resolve().parents[2] / DOCS).read_text()
    for family in [*ARCHITECTURES, *REFUSED]:
        assert f"`{family}`" in docs, f"{DOCS} does not name {family}"


@pytest.mark.parametrize("family", FAMILIES)
def test_node_eap_is_the_derivative_of_patching_a_head(family):
    """EAP's score is d/dg of the metric with the head's output moved by g times its change, at g = 0."""
    model, batch = family_model(family), _pairs(family, batch=2)
    scores = node_scores(model, batch, "logit_diff", method="eap")
    layers = len(_o_projs(model))
    for layer, head in [(0, 1), (layers - 1, 2)]:
        gate = torch.zeros(batch.batch_size, 1, 1, dtype=torch.float64, device=batch.clean_ids.device, requires_grad=True)
        (derivative,) = torch.autograd.grad(_gated_metric(model, batch, layer, head, gate).sum(), gate)
        derivative = derivative.flatten()
        assert derivative.abs().max() > 1e-4
        torch.testing.assert_close(scores[:, layer, head], derivative, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("family", FAMILIES)
def test_exact_head_patching_is_the_tests_own_hook(family):
    model, batch = family_model(family), _pairs(family)
    heads = [(0, 0), (1, 3)]
    effects = exact_head_effects(model, batch, "logit_diff", heads=heads)
    for layer, head in heads:
        with torch.no_grad():
            expected = _gated_metric(model, batch, layer, head, 1.0)
        torch.testing.assert_close(effects[:, layer, head], expected, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("family", DENSE)
def test_node_eap_ig_ranks_heads_like_exact_patching(family):
    """Near-linear weights, many points: attribution and patching must agree (routed MLPs: docs/method.md).

    Small weights do not make a model with attention output norms near-linear (the norm scales the small
    outputs back up): there the two agree less (0.66-0.89 measured), and the bar is lower."""
    model, batch = family_model(family, init=0.02, layers=3), _pairs(family, batch=8, length=10, seed=5)
    attributed = node_scores(model, batch, "logit_diff", steps=32, chunk_size=8).mean(0)
    exact = exact_head_effects(model, batch, "logit_diff").mean(0)
    rho = spearmanr(attributed.flatten().cpu(), exact.flatten().cpu()).statistic
    print(f"{family}: Spearman node eap-ig (32 points) vs exact head patching {rho:.3f}")
    assert rho > (0.6 if ARCHITECTURES[family].attention_out_norm else 0.9)


@pytest.mark.parametrize("family", EDGE_FAMILIES)
def test_edges_of_a_node_sum_to_its_node_score(family):
    """Also: points run three at a time (reads summed, or contracted point by point behind an attention output
    norm) give what one at a time gives."""
    model, batch = family_model(family, layers=3), _pairs(family)
    result = edge_scores(model, batch, "kl", steps=4, chunk_size=3)
    error = ((result.edges.sum(2) - result.nodes).abs().max() / result.nodes.abs().max()).item()
    print(f"{family}: identity relative error {error:.2e}")
    assert error <= 1e-6
    assert result.nodes.abs().min() > 0
    one_by_one = edge_scores(model, batch, "kl", steps=4, chunk_size=1)
    torch.testing.assert_close(one_by_one.edges, result.edges, rtol=1e-7, atol=1e-9 * result.edges.abs().max().item())


@pytest.mark.parametrize("family", EDGE_FAMILIES)
def test_edge_eap_is_the_derivative_of_exact_edge_patching(family):
    """EAP's gradient at the clean input is d/ds of patching each edge with s times its write difference."""
    model, batch = family_model(family), _pairs(family, batch=2)
    result = edge_scores(model, batch, "logit_diff", method="eap")
    eps = 1e-3
    central = (exact_edge_effects(model, batch, "logit_diff", scale=eps)
               - exact_edge_effects(model, batch, "logit_diff", scale=-eps)) / (2 * eps)
    valid = result.graph.valid
    error = ((result.edges - central)[:, valid].abs().max() / central[:, valid].abs().max()).item()
    print(f"{family}: eap edges vs the derivative of exact edge patching, relative {error:.2e}")
    assert error < 1e-3
    assert torch.equal(central[:, ~valid], torch.zeros_like(central[:, ~valid]))


@pytest.mark.parametrize("family", [family for family in EDGE_FAMILIES if family in DENSE])
def test_edge_eap_ig_ranks_edges_like_exact_edge_patching(family):
    model, batch = family_model(family, init=0.02, layers=3), _pairs(family, batch=6, length=10, seed=5)
    result = edge_scores(model, batch, "logit_diff", steps=16, chunk_size=4)
    exact = exact_edge_effects(model, batch, "logit_diff")
    valid = result.graph.valid
    rho = spearmanr(result.edges.mean(0)[valid].cpu(), exact.mean(0)[valid].cpu()).statistic
    print(f"{family}: Spearman edge eap-ig vs exact edge patching {rho:.3f}")
    assert rho > 0.7


@pytest.mark.parametrize("family", FAMILIES)
def test_left_padding_equals_each_pair_alone(family):
    model = family_model(family, dtype=torch.float32)
    batch = random_pairs(batch=3, ragged=True)
    assert (batch.attention_mask == 0).any()
    levels = ["node"] + (["edge"] * (family in EDGE_FAMILIES))
    for level in levels:
        def score(part, level=level):
            if level == "node":
                return node_scores(model, part, "logit_diff", steps=3)
            return edge_scores(model, part, "logit_diff", steps=3).edges
        together = score(batch)
        for row in range(3):
            torch.testing.assert_close(score(_alone(batch, row))[0], together[row], rtol=1e-3, atol=1e-4 * together.abs().max().item())


@pytest.mark.parametrize("family", NODE_ONLY)
def test_a_node_only_family_is_refused_at_edge_level_before_any_forward(family):
    model, batch = family_model(family), _pairs(family)
    calls = []
    handle = model.register_forward_pre_hook(lambda module, args: calls.append(1))
    with pytest.raises(ValueError, match=f"^{family} is scored at node level only, not edge: ") as refusal:
        edge_scores(model, batch)
    with pytest.raises(ValueError, match="node level only"):
        exact_edge_effects(model, batch)
    handle.remove()
    assert calls == [] and "\n" not in str(refusal.value)


def test_refused_and_unknown_families_are_refused_with_one_line():
    import transformers

    mamba = transformers.MambaForCausalLM(transformers.MambaConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1))
    with pytest.raises(ValueError, match=f"'mamba' is not supported: no attention heads.*{DOCS}"):
        resolve(mamba)
    model = family_model("llama")
    model.config.model_type = "mystery"
    with pytest.raises(ValueError, match=f"'mystery' is not in sparks' architecture table.*{DOCS}") as refusal:
        resolve(model)
    assert "\n" not in str(refusal.value)


@pytest.mark.parametrize("how", ["torch.compile", "Module.compile"])
def test_a_compiled_model_is_refused(how):
    model = family_model("qwen2")
    if how == "torch.compile":
        model = torch.compile(model)
    else:
        model.compile()
    with pytest.raises(ValueError, match="compiled with torch.compile"):
        resolve(model)


def _edge_circuit(graph, kept):
    """An edge circuit keeping the edges marked in ``kept`` [U, D]."""
    from sparks.probes.circuit import Circuit

    edges = [(graph.upstream[u], graph.downstream[v]) for u, v in kept.nonzero().tolist()]
    return Circuit([], [], edges, torch.zeros(kept.shape), list(graph.upstream), list(graph.downstream))


@pytest.mark.parametrize("family", EDGE_FAMILIES)
def test_edge_circuit_runs_are_exact_patching(family):
    """All edges but one: exact patching of that edge. Edges out of a head set only: that head set's node
    circuit run, reads starting from the corrupted residual (a small set) and from the circuit's (a large one)."""
    from sparks.probes.faithfulness import circuit_effects
    from sparks.probes.scoring import graph_of

    model, batch = family_model(family, layers=3), _pairs(family, batch=3, length=9)
    graph = graph_of(model)
    full = circuit_effects(model, batch, _edge_circuit(graph, graph.valid), "logit_diff")
    assert full[:, 0].abs().max() <= 1e-9 and full[:, 1].abs().min() > 1e-4
    empty = circuit_effects(model, batch, _edge_circuit(graph, torch.zeros_like(graph.valid)), "logit_diff")
    torch.testing.assert_close(empty[:, 0], full[:, 1], rtol=1e-9, atol=1e-12)
    exact = exact_edge_effects(model, batch, "logit_diff")
    for source, destination in [("a0.h1", "a1.h2<q>"), ("a0.h3", "a2.g1<k>"), ("a1.h0", "a2.g0<v>"), ("a0.h2", "m1"),
                                ("m0", "a1.h1<q>"), ("m2", "logits"), ("input", "m0"), ("a2.h1", "logits")]:
        u, v = graph.upstream.index(source), graph.downstream.index(destination)
        kept = graph.valid.clone()
        kept[u, v] = False
        effects = circuit_effects(model, batch, _edge_circuit(graph, kept), "logit_diff")
        torch.testing.assert_close(effects[:, 0], exact[:, u, v], rtol=1e-7, atol=1e-10)
        assert exact[:, u, v].abs().max() > 1e-6
    from sparks.probes.circuit import Circuit

    for heads in ([(0, 1), (2, 3)], [(layer, head) for layer in range(3) for head in range(4) if (layer, head) != (1, 2)]):
        kept = graph.valid.clone()
        for layer in range(3):
            for head in range(4):
                if (layer, head) not in heads:
                    kept[graph.head_index(layer, head)] = False
        node = circuit_effects(model, batch, Circuit(heads, [], [], torch.zeros(0), [], []), "logit_diff")[:, 0]
        edges = circuit_effects(model, batch, _edge_circuit(graph, kept), "logit_diff")[:, 0]
        torch.testing.assert_close(edges, node, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("family", [family for family in FAMILIES if ARCHITECTURES[family].attention_layer_type])
def test_a_hybrids_layers_are_its_attention_layers(family):
    from sparks.callbacks.tracker import head_layout

    model = family_model(family)
    sites = resolve(model)
    assert sites.layer_ids == (1, 3) and sites.num_layers == 2
    assert sites.layers[1].o_proj is model.model.layers[3].self_attn.o_proj
    assert head_layout(model)["attention_layers"] == [1, 3] and head_layout(model)["layers"] == 2
    assert "attention_layers" not in head_layout(family_model("qwen2"))


def test_a_routed_family_is_scored_with_one_warning(recwarn):
    from sparks.probes.pairs import Pair
    from sparks.probes.scoring import score_pairs, warn_routed

    warn_routed.cache_clear()
    pairs = [Pair("", "", [1, 2, 3, 4], [1, 5, 3, 4], [3], [6], [7])]
    for family in ("mixtral", "mixtral", "qwen2"):
        scores = score_pairs(family_model(family), pairs, steps=2, progress=False)["heads"]
        assert scores.abs().sum() > 0
    messages = [str(warning.message) for warning in recwarn if "top-k experts" in str(warning.message)]
    assert len(messages) == 1 and messages[0].startswith("mixtral routes tokens to top-k experts")
