"""Circuit faithfulness (probes.faithfulness) against direct patching on small random GQA models, and
on the trained tiny base model: the head circuit EAP-IG selects beats random heads of its size."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from sparks.probes.attribution import node_scores
from sparks.probes.circuit import Circuit, head_circuit
from sparks.probes.edges import EdgeGraph
from sparks.probes.faithfulness import circuit_effects, edge_coefficients, faithfulness, faithfulness_interval, pair_effects
from sparks.probes.metrics import get_metric
from sparks.probes.pairs import Pair, batch_pairs
from sparks.probes.patching import edit_heads, exact_edge_effects, exact_head_effects
from sparks.probes.schemes import numbers_pairs
from sparks.probes.sites import resolve
from sparks.tasks import arith
from tests.probes.tiny_models import assert_unchanged, lora, random_pairs, recorded_run, snapshot, tiny_model

pytestmark = pytest.mark.usefixtures("on_device")  # every device present (conftest.DEVICES)


def _heads(chosen, layers=2, heads=4):
    """The circuit head_circuit selects when exactly the ``chosen`` heads score."""
    scores = torch.zeros(layers, heads)
    for layer, head in chosen:
        scores[layer, head] = 1.0
    return head_circuit(scores, top_k=len(chosen))


def _edges(graph, kept):
    """An edge circuit keeping the edges marked in ``kept`` [U, D]."""
    edges = [(graph.upstream[u], graph.downstream[v]) for u, v in kept.nonzero().tolist()]
    return Circuit([], [], edges, torch.zeros(kept.shape), list(graph.upstream), list(graph.downstream))


def _graph(model):
    sites = resolve(model)
    return EdgeGraph.build(sites.num_layers, sites.num_heads, sites.num_kv_heads)


def _effect(batch, metric, logits, clean_logits):
    return get_metric(metric)(logits, clean_logits, batch.clean_answer_ids, batch.corrupted_answer_ids)


def _faithfulness(effects):
    return faithfulness(*effects.sum(0).tolist())


def test_full_and_empty_head_circuits():
    model, batch = tiny_model(), random_pairs(batch=4)
    everything = [(layer, head) for layer in range(2) for head in range(4)]
    full = circuit_effects(model, batch, _heads(everything))
    assert full.shape == (4, 2) and full.dtype == torch.float64
    assert full[:, 0].abs().max() <= 1e-12
    assert full[:, 1].min() > 1e-3
    assert _faithfulness(full) == pytest.approx(1.0, abs=1e-6)
    empty = circuit_effects(model, batch, _heads([]))
    torch.testing.assert_close(empty[:, 0], empty[:, 1], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(empty[:, 1], full[:, 1], rtol=1e-12, atol=1e-14)
    assert _faithfulness(empty) == pytest.approx(0.0, abs=1e-6)
    assert faithfulness(0.0, 0.0) != faithfulness(0.0, 0.0)  # NaN without an empty-circuit effect


@pytest.mark.parametrize("metric", ["kl", "logit_diff"])
def test_a_head_circuit_is_patching_the_other_heads_with_their_corrupted_outputs(metric, float64_norms):
    model, batch = tiny_model(), random_pairs(batch=4)
    clean_logits, _ = recorded_run(model, batch, batch.clean_ids)
    _, corrupted = recorded_run(model, batch, batch.corrupted_ids)
    everything = [(layer, head) for layer in range(2) for head in range(4)]
    order = torch.randperm(8, generator=torch.Generator().manual_seed(3)).tolist()
    chosen = [everything[index] for index in order[:3]]
    effects = circuit_effects(model, batch, _heads(chosen), metric)
    for patched, column in ((set(everything) - set(chosen), 0), (everything, 1)):
        with edit_heads(model, patched, lambda layer, z: corrupted[f"z{layer}"].unflatten(-1, (4, 16))):
            logits, _ = recorded_run(model, batch, batch.clean_ids)
        expected = _effect(batch, metric, logits, clean_logits)
        torch.testing.assert_close(effects[:, column], expected, rtol=1e-9, atol=1e-12)
    assert effects[:, 0].abs().min() > 1e-4


@pytest.mark.parametrize("metric", ["kl", "logit_diff"])
def test_all_heads_but_one_is_exact_patching_of_that_head(metric, float64_norms):
    model, batch = tiny_model(), random_pairs(batch=4)
    everything = [(layer, head) for layer in range(2) for head in range(4)]
    for left_out in [(0, 2), (1, 3)]:
        effects = circuit_effects(model, batch, _heads([head for head in everything if head != left_out]), metric)
        exact = exact_head_effects(model, batch, metric, heads=[left_out])[:, left_out[0], left_out[1]]
        torch.testing.assert_close(effects[:, 0], exact, rtol=1e-9, atol=1e-12)
        assert exact.abs().max() > 1e-4


def test_all_edges_and_no_edges(float64_norms):
    model, batch = tiny_model(), random_pairs(batch=4)
    graph = _graph(model)
    full = circuit_effects(model, batch, _edges(graph, graph.valid))
    assert full[:, 0].abs().max() <= 1e-12
    assert _faithfulness(full) == pytest.approx(1.0, abs=1e-6)
    empty = circuit_effects(model, batch, _edges(graph, torch.zeros_like(graph.valid)))
    clean_logits, _ = recorded_run(model, batch, batch.clean_ids)
    corrupted_logits, _ = recorded_run(model, batch, batch.corrupted_ids)
    corrupted_run = _effect(batch, "kl", corrupted_logits, clean_logits)
    torch.testing.assert_close(empty[:, 0], corrupted_run, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(empty[:, 1], corrupted_run, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(full[:, 1], corrupted_run, rtol=1e-9, atol=1e-12)
    assert _faithfulness(empty) == pytest.approx(0.0, abs=1e-6)
    assert corrupted_run.min() > 1e-3


EDGES = [("a0.h1", "a1.h2<q>"), ("a0.h1", "a1.g1<k>"), ("a0.h3", "a1.g0<v>"), ("m1", "logits"), ("input", "m0"),
         ("a1.h0", "m1"), ("input", "a0.g0<k>")]


@pytest.mark.parametrize("arch", ["qwen2", "qwen3", "qwen2-lora"])
@pytest.mark.parametrize("metric", ["kl", "logit_diff"])
def test_all_edges_but_one_is_exact_patching_of_that_edge(arch, metric, float64_norms):
    model = lora(tiny_model(), init_b_zero=False) if arch == "qwen2-lora" else tiny_model(arch)
    batch = random_pairs(batch=3)
    graph = _graph(model)
    exact = exact_edge_effects(model, batch, metric)
    for source, destination in EDGES:
        u, v = graph.upstream.index(source), graph.downstream.index(destination)
        kept = graph.valid.clone()
        kept[u, v] = False
        effects = circuit_effects(model, batch, _edges(graph, kept), metric)
        torch.testing.assert_close(effects[:, 0], exact[:, u, v], rtol=1e-9, atol=1e-12)
        assert exact[:, u, v].abs().max() > 1e-5


@pytest.mark.parametrize("arch", ["qwen2", "qwen3", "llama"])
def test_the_edge_circuit_of_a_head_set_is_that_head_circuit(arch, float64_norms):
    """Without the edges out of the heads off a head set, every read sees those heads' corrupted
    writes in place of theirs: the residual of the head circuit's run. Small and large sets make
    reads start from the corrupted residual (taking kept edges back) and from the circuit's (adding
    missing ones)."""
    model, batch = tiny_model(arch, layers=3), random_pairs(batch=3, length=9, seed=4)
    graph = _graph(model)
    everything = [(layer, head) for layer in range(3) for head in range(4)]
    order = torch.randperm(12, generator=torch.Generator().manual_seed(0)).tolist()
    signs = set()
    for size in (1, 4, 9):
        chosen = [everything[index] for index in order[:size]]
        kept = graph.valid.clone()
        for layer, head in set(everything) - set(chosen):
            kept[graph.head_index(layer, head)] = False
        circuit = _edges(graph, kept)
        coefficients, _ = edge_coefficients(graph, circuit)
        signs |= set(coefficients.unique().tolist())
        for metric in ("kl", "logit_diff"):
            edges = circuit_effects(model, batch, circuit, metric)
            heads = circuit_effects(model, batch, _heads(chosen, layers=3), metric)
            torch.testing.assert_close(edges[:, 0], heads[:, 0], rtol=1e-9, atol=1e-12)
    assert signs == {-1.0, 0.0, 1.0}


def _as_pairs(batch):
    """The batch's rows as unpadded pairs."""
    pairs = []
    for row in range(batch.batch_size):
        real = batch.attention_mask[row].bool()
        start = int((~real).sum())
        clean, corrupted = batch.clean_ids[row][real].tolist(), batch.corrupted_ids[row][real].tolist()
        target = int(batch.target_positions[row, 0]) - start
        answers = int(batch.clean_answer_ids[row, 0]), int(batch.corrupted_answer_ids[row, 0])
        pairs.append(Pair("", "", clean, corrupted, [target], [answers[0]], [answers[1]]))
    return pairs


def test_a_pairs_effects_do_not_depend_on_padding(float64_norms):
    model, batch = tiny_model(), random_pairs(batch=5, length=9, ragged=True)
    pairs = _as_pairs(batch)
    assert len({len(pair.clean_ids) for pair in pairs}) == 3
    graph = _graph(model)
    kept = graph.valid & (torch.rand(graph.valid.shape, generator=torch.Generator().manual_seed(2)) < 0.3)
    for circuit in (_heads([(0, 1), (1, 0), (1, 3)]), _edges(graph, kept)):
        alone = pair_effects(model, pairs, circuit, metric="logit_diff", batch_size=1)
        together = pair_effects(model, pairs, circuit, metric="logit_diff", batch_size=len(pairs))
        assert alone.shape == (5, 2) and alone.device.type == "cpu"
        torch.testing.assert_close(together, alone, rtol=1e-9, atol=1e-12)
        assert (alone[:, 0] - alone[:, 1]).abs().min() > 1e-6


def test_the_model_is_left_as_found():
    model = lora(tiny_model(), init_b_zero=False)
    model.train()
    batch = random_pairs()
    graph = _graph(model)
    kept = graph.valid & (torch.rand(graph.valid.shape, generator=torch.Generator().manual_seed(5)) < 0.3)
    before = snapshot(model)
    for circuit in (_heads([(0, 0), (1, 2)]), _edges(graph, kept)):
        first = circuit_effects(model, batch, circuit)
        assert_unchanged(model, before)
        assert model.training
        assert all(not module._forward_pre_hooks and not module._forward_hooks for module in model.modules())
        torch.testing.assert_close(circuit_effects(model, batch, circuit), first, rtol=0, atol=0)  # no dropout


def test_the_selected_head_circuit_of_the_base_model_beats_random_heads(base_model_dir):
    model = AutoModelForCausalLM.from_pretrained(base_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    pairs = numbers_pairs(tokenizer, arith.problems("probe", [1, 2, 3, 4, 5, 6], 32, seed=0))
    batch = batch_pairs(pairs, tokenizer.pad_token_id)
    scores = node_scores(model, batch, "kl", "eap-ig", steps=5)
    circuit = head_circuit(scores, mass=0.5)
    selected = _faithfulness(circuit_effects(model, batch, circuit))
    layers, heads = scores.shape[1:]
    generator = torch.Generator().manual_seed(0)
    random = []
    for _ in range(5):
        chosen = torch.randperm(layers * heads, generator=generator)[: len(circuit.heads)].tolist()
        random_circuit = Circuit([divmod(index, heads) for index in chosen], [], [], circuit.scores, [], [])
        random.append(_faithfulness(circuit_effects(model, batch, random_circuit)))
    print(f"base model, numbers pairs, {len(circuit.heads)} heads (mass 0.5): faithfulness {selected:.3f}, "
          f"random heads {[round(value, 3) for value in random]}")
    assert selected > max(random)


def test_the_faithfulness_interval_spans_the_replicates():
    # every pair undoes half its damage: every replicate says 0.5
    empty = torch.tensor([1.0, 2.0, 4.0])
    assert faithfulness_interval(0.5 * empty, empty) == (0.5, 0.5)
    # replicates of 0.0 .. 1.0 in steps of 0.01; one without an empty-circuit effect is left out
    circuit = torch.cat([1.0 - torch.arange(101) / 100, torch.tensor([0.0])])
    low, high = faithfulness_interval(circuit, torch.cat([torch.ones(101), torch.zeros(1)]))
    assert (low, high) == pytest.approx((0.025, 0.975))
    assert faithfulness_interval(torch.ones(3), torch.zeros(3)) != faithfulness_interval(torch.ones(3), torch.zeros(3))
