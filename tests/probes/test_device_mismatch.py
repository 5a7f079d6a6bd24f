"""The probes and the tracker's snapshot run on a model that lives on another device, without a GPU.

The model's parameters and buffers are moved to a pretend device (fake_device.py): its tensors hold
real data on the CPU but refuse, as CUDA does, every op that mixes them with a CPU tensor of one or
more dimensions. An accumulator made on the CPU and added to with the model's tensors (probes/edges.py
before issue 10) raises here as it did on every GPU run; so did select_edges on scores left on the
device (it indexed its CPU masks with device indices). The scores must also equal those of the same
model on the CPU, and come back as CPU tensors. test_devices.py reads the code for the same fault.
"""

from __future__ import annotations

import pytest
import torch

from sparks.callbacks.config import TrackerConfig
from sparks.callbacks.snapshot import score_snapshot
from sparks.probes.attribution import node_scores
from sparks.probes.circuit import head_circuit, select_edges
from sparks.probes.edges import edge_scores
from sparks.probes.faithfulness import pair_effects
from sparks.probes.ig import IG_RULE, IG_RULES
from sparks.probes.pairs import Pair
from sparks.probes.scoring import graph_of, score_pairs
from tests.probes.fake_device import ELSEWHERE, DeviceMismatch, Elsewhere, elsewhere, move_elsewhere
from tests.probes.tiny_models import random_pairs, tiny_model

# Ragged (padding is exercised), two batches of two, answers for logit_diff.
PAIRS = [
    Pair("", "", [5, 9, 12, 7, 3], [5, 9, 30, 7, 3], [4], [11], [17]),
    Pair("", "", [8, 2, 40], [8, 21, 40], [2], [6], [33]),
    Pair("", "", [14, 3, 3, 27, 9, 1], [14, 3, 3, 27, 52, 1], [3, 5], [2, 19], [45, 8]),
]
INTEGRATED = [("eap-ig", "node"), ("ceap", "node"), ("eap-ig", "edge")]  # their points are placed by ig_rule
ONE_POINT_OR_EXACT = [("eap", "node"), ("exact", "node"), ("eap", "edge"), ("exact", "edge")]
SCORING = [(method, level, rule) for method, level in INTEGRATED for rule in IG_RULES]
SCORING += [(method, level, IG_RULE) for method, level in ONE_POINT_OR_EXACT]


def scores(model: torch.nn.Module, method: str, level: str, ig_rule: str = IG_RULE) -> dict[str, torch.Tensor]:
    return score_pairs(model, PAIRS, method=method, level=level, metric="logit_diff", steps=3, batch_size=2,
                       ig_rule=ig_rule, progress=False)


def assert_same_on_the_cpu(got: torch.Tensor, expected: torch.Tensor) -> None:
    assert type(got) is torch.Tensor and got.device.type == "cpu"
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_the_pretend_device_refuses_what_cuda_refuses_and_allows_what_it_allows():
    with elsewhere():
        x = torch.arange(6.0).to(ELSEWHERE)
        with pytest.raises(DeviceMismatch, match="Expected all tensors to be on the same device"):
            x + torch.ones(6)
        accumulator = torch.zeros(6)  # no device named: the CPU
        with pytest.raises(DeviceMismatch):
            accumulator += x
        with pytest.raises(DeviceMismatch):
            torch.cat([x, torch.ones(1)])
        assert type(x * torch.tensor(2.0)) is Elsewhere  # a 0-dim CPU tensor mixes, as on CUDA
        assert x[torch.tensor([1, 4])].tolist() == [1.0, 4.0]  # CPU indices, as on CUDA
        accumulator[:] = x  # copy_ crosses devices
        assert type(accumulator) is torch.Tensor and accumulator.tolist() == x.tolist()
        assert type(x.cpu()) is torch.Tensor and type(x.to("cpu")) is torch.Tensor
        assert type(x.to(torch.float64)) is Elsewhere and x.device == ELSEWHERE


def test_code_that_moves_to_the_models_device_works_unchanged():
    model = move_elsewhere(tiny_model())
    device = next(model.parameters()).device
    assert device == ELSEWHERE and all(type(p) is Elsewhere for p in model.parameters())
    with elsewhere():
        made = [torch.ones(2, 3).to(device), torch.zeros(2, 3, device=device), torch.tensor([[1.0] * 3] * 2, device=device),
                torch.as_tensor([[1.0] * 3] * 2, device=device), next(model.parameters()).new_tensor([[1.0] * 3] * 2)]
        assert all(type(tensor) is Elsewhere for tensor in made)
        target = torch.zeros(2, 5, device=device)
        target[:, [0, 3]] = torch.ones(2, 2, device=device)  # a list index: torch makes it on the device, skipping dispatch
        assert target[:, [0, 3, 4]].tolist() == [[1.0, 1.0, 0.0]] * 2


@pytest.mark.parametrize("method, level, ig_rule", SCORING)
def test_scoring_on_another_device_equals_scoring_on_the_cpu(method, level, ig_rule):
    model = tiny_model()
    expected = scores(model, method, level, ig_rule)
    move_elsewhere(model)
    with elsewhere():
        got = scores(model, method, level, ig_rule)
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert_same_on_the_cpu(got[name], value)


def test_circuits_are_selected_from_scores_left_on_another_device():
    model, batch = tiny_model(), random_pairs()
    edges = edge_scores(model, batch, "logit_diff", steps=2).edges
    heads = node_scores(model, batch, "logit_diff", steps=2)
    move_elsewhere(model)
    with elsewhere():
        scored = edge_scores(model, batch.to(ELSEWHERE), "logit_diff", steps=2)
        assert type(scored.edges) is Elsewhere
        edge_circuit = select_edges(scored.edges, scored.graph, top_n=12, tau=0.05)
        head_set = head_circuit(node_scores(model, batch.to(ELSEWHERE), "logit_diff", steps=2), top_k=3)
    expected = select_edges(edges, scored.graph, top_n=12, tau=0.05)
    assert edge_circuit.edges == expected.edges and edge_circuit.heads == expected.heads and expected.edges
    assert head_set.heads == head_circuit(heads, top_k=3).heads


@pytest.mark.parametrize("level", ["node", "edge"])
def test_circuit_faithfulness_on_another_device_equals_it_on_the_cpu(level):
    model = tiny_model()
    scored = scores(model, "eap-ig", level)
    if level == "node":
        circuit = head_circuit(scored["heads"].abs().mean(0), top_k=3)
    else:
        circuit = select_edges(scored["edges"], graph_of(model), top_n=12)
    expected = pair_effects(model, PAIRS, circuit, metric="logit_diff", batch_size=2)
    move_elsewhere(model)
    with elsewhere():
        got = pair_effects(model, PAIRS, circuit, metric="logit_diff", batch_size=2)
    assert_same_on_the_cpu(got, expected)


@pytest.mark.parametrize("level", ["node", "edge"])
def test_the_trackers_snapshot_on_another_device_equals_it_on_the_cpu(level):
    config = TrackerConfig(level=level, ig_steps=2, batch_size=2, replicates=8, top_n=12, tau=0.0, dashboards=("none",))
    model = tiny_model()
    graph = graph_of(model)
    expected = score_snapshot(model, PAIRS, config, graph, pad_id=0, step=3)
    move_elsewhere(model)
    with elsewhere():
        got = score_snapshot(model, PAIRS, config, graph, pad_id=0, step=3)
    for name in ("mean", "mean_abs", "ranking", "importance", "importance_interval"):
        assert_same_on_the_cpu(getattr(got, name), getattr(expected, name))
    assert got.circuit.heads == expected.circuit.heads and got.circuit.edges == expected.circuit.edges
    assert torch.equal(got.replicates, expected.replicates)
    assert got.faithfulness == pytest.approx(expected.faithfulness, rel=1e-9)
    assert got.faithfulness_interval == pytest.approx(expected.faithfulness_interval, rel=1e-9)
