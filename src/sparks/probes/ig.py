"""Integrated gradients over the input embeddings ("EAP-IG-inputs"), points stacked in the batch.

The metric's gradient is averaged over the points x' + a (x - x'), x the clean and x' the corrupted
input embeddings, with a = k/m for one of three rules (``ig_rule``), k = 1..m:

- ``right``: a = k/m, the paper's formula (and hannamw/EAP-IG's node-level ``attribute_node``); its
  last point is the clean input;
- ``left``: a = (k-1)/m, hannamw/EAP-IG's edge-level ``attribute(..., method='EAP-IG-inputs')``;
  its first point is the corrupted input;
- ``midpoint``: a = (k-1/2)/m, the midpoint rule, whose error falls as 1/m^2 instead of 1/m.

Under ``right`` the clean point is run first and serves as the clean run too: its logits are the
clean logits the metric compares against, its recorded activations the clean ones, which saves a
forward pass. The other rules run a separate no-grad clean forward for them. ``eap`` is one point
at the clean input (plain attribution patching) whatever the rule.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from sparks.probes.forward import copies_logits, copies_metric
from sparks.probes.gather import token_embeddings
from sparks.probes.hooks import Hooks, Recorder
from sparks.probes.metrics import Metric
from sparks.probes.pairs import PairBatch
from sparks.probes.sites import Sites

GRADIENT_METHODS = ("eap", "eap-ig")
"""The attribution methods that read gradients at points of ig_points (scoring.METHODS holds every method)."""
IG_RULES = ("right", "left", "midpoint")
IG_RULE = "midpoint"
"""The default rule, the one place it is set: at 5 points the closest of the three to the 100-step
integral on the trained tiny base model and on a 28-layer random one (BENCHMARKS.md, bench/ig_rules.py)."""

Start = Callable[[dict[str, Tensor]], None]
"""Receives the clean run's recorded activations [B, ...], detached, before any Reduce call."""

Reduce = Callable[[dict[str, Tensor], dict[str, Tensor], int], None]
"""(recorded activations that are not differentiated, the metric's gradients, number of points n),
rows [n * B, ...]. It may pop entries to free them early."""


def ig_points(method: str, steps: int, ig_rule: str = IG_RULE) -> Tensor:
    """The interpolation weights a (0: the corrupted input, 1: the clean one), float64 on the CPU.

    One point at the clean input for ``eap`` whatever the rule; ``steps`` by ``ig_rule`` for ``eap-ig``.
    """
    if method not in GRADIENT_METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {GRADIENT_METHODS}")
    if ig_rule not in IG_RULES:
        raise ValueError(f"unknown ig_rule {ig_rule!r}; choose from {IG_RULES}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if method == "eap":
        return torch.ones(1, dtype=torch.float64, device="cpu")
    offset = {"right": 0.0, "left": 1.0, "midpoint": 0.5}[ig_rule]
    counts = torch.arange(1, steps + 1, dtype=torch.float64, device="cpu")  # float64 is not on every device
    return (counts - offset) / steps


CHUNK_SIZES: dict[str, int | None] = {"node": None, "edge": 1}
"""Interpolation points per pass by level, the one place the defaults live: all of them at node
level, where a point's activations are small; one at edge level, where k stacked points would hold
k graphs of per-position gradients at once (about 3x the memory of one; BENCHMARKS.md)."""


def integrate(
    sites: Sites,
    batch: PairBatch,
    metric: Metric,
    points: Tensor,
    chunk_size: int | None,
    taps: dict[str, tuple],
    wrt: list[str],
    start: Start,
    reduce: Reduce,
    keep: list[str] | None = None,
) -> None:
    """Run the interpolation ``points`` (ascending, from ig_points) ``chunk_size`` at a time, each chunk to ``reduce``.

    Chunks run from the highest points down, each ascending. ``start`` gets the clean run's
    recorded ``taps`` before the first ``reduce``: those of the last point when it is the clean
    input (``right``), else of a separate no-grad clean forward. ``wrt`` names taps (or
    ``"inputs_embeds"``) whose gradients of the summed per-example metric are wanted; gradients are
    taken with autograd.grad, so no parameter's .grad is touched. The recorded values of ``wrt``
    taps reach ``reduce`` only when named in ``keep`` (they cost memory).
    """
    steps = len(points)
    chunk = steps if chunk_size is None else chunk_size
    if chunk < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    batch_size = batch.batch_size
    clean, corrupted = token_embeddings(sites.model, sites.embed_tokens, batch.clean_ids, batch.corrupted_ids)
    clean_logits = None
    if points[-1] != 1:
        with torch.no_grad(), Hooks() as hooks:
            recorder = Recorder(hooks, taps)
            clean_logits = copies_logits(sites, batch, 1, inputs_embeds=clean)
        start(recorder.values)
        del recorder
    # Interpolate in at least float32, rounding once to the model's dtype: weights cast to bf16 would
    # themselves be rounded (the midpoints 0.1, 0.3, 0.7, 0.9 to 0.1001, 0.3008, 0.6992, 0.8984),
    # moving every point off the path the rule places (tests/probes/test_ig_points.py).
    wide = torch.promote_types(clean.dtype, torch.float32)
    for end in range(steps, 0, -chunk):
        weights = points[max(end - chunk, 0) : end].to(wide).to(clean.device)
        n = len(weights)
        embeds = torch.lerp(corrupted.to(wide).unsqueeze(0), clean.to(wide).unsqueeze(0), weights.view(n, 1, 1, 1))
        embeds = embeds.to(clean.dtype).flatten(0, 1).requires_grad_()
        with Hooks() as hooks:
            recorder = Recorder(hooks, taps)
            logits = copies_logits(sites, batch, n, inputs_embeds=embeds)
        if clean_logits is None:
            clean_logits = logits[-batch_size:].detach()
            start({name: value.unflatten(0, (n, -1))[-1].detach() for name, value in recorder.values.items()})
        loss = copies_metric(batch, metric, logits, clean_logits, n).sum()
        values = {**recorder.values, "inputs_embeds": embeds}
        grads = dict(zip(wrt, torch.autograd.grad(loss, [values[name] for name in wrt], materialize_grads=True)))
        del logits, loss, recorder
        kept = {name: value.detach() for name, value in values.items() if name not in wrt or name in (keep or ())}
        del values, embeds
        reduce(kept, grads, n)
        del kept, grads
