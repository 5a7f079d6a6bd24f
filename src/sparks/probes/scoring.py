"""Scoring a pair set with a chosen method, batch by batch, and summarising it per head.

Methods: ``eap`` and ``eap-ig`` (attribution, probes.attribution / probes.edges), ``ceap``
(conductance, probes.conductance; node level) and ``exact`` (activation patching,
probes.patching); levels: ``node`` (one score per head) and ``edge``.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from sparks.probes.attribution import node_scores
from sparks.probes.conductance import conductance_scores
from sparks.probes.edges import EdgeGraph, edge_scores, graph_of_sites
from sparks.probes.ig import CHUNK_SIZES, IG_RULE, IG_RULES
from sparks.probes.pairs import Pair, batches
from sparks.probes.patching import exact_edge_effects, exact_head_effects
from sparks.probes.sites import resolve

METHODS = ("eap", "eap-ig", "ceap", "exact")
LEVELS = ("node", "edge")


def score_pairs(
    model: nn.Module,
    pairs: Sequence[Pair],
    *,
    method: str = "eap-ig",
    level: str = "node",
    metric: str = "kl",
    steps: int = 5,
    ig_rule: str = IG_RULE,
    batch_size: int = 16,
    chunk_size: int | None = None,
    heads: Sequence[tuple[int, int]] | None = None,
    pad_id: int = 0,
    progress: bool = True,
) -> dict[str, Tensor]:
    """Per-pair scores, concatenated over batches.

    Node level: ``heads`` [N, L, H]. Edge level: ``edges`` [N, U, D] and, for the attribution
    methods, ``nodes`` [N, U]. ``heads`` (the argument) limits exact node patching to those heads.
    ``chunk_size`` IG points run per pass; unset, the level's default (probes.ig.CHUNK_SIZES).
    ``ig_rule`` places the ``steps`` points of eap-ig and ceap (probes.ig).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; choose from {LEVELS}")
    if ig_rule not in IG_RULES:
        raise ValueError(f"unknown ig_rule {ig_rule!r}; choose from {IG_RULES}")
    if method == "ceap" and level == "edge":
        raise ValueError("ceap (conductance) scores heads at node level only; use eap-ig for edges")
    if heads is not None and (method, level) != ("exact", "node"):
        raise ValueError("a list of heads only applies to exact node patching (--method exact --level node)")
    sites = resolve(model)
    sites.check_level(level)
    if sites.architecture.routed and method in ("eap-ig", "ceap"):
        warn_routed(sites.model_type)
    for layer, head in heads or ():
        sites.check_head(layer, head)
    vocab = cast(int, sites.embed_tokens.num_embeddings)  # an embedding, or an adapter (LoRA) around one
    largest = max(max(pair.clean_ids + pair.corrupted_ids) for pair in pairs)
    if largest >= vocab:
        raise ValueError(f"the pairs use token id {largest} but the model's vocabulary has {vocab} tokens")
    device = next(model.parameters()).device
    chunk_size = CHUNK_SIZES[level] if chunk_size is None else chunk_size
    parts: dict[str, list[Tensor]] = {}
    total = math.ceil(len(pairs) / batch_size)
    for batch in tqdm(batches(pairs, pad_id, batch_size), total=total, desc="scoring", unit="batch", disable=not progress):
        batch = batch.to(device)
        if level == "node" and method == "exact":
            result = {"heads": exact_head_effects(model, batch, metric, heads=heads)}
        elif method == "ceap":
            result = {"heads": conductance_scores(model, batch, metric, steps, chunk_size, ig_rule=ig_rule)}
        elif level == "node":
            result = {"heads": node_scores(model, batch, metric, method, steps, chunk_size, ig_rule=ig_rule)}
        elif method == "exact":
            result = {"edges": exact_edge_effects(model, batch, metric)}
        else:
            scores = edge_scores(model, batch, metric, method, steps, chunk_size, ig_rule=ig_rule)
            result = {"edges": scores.edges, "nodes": scores.nodes}
        for name, value in result.items():
            parts.setdefault(name, []).append(value.detach().cpu())
    return {name: torch.cat(values) for name, values in parts.items()}


@functools.cache
def warn_routed(model_type: str) -> None:
    """Say once per family that its routed MLPs put IG's scores a few percent off exact patching."""
    warnings.warn(
        f"{model_type} routes tokens to top-k experts: routing jumps along the IG path, so EAP-IG scores differ "
        "from exact patching by a few percent even with many points (measured in docs/method.md, 'Routed MLPs')",
        stacklevel=3,
    )


def graph_of(model: nn.Module) -> EdgeGraph:
    """The edge graph of ``model``'s head layout."""
    return graph_of_sites(resolve(model))
