"""The IG points are the exact weights whatever the model's dtype (probes.ig.integrate).

Integrated gradients runs the model at x' + a (x - x'), a = (k - 1/2)/m by default. Cast to bf16
the weights themselves are rounded (at m = 5 the midpoints 0.1, 0.3, 0.7, 0.9 become 0.1001,
0.3008, 0.6992, 0.8984), a path error on top of the model's own rounding. ``integrate`` interpolates
in at least float32 and rounds the result once to the model's dtype: its inputs are then the exact
(float64) lerp rounded once, up to the float32 lerp's own last bit.
"""

from __future__ import annotations

import pytest
import torch

import sparks.probes.ig as ig
from sparks.probes.attribution import node_scores
from sparks.probes.gather import token_embeddings
from sparks.probes.ig import ig_points
from sparks.probes.sites import resolve
from tests.probes.tiny_models import random_pairs, tiny_model

pytestmark = pytest.mark.usefixtures("on_device")  # every device present (conftest.DEVICES)


def _interpolated(model, batch, monkeypatch, steps: int, rule: str) -> torch.Tensor:
    """The inputs_embeds [m * B, T, D] that node scoring runs the model on (all points in one pass)."""
    seen: list[torch.Tensor] = []
    copies_logits = ig.copies_logits

    def recording(sites, batch, n, *, input_ids=None, inputs_embeds=None):
        if inputs_embeds is not None and inputs_embeds.requires_grad:  # the IG points, not the clean pass
            seen.append(inputs_embeds.detach().clone())
        return copies_logits(sites, batch, n, input_ids=input_ids, inputs_embeds=inputs_embeds)

    monkeypatch.setattr(ig, "copies_logits", recording)
    node_scores(model, batch, "kl", "eap-ig", steps, chunk_size=None, ig_rule=rule)
    assert len(seen) == 1
    return seen[0]


def _spacing(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The distance from each of ``values`` (of ``dtype``) to the next one of ``dtype`` away from zero (its ulp)."""
    info = torch.finfo(dtype)
    _, exponent = torch.frexp(values.double())
    return torch.where(values == 0, info.tiny * info.eps, (info.eps * torch.pow(2.0, exponent - 1.0)).clamp_min(info.tiny * info.eps))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("rule", ["midpoint", "right"])
def test_points_are_the_exact_lerp_rounded_once(dtype, rule, monkeypatch):
    """Each entry is the float64 lerp rounded once to the model's dtype: within half an ulp of it.

    Up to the float32 lerp's own error, a few 2^-24 of the operands (it matters where the lerp
    cancels to about 0; and ties, where the exact value lies halfway between two bf16 numbers, may
    go either way). Weights rounded to bf16 or fp16 break the bound on about a tenth of the entries.
    """
    model, batch, steps = tiny_model(layers=1, dtype=dtype), random_pairs(batch=4, length=12, changed=6), 5
    sites = resolve(model)
    clean, corrupted = token_embeddings(model, sites.embed_tokens, batch.clean_ids, batch.corrupted_ids)
    weights = ig_points("eap-ig", steps, rule).to(clean.device)
    exact = torch.lerp(corrupted.double()[None], clean.double()[None], weights.view(-1, 1, 1, 1)).flatten(0, 1)
    operands = (corrupted.double().abs() + clean.double().abs()).repeat(steps, 1, 1)
    seen = _interpolated(model, batch, monkeypatch, steps, rule)
    assert seen.dtype == dtype
    error = (seen.double() - exact).abs()
    bound = 0.5 * _spacing(seen, dtype) + 4 * 2.0**-24 * operands
    outside = error > bound
    assert not outside.any(), f"{int(outside.sum())} of {outside.numel()} entries are not the exact lerp rounded once"
    assert (seen != exact.to(dtype)).double().mean() <= 0.01  # and almost all are exactly that rounding (ties aside)


def test_points_keep_float64_in_a_float64_model(monkeypatch):
    """A float64 model's points are the float64 lerp itself (the promotion never lowers the precision)."""
    model, batch, steps = tiny_model(layers=1), random_pairs(batch=3), 5
    sites = resolve(model)
    clean, corrupted = token_embeddings(model, sites.embed_tokens, batch.clean_ids, batch.corrupted_ids)
    weights = ig_points("eap-ig", steps, "midpoint").to(clean.device)
    expected = torch.lerp(corrupted[None], clean[None], weights.view(-1, 1, 1, 1)).flatten(0, 1)
    seen = _interpolated(model, batch, monkeypatch, steps, "midpoint")
    assert seen.dtype == torch.float64
    torch.testing.assert_close(seen, expected, rtol=0, atol=0)
