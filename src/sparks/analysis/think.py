"""One model's circuit with thinking on and off, compared head by head (docs/method.md, "Think on/off").

The same number-swap questions are scored in both thinking modes of the chat template
(probes.schemes.mode_pairs); pair i of both modes gets the same bootstrap weights, so replicate b of
the on-circuit and replicate b of the off-circuit are the same resampling of the same questions. Each
head of either reported circuit is *shared*, *on-only* or *off-only*, and the share of paired
replicates in which it falls in that category is its confidence. The verdict claims only what the
intervals support: dedicated thinking heads (confident on-only heads), and whether thinking off
recruits a broader, less efficient circuit (the paper's compensatory heads).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
import torch
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sparks.dashboards.plots import figure_pixels, head_heatmap, margined_figure
from sparks.probes.openings import continuation_ids
from sparks.probes.pairs import Pair
from sparks.probes.schemes import THINKING_MODES, mode_pairs
from sparks.probes.statistics import INTERVAL, SnapshotStats

CATEGORIES = ("shared", "on-only", "off-only")
CATEGORY_COLOURS = ("#f0f0f0", "#55a868", "#4c72b0", "#dd8452")  # outside both circuits, then CATEGORIES


def thinking_pairs(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    swaps: Sequence[dict[str, Any]],
    *,
    tokens: int,
    min_tokens: int,
    system_prompt: str | None,
    batch_size: int,
) -> dict[str, list[Pair]]:
    """Each swap's clean question continued greedily by ``model`` in both thinking modes, made into mode pairs."""
    questions = [swap["question"] for swap in swaps]
    continuations = {
        mode: continuation_ids(model, tokenizer, questions, tokens=tokens, system_prompt=system_prompt,
                               batch_size=batch_size, enable_thinking=switch)
        for mode, switch in THINKING_MODES.items()
    }
    return mode_pairs(tokenizer, swaps, continuations, system_prompt=system_prompt, min_tokens=min_tokens)


def category_masks(on: Tensor, off: Tensor) -> dict[str, Tensor]:
    """Each category's heads from membership in the on and off circuits ([L, H] bool, or [B, L, H] per replicate)."""
    return {"shared": on & off, "on-only": on & ~off, "off-only": ~on & off}


def members(heads: Sequence[tuple[int, int]], shape: tuple[int, int]) -> Tensor:
    """[L, H] bool: the given heads."""
    mask = torch.zeros(shape, dtype=torch.bool)
    for layer, head in heads:
        mask[layer, head] = True
    return mask


def interval(values: Tensor) -> list[float]:
    """The 2.5% and 97.5% points of replicate values (NaN replicates left out; NaN when all are)."""
    values = values.double()
    return torch.nanquantile(values, values.new_tensor(INTERVAL)).tolist()


def _estimate(value: float, replicates: Tensor) -> dict[str, Any]:
    return {"value": value, "interval": interval(replicates)}


def plain(value: Any) -> Any:
    """``value`` with every NaN float replaced by None, for strict JSON."""
    if isinstance(value, float):
        return None if value != value else value
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def _measured(stats: SnapshotStats) -> tuple[float, tuple[float, float]]:
    """A mode's circuit faithfulness and its interval."""
    assert stats.faithfulness is not None and stats.faithfulness_interval is not None, "score_circuit measures faithfulness"
    return stats.faithfulness, stats.faithfulness_interval


def compare_modes(
    stats: Mapping[str, SnapshotStats], replicate_faithfulness: Mapping[str, Tensor], confidence: float
) -> dict[str, Any]:
    """The head table, category counts, sizes, faithfulness and verdict of the on and off circuits.

    ``stats[mode]`` are a mode's statistics and ``replicate_faithfulness[mode]`` [B] its reported
    circuit's faithfulness under each replicate's weights; both modes' replicates must be paired
    (same questions, same order, same seed). Intervals are 95% over the paired replicates.
    """
    on, off = stats["on"], stats["off"]
    if on.replicates.shape != off.replicates.shape:
        raise ValueError(f"the modes' replicates differ in shape: {tuple(on.replicates.shape)} and {tuple(off.replicates.shape)}")
    shape = cast(tuple[int, int], tuple(on.importance.shape))  # importance is [L, H]
    reported = category_masks(members(on.circuit.heads, shape), members(off.circuit.heads, shape))
    paired = category_masks(on.replicates, off.replicates)
    share = {category: mask.double().mean(0) for category, mask in paired.items()}
    rows: list[dict[str, Any]] = []
    for category in CATEGORIES:
        for layer, head in reported[category].nonzero().tolist():
            row_confidence = float(share[category][layer, head])
            rows.append({
                "head": [layer, head],
                "category": category,
                "confidence": row_confidence,
                "confident": row_confidence >= confidence,
                "importance": {mode: float(stats[mode].importance[layer, head]) for mode in THINKING_MODES},
                "importance_interval": {mode: stats[mode].importance_interval[:, layer, head].tolist() for mode in THINKING_MODES},
                "membership": {mode: float(stats[mode].membership[layer, head]) for mode in THINKING_MODES},
            })
    rows.sort(key=lambda row: (CATEGORIES.index(row["category"]), -max(row["importance"].values())))
    counts = {
        category: {
            "raw": int(reported[category].sum()),
            "interval": interval(paired[category].flatten(1).sum(1).double()),
            "confident": sum(row["confident"] for row in rows if row["category"] == category),
        }
        for category in CATEGORIES
    }
    replicate_size = {mode: stats[mode].replicates.flatten(1).sum(1).double() for mode in THINKING_MODES}
    size = {mode: _estimate(len(stats[mode].circuit.heads), replicate_size[mode]) for mode in THINKING_MODES}
    size["difference"] = _estimate(len(off.circuit.heads) - len(on.circuit.heads), replicate_size["off"] - replicate_size["on"])
    measured = {mode: _measured(stats[mode]) for mode in THINKING_MODES}  # (faithfulness, its interval)
    faithful = {mode: {"value": value, "interval": list(span)} for mode, (value, span) in measured.items()}
    faithful["difference"] = _estimate(measured["off"][0] - measured["on"][0], replicate_faithfulness["off"] - replicate_faithfulness["on"])
    heads = {mode: len(stats[mode].circuit.heads) or math.nan for mode in THINKING_MODES}  # an empty circuit has no per-head figure
    per_head = {mode: replicate_faithfulness[mode] / heads[mode] for mode in THINKING_MODES}
    efficiency = {mode: _estimate(measured[mode][0] / heads[mode], per_head[mode]) for mode in THINKING_MODES}
    efficiency["difference"] = _estimate(efficiency["off"]["value"] - efficiency["on"]["value"], per_head["off"] - per_head["on"])
    comparison = {"confidence": confidence, "heads": rows, "counts": counts, "size": size,
                  "faithfulness": faithful, "efficiency": efficiency}
    comparison["verdict"] = verdict(comparison)
    return comparison


def _sign(low: float, high: float, *, yes_when_positive: bool) -> str:
    """yes / no / undecided from a difference's interval: yes when it excludes 0 on the claimed side."""
    if low != low or high != high:
        return "undecided (not measurable)"
    positive, negative = low > 0, high < 0
    if yes_when_positive:
        return "yes" if positive else "no" if high <= 0 else "undecided"
    return "yes" if negative else "no" if low >= 0 else "undecided"


def verdict(comparison: Mapping[str, Any]) -> list[str]:
    """Lines that claim only what the paired intervals support (docs/method.md, "Think on/off")."""

    def heads(category: str, name: str) -> str:
        confident = [f"{row['head'][0]}.{row['head'][1]}" for row in comparison["heads"]
                     if row["category"] == category and row["confident"]]
        raw = comparison["counts"][category]["raw"]
        listed = f"{len(confident)} confident ({', '.join(confident)})" if confident else "none confident"
        return f"{name} ({category} at confidence >= {comparison['confidence']:g}): {listed} of {raw} raw"

    size, efficiency = comparison["size"]["difference"], comparison["efficiency"]["difference"]
    return [
        heads("on-only", "dedicated thinking heads"),
        heads("off-only", "compensatory heads"),
        f"thinking off is broader: {_sign(*size['interval'], yes_when_positive=True)} "
        f"(size off - on {size['value']:+d}, 95% [{size['interval'][0]:+.1f}, {size['interval'][1]:+.1f}])",
        f"thinking off is less efficient: {_sign(*efficiency['interval'], yes_when_positive=False)} "
        f"(faithfulness per head off - on {efficiency['value']:+.3f}, "
        f"95% [{efficiency['interval'][0]:+.3f}, {efficiency['interval'][1]:+.3f}])",
    ]


def category_grid(shape: tuple[int, int], rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """[L, H] per head: 0 outside both circuits, else 1 + the index of its category in CATEGORIES."""
    grid = np.zeros(shape, dtype=int)
    for row in rows:
        grid[tuple(row["head"])] = 1 + CATEGORIES.index(row["category"])
    return grid


def category_figure(shape: tuple[int, int], rows: Sequence[Mapping[str, Any]], title: str) -> Figure:
    """Each head's category, with its paired confidence written in the cell."""
    layers, heads = shape
    width, height = 0.6 + max(1.5, 0.45 * heads) + 1.4, max(2.2, 1.1 + 0.4 * layers)
    figure = margined_figure(width, height, left=0.6, right=1.4)
    axes = figure.subplots()
    axes.imshow(category_grid(shape, rows), cmap=ListedColormap(CATEGORY_COLOURS), vmin=0, vmax=len(CATEGORIES), aspect="auto")
    for row in rows:
        layer, head = row["head"]
        axes.text(head, layer, f"{row['confidence']:.2f}", ha="center", va="center", fontsize=6,
                  fontweight="bold" if row["confident"] else "normal")
    axes.set_xlabel("head")
    axes.set_ylabel("layer")
    axes.set_xticks(range(heads))
    axes.set_yticks(range(layers))
    axes.set_title(title, fontsize=9)
    names = ("in neither", *CATEGORIES)
    handles = [Patch(facecolor=colour, edgecolor="grey", label=name) for name, colour in zip(names, CATEGORY_COLOURS)]
    axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    return figure


def think_pixels(stats: Mapping[str, SnapshotStats], comparison: Mapping[str, Any], title: str) -> np.ndarray:
    """The figure as RGB pixels: both modes' importance heatmaps (one colour scale, circuits boxed in red)
    beside the category grid, side by side."""
    limits = (0.0, max(float(stats[mode].importance.nan_to_num(0.0).max()) for mode in THINKING_MODES))
    shape = cast(tuple[int, int], tuple(stats["on"].importance.shape))  # importance is [L, H]
    panels = [
        figure_pixels(head_heatmap(stats[mode].importance.float().numpy(), f"{title}: thinking {mode}",
                                   marked=stats[mode].circuit.heads, limits=limits))
        for mode in THINKING_MODES
    ]
    panels.append(figure_pixels(category_figure(shape, comparison["heads"], "category (paired confidence)")))
    height = max(panel.shape[0] for panel in panels)
    padded = [np.pad(panel, ((0, height - panel.shape[0]), (0, 0), (0, 0)), constant_values=255) for panel in panels]
    return np.concatenate(padded, axis=1)
