"""Integrated gradients over the input embeddings ("EAP-IG-inputs"), points stacked in the batch.

The paper's rule: average the metric's gradient over x' + (k/m)(x - x') for k = 1..m, x the clean
and x' the corrupted input embeddings. m = 1 is the clean input itself, i.e. plain attribution
patching (EAP). (hannamw/EAP-IG's code sums k = 0..m-1 instead, starting at the corrupted input.)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from probes.forward import copies_effect
from probes.hooks import Hooks, Recorder
from probes.metrics import Metric
from probes.pairs import PairBatch
from probes.sites import Sites

METHODS = ("eap", "eap-ig")

Reduce = Callable[[dict[str, Tensor], dict[str, Tensor], int], None]
"""(recorded activations, their metric gradients, number of points n) for rows [n * B, ...]."""


def method_steps(method: str, steps: int) -> int:
    """Number of interpolation points a method uses: 1 for ``eap``, ``steps`` for ``eap-ig``."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return 1 if method == "eap" else steps


def integrate(
    sites: Sites,
    batch: PairBatch,
    metric: Metric,
    clean_logits: Tensor,
    steps: int,
    chunk_size: int | None,
    taps: dict[str, tuple],
    wrt: list[str],
    reduce: Reduce,
) -> None:
    """Run the interpolation points ``chunk_size`` at a time and hand each chunk to ``reduce``.

    ``wrt`` names taps (or ``"inputs_embeds"``) whose gradients of the summed per-example metric
    are wanted; gradients are taken with autograd.grad, so no parameter's .grad is touched.
    """
    chunk = steps if chunk_size is None else chunk_size
    if chunk < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    with torch.no_grad():
        clean = sites.embed_tokens(batch.clean_ids)
        corrupted = sites.embed_tokens(batch.corrupted_ids)
    alphas = torch.arange(1, steps + 1, dtype=torch.float64) / steps
    for start in range(0, steps, chunk):
        weights = alphas[start : start + chunk].to(clean.dtype).to(clean.device)
        n = len(weights)
        embeds = torch.lerp(corrupted.unsqueeze(0), clean.unsqueeze(0), weights.view(n, 1, 1, 1))
        embeds = embeds.flatten(0, 1).requires_grad_()

        with Hooks() as hooks:
            recorder = Recorder(hooks, taps)
            loss = copies_effect(sites, batch, metric, clean_logits, n, inputs_embeds=embeds).sum()
        values = {**recorder.values, "inputs_embeds": embeds}
        grads = torch.autograd.grad(loss, [values[name] for name in wrt], materialize_grads=True)
        reduce(
            {name: value.detach() for name, value in values.items()},
            dict(zip(wrt, grads)),
            n,
        )
