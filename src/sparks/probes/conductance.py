"""Node scores per attention head by conductance (CEAP at node level) on the live model.

EAP-IG multiplies the whole write difference ``z' - z`` (corrupted minus clean) by the metric's
gradient averaged over the interpolation points. Conductance (Dhamdhere et al. 2018; CEAP in Wu,
Tonin, Cevher 2026, arXiv 2606.16920, which reports less resampling variance than EAP-IG at the
same cost) instead follows the head's output along the same path and weights each of its steps by
the gradient there:

    score(h) = sum_k dL/dz_h(a_k) . (z_h((k-1)/m) - z_h(k/m)),   a_k the k-th point (probes.ig)

so a head is credited with what its output actually did across the cell [(k-1)/m, k/m] that holds
the point a_k. The output at a cell edge is the run there (the corrupted run at 0, the clean run at
1, or a point of the rule: all edges for ``right`` and ``left``), or else the linear interpolation
between the two points around it (``midpoint``'s inner edges, halfway between two points), which
keeps the midpoint rule's 1/m^2 error. Same passes as EAP-IG; with one point it is EAP at that
point exactly. Sign and metric follow probes.attribution.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sparks.probes.attribution import head_outputs
from sparks.probes.forward import recorded_run
from sparks.probes.hooks import scoring
from sparks.probes.ig import IG_RULE, ig_points, integrate
from sparks.probes.metrics import Metric, get_metric
from sparks.probes.pairs import PairBatch
from sparks.probes.sites import resolve


def cell_weights(points: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per point k the weights of z at points k-1, k and k+1 in ``z(lower edge) - z(upper edge)`` of its cell.

    Point 0 stands for the corrupted run, point m+1 for the clean run (see the module docstring).
    """
    steps = len(points)
    nodes = torch.cat([points.new_zeros(1), points, points.new_ones(1)])
    edges = torch.arange(steps + 1, dtype=points.dtype, device=points.device) / steps
    below, above = nodes[1:-1] - nodes[:-2], nodes[2:] - nodes[1:-1]
    # A zero gap means the edge is the point itself (left's a = 0, right's a = 1): weight 0 on the neighbour.
    lower = (points - edges[:-1]) / torch.where(below > 0, below, 1.0)
    upper = (edges[1:] - points) / torch.where(above > 0, above, 1.0)
    return lower, upper - lower, -upper


def conductance_scores(
    model: nn.Module,
    batch: PairBatch,
    metric: str | Metric = "kl",
    steps: int = 5,
    chunk_size: int | None = None,
    ig_rule: str = IG_RULE,
) -> Tensor:
    """Per-example head conductance [B, L, H] at ``ig_rule``'s points; the model is left exactly as found.

    Points run ``chunk_size`` at a time (default: all), ascending within a chunk and the highest
    chunk first, so a chunk's lowest point waits for the output one point below it (in the next
    chunk, or the corrupted run's after the last), and its highest uses the one above it (kept
    from the previous chunk, or the clean run's).
    """
    sites = resolve(model)
    metric = get_metric(metric)
    points = ig_points("eap-ig", steps, ig_rule)  # the same points
    taps = {f"z{layer}": (layer_sites.o_proj, "input") for layer, layer_sites in enumerate(sites.layers)}
    batch_size, length = batch.clean_ids.shape
    mask = batch.attention_mask[None, :, :, None, None]
    with scoring(sites.model, grad=True):
        with torch.no_grad():
            corrupted = head_outputs(sites, recorded_run(sites, batch, batch.corrupted_ids, taps)[1], batch)
        dtype = torch.promote_types(corrupted[0].dtype, torch.float32)
        device = corrupted[0].device
        below, own, above = (weight.to(dtype).to(device) for weight in cell_weights(points))
        totals = [torch.zeros(batch_size, sites.num_heads, dtype=dtype, device=device) for _ in corrupted]
        waiting: list[Tensor | None] = [None] * sites.num_layers
        higher: list[Tensor] = []
        done = 0

        def start(clean: dict[str, Tensor]) -> None:
            higher.extend(z.to(dtype) for z in head_outputs(sites, clean, batch))

        def reduce(values: dict[str, Tensor], grads: dict[str, Tensor], n: int) -> None:
            nonlocal done
            low, high = steps - done - n, steps - done
            done += n
            for layer, total in enumerate(totals):
                shape = (batch_size, length, sites.num_heads, sites.layers[layer].head_dim)
                grad = grads.pop(f"z{layer}").view(n, *shape).to(dtype)
                z = (values.pop(f"z{layer}").view(n, *shape) * mask.to(grad.dtype)).to(dtype)
                total += torch.einsum("n,nbthk,nbthk->bh", own[low:high], grad, z)
                total += torch.einsum("n,nbthk,nbthk->bh", below[low + 1 : high], grad[1:], z[:-1])
                total += torch.einsum("n,nbthk,nbthk->bh", above[low : high - 1], grad[:-1], z[1:])
                total += above[high - 1] * torch.einsum("bthk,bthk->bh", grad[-1], higher[layer])
                if waiting[layer] is not None:
                    total += torch.einsum("bthk,bthk->bh", waiting[layer], z[-1])
                waiting[layer] = below[low] * grad[0]
                higher[layer] = z[0]

        integrate(sites, batch, metric, points, chunk_size, taps, list(taps), start, reduce, keep=list(taps))
        for layer, total in enumerate(totals):
            total += torch.einsum("bthk,bthk->bh", waiting[layer], corrupted[layer].to(dtype))
    return torch.stack(totals, dim=1)
