"""Node scores per attention head by attribution patching (EAP) or EAP-IG on the live model.

A head's output z is its slice of the input of the attention output projection (probes.sites). With the gate
``z + g (z_corrupted - z)``, dL/dg at g = 0 is ``(z_corrupted - z) . dL/dz``; summed over positions
and averaged over the interpolation points (see probes.ig) that is the head's score.

Sign: L is an effect metric (probes.metrics, 0 on the clean run, larger = more effect), so a score
estimates ``L(clean run with the head's output replaced by its corrupted output)``, which is exactly
what probes.patching.exact_head_effects measures. Note the gradient of ``kl`` vanishes at the clean
input, so ``eap`` (one gradient there) scores 0 under it; use ``eap-ig`` or a logit metric.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sparks.probes.forward import recorded_run
from sparks.probes.hooks import scoring
from sparks.probes.ig import IG_RULE, ig_points, integrate
from sparks.probes.metrics import Metric, get_metric
from sparks.probes.pairs import PairBatch
from sparks.probes.sites import Sites, resolve


def head_outputs(sites: Sites, values: dict[str, Tensor], batch: PairBatch) -> list[Tensor]:
    """Per layer the recorded o_proj inputs as [B, T, H, d_head], zeroed at padding."""
    mask = batch.attention_mask[:, :, None, None].to(values["z0"].dtype)
    batch_size, length = batch.clean_ids.shape
    return [
        values[f"z{layer}"].view(batch_size, length, sites.num_heads, layer_sites.head_dim) * mask
        for layer, layer_sites in enumerate(sites.layers)
    ]


def node_scores(
    model: nn.Module,
    batch: PairBatch,
    metric: str | Metric = "kl",
    method: str = "eap-ig",
    steps: int = 5,
    chunk_size: int | None = None,
    ig_rule: str = IG_RULE,
) -> Tensor:
    """Per-example head scores [B, L, H] (see the module docstring for the sign).

    ``steps`` interpolation points for ``eap-ig``, placed by ``ig_rule`` (probes.ig), are run
    ``chunk_size`` at a time stacked in the batch dimension (default: all at once). The model is
    left exactly as found.
    """
    sites = resolve(model)
    metric = get_metric(metric)
    points = ig_points(method, steps, ig_rule)
    taps = {f"z{layer}": (layer_sites.o_proj, "input") for layer, layer_sites in enumerate(sites.layers)}
    batch_size, length = batch.clean_ids.shape
    deltas: list[Tensor] = []
    with scoring(sites.model, grad=True):
        with torch.no_grad():
            corrupted = head_outputs(sites, recorded_run(sites, batch, batch.corrupted_ids, taps)[1], batch)
        dtype = torch.promote_types(corrupted[0].dtype, torch.float32)
        grad_sums = [torch.zeros_like(z, dtype=dtype) for z in corrupted]

        def start(clean: dict[str, Tensor]) -> None:
            changed = batch.changed[:, :, None, None].to(corrupted[0].dtype)
            deltas.extend((zc - z) * changed for zc, z in zip(corrupted, head_outputs(sites, clean, batch)))
            corrupted.clear()

        def reduce(values: dict[str, Tensor], grads: dict[str, Tensor], n: int) -> None:
            for layer, grad_sum in enumerate(grad_sums):
                grad = grads.pop(f"z{layer}").view(n, *grad_sum.shape)
                grad_sum += grad.sum(0)

        integrate(sites, batch, metric, points, chunk_size, taps, list(taps), start, reduce)
        scores = [(delta.to(dtype) * grad_sum).sum((1, 3)) for delta, grad_sum in zip(deltas, grad_sums)]
    return torch.stack(scores, dim=1) / len(points)
