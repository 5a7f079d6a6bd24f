"""The three IG rules (probes.ig): hannamw/EAP-IG's left rule by identity, convergence, and the metric's sign.

hannamw/EAP-IG's ``EAP-IG-inputs`` scores an edge (or node) as (z' - z) . (1/m) sum_{k=0}^{m-1}
dM/d(in)(k/m): write difference corrupted minus clean, gradients at the points k/m counted from the
corrupted input (``left``). sparks' ``right`` takes k = 1..m instead, so the two sums share the
points 1/m..(m-1)/m and

    m * left = m * right - EAP(clean input) + EAP(corrupted input)

with EAP(a) = (z' - z) . dM/d(in)(a). EAP at the clean input is ``eap``; EAP at the corrupted input
is ``left`` with one point, which is checked here against finite differences of the model's own
forward (so the identity is not circular).
"""

import pytest
import torch

from sparks.analysis.cli import parser
from sparks.callbacks.config import LINEAGE_SETTINGS, TrackerConfig
from sparks.probes.attribution import node_scores
from sparks.probes.conductance import conductance_scores
from sparks.probes.edges import edge_scores
from sparks.probes.forward import target_logits
from sparks.probes.ig import IG_RULE, IG_RULES, ig_points
from sparks.probes.metrics import get_metric, logit_diff
from sparks.probes.scoring import score_pairs
from sparks.probes.sites import resolve
from tests.probes.tiny_models import assert_unchanged, random_pairs, recorded_run, snapshot, tiny_model

pytestmark = pytest.mark.usefixtures("on_device")  # every device present (conftest.DEVICES)


def test_the_points_of_each_rule():
    expected = {"right": [0.25, 0.5, 0.75, 1.0], "left": [0.0, 0.25, 0.5, 0.75], "midpoint": [0.125, 0.375, 0.625, 0.875]}
    for rule in IG_RULES:
        assert ig_points("eap-ig", 4, rule).tolist() == expected[rule]
        assert ig_points("eap", 4, rule).tolist() == [1.0]  # eap: one point at the clean input whatever the rule
    with pytest.raises(ValueError, match="unknown ig_rule 'trapezoid'"):
        ig_points("eap-ig", 4, "trapezoid")
    with pytest.raises(ValueError, match="unknown ig_rule"):
        score_pairs(tiny_model(layers=1), [], ig_rule="trapezoid")


@pytest.mark.parametrize("metric", ["kl", "logit_diff"])
def test_left_rule_is_the_right_rule_shifted_by_one_point(metric, float64_norms):
    """left_m = (m * right_m - EAP(clean) + EAP(corrupted)) / m, edges and nodes, to float64 precision."""
    model, batch, steps = tiny_model(layers=3), random_pairs(batch=3), 4
    right = edge_scores(model, batch, metric, steps=steps, ig_rule="right")
    left = edge_scores(model, batch, metric, steps=steps, ig_rule="left")
    at_clean = edge_scores(model, batch, metric, method="eap")
    at_corrupted = edge_scores(model, batch, metric, steps=1, ig_rule="left")
    for part in ("edges", "nodes"):
        expected = (steps * getattr(right, part) - getattr(at_clean, part) + getattr(at_corrupted, part)) / steps
        scale = getattr(left, part).abs().max()
        torch.testing.assert_close(getattr(left, part), expected, rtol=0, atol=1e-12 * scale)
        assert (getattr(left, part) - getattr(right, part)).abs().max() > 1e-3 * scale  # the rules do differ
    heads = node_scores(model, batch, metric, steps=steps, ig_rule="left")
    expected = (steps * node_scores(model, batch, metric, steps=steps, ig_rule="right") - node_scores(model, batch, metric, "eap")
                + node_scores(model, batch, metric, steps=1, ig_rule="left")) / steps
    torch.testing.assert_close(heads, expected, rtol=0, atol=1e-12 * heads.abs().max())


def _effect_along_input(model, batch, metric, alpha):
    """M at the input embeddings x' + alpha (x - x'), by a plain forward (no sparks scoring code)."""
    sites = resolve(model)
    with torch.no_grad():
        clean, corrupted = sites.embed_tokens(batch.clean_ids), sites.embed_tokens(batch.corrupted_ids)
        clean_logits = target_logits(sites, batch.attention_mask, batch.target_positions, input_ids=batch.clean_ids)
        logits = target_logits(sites, batch.attention_mask, batch.target_positions,
                               inputs_embeds=corrupted + alpha * (clean - corrupted))
    return get_metric(metric)(logits, clean_logits, batch.clean_answer_ids, batch.corrupted_answer_ids)


def _effect_with_head_nudged(model, batch, metric, layer, head, eps):
    """M on the corrupted input with head (layer, head)'s output moved by eps (z' - z), by the test's own hooks."""
    sites = resolve(model)
    clean_logits, clean = recorded_run(model, batch, batch.clean_ids)
    _, corrupted = recorded_run(model, batch, batch.corrupted_ids)
    span = slice(head * sites.head_dim, (head + 1) * sites.head_dim)
    nudge = torch.zeros_like(clean[f"z{layer}"])
    nudge[..., span] = eps * (corrupted[f"z{layer}"] - clean[f"z{layer}"])[..., span]
    handle = model.model.layers[layer].self_attn.o_proj.register_forward_pre_hook(lambda m, args: (args[0] + nudge,))
    try:
        with torch.no_grad():
            logits = target_logits(sites, batch.attention_mask, batch.target_positions, input_ids=batch.corrupted_ids)
    finally:
        handle.remove()
    return get_metric(metric)(logits, clean_logits, batch.clean_answer_ids, batch.corrupted_answer_ids)


@pytest.mark.parametrize("metric", ["kl", "logit_diff"])
def test_one_left_point_is_attribution_patching_at_the_corrupted_input(metric, float64_norms):
    """The identity's EAP(corrupted), against central differences of plain forward passes."""
    model, batch, eps = tiny_model(layers=2), random_pairs(batch=3), 1e-5
    at_corrupted = edge_scores(model, batch, metric, steps=1, ig_rule="left")
    # The input node: (x' - x) . dM/dx at x' is minus the derivative of M along the path at alpha = 0.
    slope = (_effect_along_input(model, batch, metric, eps) - _effect_along_input(model, batch, metric, -eps)) / (2 * eps)
    torch.testing.assert_close(at_corrupted.nodes[:, 0], -slope, rtol=1e-6, atol=1e-9)
    assert slope.abs().min() > 1e-3
    heads = node_scores(model, batch, metric, steps=1, ig_rule="left")
    for layer, head in [(0, 1), (1, 0), (1, 3)]:
        central = (_effect_with_head_nudged(model, batch, metric, layer, head, eps)
                   - _effect_with_head_nudged(model, batch, metric, layer, head, -eps)) / (2 * eps)
        torch.testing.assert_close(heads[:, layer, head], central, rtol=1e-6, atol=1e-9)
        assert central.abs().max() > 1e-3


@pytest.mark.parametrize("level", ["edge", "node"])
def test_the_rules_converge_to_the_same_integral_at_their_orders(level, float64_norms):
    """Against the 100-step integral: right and left errors halve when m doubles (1/m), midpoint's quarter (1/m^2).

    The input node's limit is also known exactly (completeness): M(corrupted) - M(clean) = M(corrupted).
    A mild random model (init 0.05): at init 0.2 the midpoint rule reaches its order only from m = 32.
    """
    model, batch = tiny_model(layers=2, init=0.05), random_pairs(batch=3)

    def scores(rule, steps):
        if level == "node":
            return node_scores(model, batch, "kl", steps=steps, ig_rule=rule)
        return edge_scores(model, batch, "kl", steps=steps, ig_rule=rule, chunk_size=None).edges

    reference = scores("midpoint", 100)
    error = {(rule, steps): ((scores(rule, steps) - reference).norm() / reference.norm()).item()
             for rule in IG_RULES for steps in (8, 16)}
    print({key: f"{value:.2e}" for key, value in error.items()})
    for rule, (low, high) in {"right": (0.4, 0.6), "left": (0.4, 0.6), "midpoint": (0.2, 0.3)}.items():
        assert low < error[rule, 16] / error[rule, 8] < high
    assert error["midpoint", 8] < 0.1 * min(error["right", 8], error["left", 8])
    if level == "edge":
        total = _effect_along_input(model, batch, "kl", 0.0)
        for rule, tolerance in {"right": 1 / 100, "left": 1 / 100, "midpoint": 1 / 100**2}.items():
            input_node = edge_scores(model, batch, "kl", steps=100, ig_rule=rule, chunk_size=None).nodes[:, 0]
            assert ((input_node - total).abs() <= tolerance * total.abs()).all()


def test_logit_diff_has_the_sign_of_eap_igs_logit_difference_loss(float64_norms):
    """sparks' ``logit_diff`` is the drop of the logit difference from its clean value, so its scores equal
    hannamw/EAP-IG's under ``partial(logit_diff, loss=True)`` (what its notebooks attribute with: M =
    -(logit of the clean answer - logit of the corrupted one)) and are minus its scores under ``loss=False``.
    Positive: patching the node in lowers the clean answer's logit difference."""
    model, batch = tiny_model(layers=2), random_pairs(batch=3)

    def eap_ig_logit_diff(loss):
        sign = -1.0 if loss else 1.0
        return lambda logits, clean_logits, clean, corrupted: sign * logit_diff(logits, clean, corrupted)

    ours = edge_scores(model, batch, "logit_diff", steps=3, ig_rule="left").edges
    as_loss = edge_scores(model, batch, eap_ig_logit_diff(loss=True), steps=3, ig_rule="left").edges
    as_performance = edge_scores(model, batch, eap_ig_logit_diff(loss=False), steps=3, ig_rule="left").edges
    torch.testing.assert_close(ours, as_loss, rtol=0, atol=1e-12 * ours.abs().max())
    torch.testing.assert_close(ours, -as_performance, rtol=0, atol=1e-12 * ours.abs().max())
    # The whole input's score (100 points) is the logit difference's drop when the corrupted input replaces the clean one.
    clean, corrupted = (logit_diff(*_logits_and_answers(model, batch, ids)) for ids in (batch.clean_ids, batch.corrupted_ids))
    drop = clean - corrupted
    input_node = edge_scores(model, batch, "logit_diff", steps=100, ig_rule="midpoint", chunk_size=None).nodes[:, 0]
    torch.testing.assert_close(input_node, drop, rtol=1e-3, atol=0)
    assert drop.abs().min() > 0.1


def _logits_and_answers(model, batch, ids):
    sites = resolve(model)
    with torch.no_grad():
        logits = target_logits(sites, batch.attention_mask, batch.target_positions, input_ids=ids)
    return logits, batch.clean_answer_ids, batch.corrupted_answer_ids


@pytest.mark.parametrize("rule", IG_RULES)
def test_conductance_follows_each_rule(rule):
    """One point: EAP at that point; chunking leaves it as it is; the model is left as found."""
    model, batch = tiny_model(), random_pairs(batch=3)
    torch.testing.assert_close(conductance_scores(model, batch, "logit_diff", steps=1, ig_rule=rule),
                               node_scores(model, batch, "logit_diff", steps=1, ig_rule=rule), rtol=1e-5, atol=1e-9)
    before = snapshot(model)
    whole = conductance_scores(model, batch, "logit_diff", steps=5, ig_rule=rule)
    assert_unchanged(model, before)
    for chunk in (1, 2, 3):
        torch.testing.assert_close(conductance_scores(model, batch, "logit_diff", steps=5, chunk_size=chunk, ig_rule=rule),
                                   whole, rtol=1e-5, atol=1e-7)


def test_conductance_converges_at_each_rules_order(float64_norms):
    model, batch = tiny_model(init=0.05), random_pairs(batch=3)
    reference = conductance_scores(model, batch, "logit_diff", steps=100, ig_rule="midpoint")
    error = {(rule, steps): ((conductance_scores(model, batch, "logit_diff", steps=steps, ig_rule=rule) - reference).norm()
                             / reference.norm()).item() for rule in IG_RULES for steps in (8, 16)}
    print({key: f"{value:.2e}" for key, value in error.items()})
    for rule, (low, high) in {"right": (0.4, 0.6), "left": (0.4, 0.6), "midpoint": (0.2, 0.3)}.items():
        assert low < error[rule, 16] / error[rule, 8] < high


@pytest.mark.parametrize("rule", IG_RULES)
def test_scoring_leaves_the_model_as_found(rule):
    model, batch = tiny_model(), random_pairs(batch=2)
    model.train()
    before = snapshot(model)
    node_scores(model, batch, "kl", steps=3, ig_rule=rule)
    edge_scores(model, batch, "kl", steps=2, ig_rule=rule)
    assert_unchanged(model, before)


def test_the_setting_reaches_the_tracker_and_the_cli():
    assert TrackerConfig().ig_rule == IG_RULE
    assert TrackerConfig(ig_rule="left").ig_rule == "left"
    with pytest.raises(ValueError, match="^tracker.ig_rule: unknown ig_rule 'leftmost'"):
        TrackerConfig(ig_rule="leftmost")
    assert "ig_rule" in LINEAGE_SETTINGS
    args = parser().parse_args(["score", "--model", "m", "--pairs", "p", "--out", "o", "--ig-rule", "midpoint"])
    assert args.ig_rule == "midpoint"
    assert parser().parse_args(["score", "--model", "m", "--pairs", "p", "--out", "o"]).ig_rule == IG_RULE
