"""Integrated gradients over the input embeddings ("EAP-IG-inputs"), points stacked in the batch.

The paper's rule: average the metric's gradient over x' + (k/m)(x - x') for k = 1..m, x the clean
and x' the corrupted input embeddings. m = 1 is the clean input itself, i.e. plain attribution
patching (EAP). (hannamw/EAP-IG's code sums k = 0..m-1 instead, starting at the corrupted input.)

The point k = m is the clean run, so it is run first and serves as the clean run too: its logits
are the clean logits the metric compares against, its recorded activations the clean ones. That
saves the separate clean forward pass.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from sparks.probes.forward import copies_logits, copies_metric
from sparks.probes.hooks import Hooks, Recorder
from sparks.probes.metrics import Metric
from sparks.probes.pairs import PairBatch
from sparks.probes.sites import Sites

METHODS = ("eap", "eap-ig")

Start = Callable[[dict[str, Tensor]], None]
"""Receives the clean run's recorded activations [B, ...], detached, before any Reduce call."""

Reduce = Callable[[dict[str, Tensor], dict[str, Tensor], int], None]
"""(recorded activations that are not differentiated, the metric's gradients, number of points n),
rows [n * B, ...]. It may pop entries to free them early."""


def method_steps(method: str, steps: int) -> int:
    """Number of interpolation points a method uses: 1 for ``eap``, ``steps`` for ``eap-ig``."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return 1 if method == "eap" else steps


CHUNK_SIZES: dict[str, int | None] = {"node": None, "edge": 1}
"""Interpolation points per pass by level, the one place the defaults live: all of them at node
level, where a point's activations are small; one at edge level, where k stacked points would hold
k graphs of per-position gradients at once (about 3x the memory of one; BENCHMARKS.md)."""


def integrate(
    sites: Sites,
    batch: PairBatch,
    metric: Metric,
    steps: int,
    chunk_size: int | None,
    taps: dict[str, tuple],
    wrt: list[str],
    start: Start,
    reduce: Reduce,
    keep: list[str] | None = None,
) -> None:
    """Run the interpolation points ``chunk_size`` at a time and hand each chunk to ``reduce``.

    The chunk holding the clean point (the last) runs first; ``start`` gets its recorded ``taps``.
    ``wrt`` names taps (or ``"inputs_embeds"``) whose gradients of the summed per-example metric
    are wanted; gradients are taken with autograd.grad, so no parameter's .grad is touched. The
    recorded values of ``wrt`` taps reach ``reduce`` only when named in ``keep`` (they cost memory).
    """
    chunk = steps if chunk_size is None else chunk_size
    if chunk < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    batch_size = batch.batch_size
    with torch.no_grad():
        clean = sites.embed_tokens(batch.clean_ids)
        corrupted = sites.embed_tokens(batch.corrupted_ids)
    alphas = torch.arange(1, steps + 1, dtype=torch.float64, device="cpu") / steps  # float64 is not on every device
    clean_logits = None
    for end in range(steps, 0, -chunk):
        weights = alphas[max(end - chunk, 0) : end].to(clean.dtype).to(clean.device)
        n = len(weights)
        embeds = torch.lerp(corrupted.unsqueeze(0), clean.unsqueeze(0), weights.view(n, 1, 1, 1))
        embeds = embeds.flatten(0, 1).requires_grad_()
        with Hooks() as hooks:
            recorder = Recorder(hooks, taps)
            logits = copies_logits(sites, batch, n, inputs_embeds=embeds)
        if clean_logits is None:
            clean_logits = logits[-batch_size:].detach()
            start({name: value[-batch_size:].detach() for name, value in recorder.values.items()})
        loss = copies_metric(batch, metric, logits, clean_logits, n).sum()
        values = {**recorder.values, "inputs_embeds": embeds}
        grads = dict(zip(wrt, torch.autograd.grad(loss, [values[name] for name in wrt], materialize_grads=True)))
        del logits, loss, recorder
        kept = {name: value.detach() for name, value in values.items() if name not in wrt or name in (keep or ())}
        del values, embeds
        reduce(kept, grads, n)
        del kept, grads
