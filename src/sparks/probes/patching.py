"""Exact head and edge patching (the ground truth for attribution) and head interventions.

Head patching and interventions act on a head's slice of the input of the attention output projection, edge
patching on one downstream input (see exact_edge_effects), all through temporary hooks; no weight
is touched, and leaving a context manager removes its hooks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from sparks.probes.attribution import head_outputs
from sparks.probes.edges import exact_head_writes, graph_of_sites, mlp_read_site, write_deltas, write_taps
from sparks.probes.forward import copies_effect, recorded_run, repeat_rows
from sparks.probes.hooks import Hooks, Recorder, scoring
from sparks.probes.metrics import Metric, get_metric
from sparks.probes.pairs import PairBatch
from sparks.probes.sites import Sites, resolve


def exact_head_effects(
    model: nn.Module,
    batch: PairBatch,
    metric: str | Metric = "kl",
    replacement: Sequence[Tensor] | None = None,
    chunk_size: int | None = None,
    heads: Sequence[tuple[int, int]] | None = None,
) -> Tensor:
    """Per-example effect [B, L, H] of replacing one head's output in the clean run.

    The head's output becomes ``replacement[layer]`` (broadcastable to [B, T, H, d_head]; default:
    the head's output on the corrupted prompt), all else is left clean, and the effect metric is
    read against the clean logits: the quantity probes.attribution estimates. ``chunk_size`` heads
    are patched per forward pass, each in its own copy of the batch (default: one layer's worth).
    ``heads`` limits patching to those (layer, head)s; the others read NaN.
    """
    sites = resolve(model)
    metric = get_metric(metric)
    num_heads = sites.num_heads
    batch_size, length = batch.clean_ids.shape
    taps = {f"z{layer}": (layer_sites.o_proj, "input") for layer, layer_sites in enumerate(sites.layers)}
    chunk = num_heads if chunk_size is None else chunk_size
    if chunk < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if heads is None:
        heads = [(layer, head) for layer in range(sites.num_layers) for head in range(num_heads)]
    for layer, head in heads:
        sites.check_head(layer, head)
    with scoring(sites.model, grad=False):
        clean_logits, _ = recorded_run(sites, batch, batch.clean_ids, taps)
        if replacement is None:
            replacement = head_outputs(sites, recorded_run(sites, batch, batch.corrupted_ids, taps)[1], batch)
        if len(replacement) != sites.num_layers:
            raise ValueError(f"replacement has {len(replacement)} entries for {sites.num_layers} layers")
        dtype = torch.promote_types(clean_logits.dtype, torch.float32)
        effects = torch.full((batch_size, sites.num_layers, num_heads), float("nan"), dtype=dtype, device=clean_logits.device)
        for start in range(0, len(heads), chunk):
            part = heads[start : start + chunk]
            n = len(part)

            def patch(layer: int, part: Sequence[tuple[int, int]]) -> Callable[[Tensor], Tensor]:
                n = len(part)
                chosen = torch.zeros(n, num_heads, dtype=torch.bool, device="cpu")
                for copy, (patched_layer, head) in enumerate(part):
                    chosen[copy, head] = patched_layer == layer
                chosen = chosen.to(batch.clean_ids.device)[:, None, None, :, None]

                def edit(x: Tensor) -> Tensor:
                    z = x.view(n, batch_size, length, num_heads, -1)
                    return torch.where(chosen, replacement[layer].to(z), z).view_as(x)

                return edit

            with Hooks() as hooks:
                for layer in sorted({layer for layer, _ in part}):
                    hooks.edit_input(sites.layers[layer].o_proj, patch(layer, part))
                ids = repeat_rows(batch.clean_ids, n)
                effect = copies_effect(sites, batch, metric, clean_logits, n, input_ids=ids).view(n, batch_size)
            for copy, (layer, head) in enumerate(part):
                effects[:, layer, head] = effect[copy]
    return effects


_HEAD_INPUT = re.compile(r"a(\d+)\.[hg](\d+)<([qkv])>")


def _deliver(hooks: Hooks, sites: Sites, destination: str, delta: Tensor) -> None:
    """Add ``delta`` [N, T, D] to the residual stream as the downstream input ``destination`` alone reads it.

    A q/k/v input is one head's (or kv head's) slice of its projection (of a fused one's part),
    recomputed from the layer's attention norm at the shifted residual; a parallel block's MLP reads
    that norm at the shifted residual too; the others read the clean residual.
    """
    if destination == "logits":
        hooks.edit_input(sites.norm, lambda x: x + delta.to(x))
        return
    if destination.startswith("m"):
        ls = sites.layers[int(destination[1:])]
        if not sites.architecture.parallel:
            hooks.edit_input(mlp_read_site(sites, ls), lambda x: x + delta.to(x))
            return
        norm = ls.attention_norm
        if norm is None:
            raise ValueError(f"{sites.model_type}: a parallel block without an attention norm is not in the table")
        attention_norm: nn.Module = norm
        residual = Recorder(hooks, {"x": (attention_norm, "input")})
        hooks.edit_input(ls.mlp, lambda normed: attention_norm.forward(residual.values["x"] + delta.to(normed)))
        return
    match = _HEAD_INPUT.fullmatch(destination)
    if match is None:
        raise ValueError(f"{destination!r} is not a node of the edge graph")
    layer, index, kind = match.groups()
    ls = sites.layers[int(layer)]
    read = ls.read(kind)
    first = read.rows.start + int(index) * sites.head_dim
    span = slice(first, first + sites.head_dim)
    norm = ls.attention_norm
    recorder = Recorder(hooks, {"x": (read.proj if norm is None else norm, "input")})

    def edit(output: Tensor) -> Tensor:
        x = recorder.values["x"]
        shifted = x + delta.to(x)
        shifted = read.proj.forward(shifted if norm is None else norm.forward(shifted))
        output = output.clone()
        output[..., span] = shifted[..., span]
        return output

    hooks.edit_output(read.proj, edit)


def exact_edge_effects(
    model: nn.Module, batch: PairBatch, metric: str | Metric = "kl", chunk_size: int | None = None, scale: float = 1.0
) -> Tensor:
    """Per-example effect [B, U, D] of patching one edge u -> v at a time (zero where not ``valid``).

    The clean run, except that v's input alone reads the residual stream plus u's write difference
    (corrupted minus clean, from separate clean and corrupted runs: for a head behind an attention
    output norm, the change of the normed output when that head alone is corrupted); the effect
    metric is read against the clean logits. The upstream nodes of one downstream input are patched
    ``chunk_size`` per forward pass (default: all), each in its own copy of the batch: one pass per
    downstream input, so this is for small models (tests, faithfulness reports). ``scale`` multiplies
    the heads' output differences and the other writes before they are delivered: a finite difference
    over it is what EAP's gradient at the clean input estimates.
    """
    sites = resolve(model)
    sites.check_level("edge")
    metric = get_metric(metric)
    graph = graph_of_sites(sites)
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    batch_size = batch.batch_size
    with scoring(sites.model, grad=False):
        clean_logits, clean = recorded_run(sites, batch, batch.clean_ids, write_taps(sites))
        _, corrupted = recorded_run(sites, batch, batch.corrupted_ids, write_taps(sites))
        dtype = torch.promote_types(clean_logits.dtype, torch.float32)
        writes = exact_head_writes(sites, write_deltas(sites, batch, clean, corrupted, dtype)[0] * scale, clean)
        effects = torch.zeros(batch_size, len(graph.upstream), len(graph.downstream), dtype=dtype, device=clean_logits.device)
        for column, destination in enumerate(graph.downstream):
            sources = graph.valid[:, column].nonzero().squeeze(1).tolist()
            chunk = chunk_size or len(sources)
            for start in range(0, len(sources), chunk):
                part = sources[start : start + chunk]
                n = len(part)
                with Hooks() as hooks:
                    _deliver(hooks, sites, destination, writes[:, part].transpose(0, 1).flatten(0, 1))
                    ids = repeat_rows(batch.clean_ids, n)
                    effect = copies_effect(sites, batch, metric, clean_logits, n, input_ids=ids)
                effects[:, part, column] = effect.view(n, batch_size).T.to(dtype)
    return effects


def head_means(model: nn.Module, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    """Mean output [L, H, d_head] of every head over the non-padding positions, for mean ablation.

    ValueError where head sizes differ between layers (no [L, H, d_head] tensor holds them)."""
    sites = resolve(model)
    sites.head_dim  # noqa: B018 - raises where layers differ
    taps = {f"z{layer}": (layer_sites.o_proj, "input") for layer, layer_sites in enumerate(sites.layers)}
    batch = PairBatch(input_ids, input_ids, attention_mask, torch.full_like(input_ids[:, 0], input_ids.shape[1] - 1))
    with scoring(sites.model, grad=False):
        _, values = recorded_run(sites, batch, input_ids, taps)
    outputs = torch.stack(head_outputs(sites, values, batch))  # [L, B, T, H, d]
    return outputs.sum((1, 2)) / attention_mask.sum()


@contextmanager
def edit_heads(
    model: nn.Module, heads: Iterable[tuple[int, int]], edit: Callable[[int, Tensor], Tensor]
) -> Iterator[None]:
    """While active, each listed head's output z [..., d_head] becomes ``edit(layer, z)[..., head]``.

    ``edit`` receives the layer's outputs as [..., H, d_head] and the result is used for the listed
    heads only; other heads pass through bit-exactly.
    """
    sites = resolve(model)
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        sites.check_head(layer, head)
        by_layer.setdefault(layer, []).append(head)

    def hook(layer: int, chosen: list[int]) -> Callable[[Tensor], Tensor]:
        mask = torch.zeros(sites.num_heads, 1, dtype=torch.bool, device="cpu")
        mask[chosen] = True

        def apply(x: Tensor) -> Tensor:
            z = x.unflatten(-1, (sites.num_heads, -1))
            return torch.where(mask.to(x.device), edit(layer, z).to(x.dtype), z).flatten(-2)

        return apply

    with Hooks() as hooks:
        for layer, chosen in by_layer.items():
            hooks.edit_input(sites.layers[layer].o_proj, hook(layer, chosen))
        yield


def zero_ablate(model: nn.Module, heads: Iterable[tuple[int, int]]):
    """Context manager: the listed heads write nothing."""
    return edit_heads(model, heads, lambda layer, z: torch.zeros_like(z))


def mean_ablate(model: nn.Module, heads: Iterable[tuple[int, int]], means: Tensor):
    """Context manager: the listed heads output their mean ``means[layer, head]`` (see head_means)."""
    sites = resolve(model)
    expected = (sites.num_layers, sites.num_heads, sites.head_dim)
    if tuple(means.shape) != expected:
        raise ValueError(f"means has shape {tuple(means.shape)}, expected {expected} (layers, heads, head_dim)")
    return edit_heads(model, heads, lambda layer, z: means[layer].to(z.device).expand_as(z))


def scale_heads(model: nn.Module, heads: Iterable[tuple[int, int]], factor: float):
    """Context manager: the listed heads' outputs are multiplied by ``factor`` (paper: 1.3, 0.5)."""
    return edit_heads(model, heads, lambda layer, z: z * factor)
