import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from sparks.probes.edges import EdgeGraph, edge_scores
from sparks.probes.forward import target_logits
from sparks.probes.metrics import get_metric
from sparks.probes.patching import exact_edge_effects
from sparks.probes.sites import resolve
from tests.probes.tiny_models import assert_unchanged, lora, random_pairs, recorded_run, snapshot, tiny_model

pytestmark = pytest.mark.usefixtures("on_device")  # every device present (conftest.DEVICES)


class _PatchedProjection(nn.Module):
    """Stands in for a q/k/v projection: slice ``span`` computed from the residual shifted by ``delta``."""

    def __init__(self, proj, norm, span, delta, residual):
        super().__init__()
        self.proj, self.norm, self.span, self.delta, self.residual = proj, norm, span, delta, residual
        self.out_features = proj.out_features

    def forward(self, normed):
        out = self.proj(normed).clone()
        out[..., self.span] = self.proj(self.norm(self.residual() + self.delta))[..., self.span]
        return out


@pytest.mark.parametrize("destination, kind, index", [("a1.h2<q>", "q", 2), ("a1.g1<k>", "k", 1), ("a1.g0<v>", "v", 0)])
def test_a_head_input_edge_matches_the_tests_own_patch(destination, kind, index, float64_norms):
    model, batch = tiny_model(layers=2), random_pairs(batch=3)
    clean_logits, clean = recorded_run(model, batch, batch.clean_ids)
    _, corrupted = recorded_run(model, batch, batch.corrupted_ids)
    mask = batch.attention_mask[:, :, None].double()
    span = slice(16, 32)  # head 1 of layer 0
    w_o = model.model.layers[0].self_attn.o_proj.weight
    delta = ((corrupted["z0"] - clean["z0"])[..., span] @ w_o[:, span].T) * mask
    layer = model.model.layers[1]
    seen = {}
    hook = layer.register_forward_pre_hook(lambda m, a: seen.__setitem__("x", a[0]))  # the residual entering layer 1
    original = getattr(layer.self_attn, f"{kind}_proj")
    head_span = slice(16 * index, 16 * (index + 1))
    setattr(layer.self_attn, f"{kind}_proj", _PatchedProjection(original, layer.input_layernorm, head_span, delta, lambda: seen["x"]))
    try:
        with torch.no_grad():
            logits = target_logits(resolve(model), batch.attention_mask, batch.target_positions, input_ids=batch.clean_ids)
    finally:
        setattr(layer.self_attn, f"{kind}_proj", original)
        hook.remove()
    expected = get_metric("logit_diff")(logits, clean_logits, batch.clean_answer_ids, batch.corrupted_answer_ids)
    effects = exact_edge_effects(model, batch, "logit_diff")
    graph = EdgeGraph.build(2, 4, 2)
    column = graph.downstream.index(destination)
    torch.testing.assert_close(effects[:, graph.head_index(0, 1), column], expected, rtol=1e-9, atol=1e-12)
    assert expected.abs().min() > 1e-6


def test_last_mlp_to_logits_is_patching_that_mlp(float64_norms):
    """The last MLP feeds the logits alone, so its one edge is the whole node."""
    model, batch = tiny_model(layers=2), random_pairs()
    clean_logits, _ = recorded_run(model, batch, batch.clean_ids)
    _, corrupted = recorded_run(model, batch, batch.corrupted_ids)
    mask = batch.attention_mask[:, :, None].bool()
    hook = model.model.layers[1].mlp.register_forward_hook(lambda m, a, out: torch.where(mask, corrupted["m1"], out))
    try:
        with torch.no_grad():
            logits = target_logits(resolve(model), batch.attention_mask, batch.target_positions, input_ids=batch.clean_ids)
    finally:
        hook.remove()
    expected = get_metric("kl")(logits, clean_logits, None, None)
    graph = EdgeGraph.build(2, 4, 2)
    effects = exact_edge_effects(model, batch, "kl")
    torch.testing.assert_close(effects[:, graph.mlp_index(1), -1], expected, rtol=1e-9, atol=1e-14)
    assert expected.min() > 0


def test_chunking_invalid_edges_and_nothing_left_behind():
    model, batch = lora(tiny_model(), init_b_zero=False), random_pairs()
    model.eval()
    before = snapshot(model)
    whole = exact_edge_effects(model, batch, "logit_diff")
    assert_unchanged(model, before)
    torch.testing.assert_close(exact_edge_effects(model, batch, "logit_diff", chunk_size=3), whole, rtol=1e-10, atol=1e-12)
    valid = EdgeGraph.build(2, 4, 2).valid
    assert torch.equal(whole[:, ~valid], torch.zeros_like(whole[:, ~valid]))
    assert (whole[:, valid] != 0).float().mean() > 0.9
    with pytest.raises(ValueError, match="chunk_size"):
        exact_edge_effects(model, batch, chunk_size=0)


def test_edge_eap_ig_ranks_edges_like_exact_edge_patching():
    """Small weights keep the model near-linear, where attribution and patching must agree."""
    rhos = []
    for arch, seed in [("qwen2", 0), ("qwen3", 1), ("llama", 2)]:
        model, batch = tiny_model(arch, layers=3, init=0.02, seed=seed), random_pairs(batch=8, length=10, seed=seed + 5)
        result = edge_scores(model, batch, "logit_diff", steps=5)
        exact = exact_edge_effects(model, batch, "logit_diff")
        valid = result.graph.valid
        rhos.append(spearmanr(result.edges.mean(0)[valid].cpu(), exact.mean(0)[valid].cpu()).statistic)
    print("Spearman edge eap-ig vs exact edge patching (logit_diff, init 0.02):", [round(float(r), 3) for r in rhos])
    assert min(rhos) > 0.85
