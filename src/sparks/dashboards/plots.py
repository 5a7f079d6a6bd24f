"""The head pictures: layer x head heatmaps, circuit membership, survival and cohort curves.

Figures are plain ``matplotlib.figure.Figure`` objects drawn on the Agg canvas, never through
pyplot, so they need no display and leave no global state behind; ``save_png`` writes one to disk
and ``figure_pixels`` turns one into the RGB array that W&B and trackio images take.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from numpy.typing import ArrayLike

from sparks.runs.lineage import Cohort, Head

DPI = 100
MEMBERSHIP = ("not in the circuit", "kept from base", "emergent")  # category names, in colour order
MEMBERSHIP_COLOURS = ("#f0f0f0", "#4c72b0", "#dd8452")


def margined_figure(width: float, height: float, left: float, right: float, bottom: float = 0.5, top: float = 0.3) -> Figure:
    """A figure with fixed margins in inches: a layout engine would cost more than drawing the figure."""
    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    figure.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height)
    return figure


def _grid_figure(layers: int, heads: int, *, side: float) -> tuple[Figure, Axes]:
    """A figure sized to a layer x head grid (and ``side`` inches for a colour bar or legend), layer 0 at the top."""
    grid_width, height = max(1.5, 0.45 * heads), max(2.2, 1.1 + 0.4 * layers)
    figure = margined_figure(0.6 + grid_width + side, height, left=0.6, right=side)
    axes = figure.subplots()
    axes.set_xlabel("head")
    axes.set_ylabel("layer")
    axes.set_xticks(range(heads))
    axes.set_yticks(range(layers))
    return figure, axes


def head_heatmap(
    values: ArrayLike,
    title: str,
    marked: Collection[Head] = (),
    label: str = "share of |score|",
    cmap: str = "viridis",
    limits: tuple[float, float] | None = None,
) -> Figure:
    """``values`` [L, H] as a heatmap with the ``marked`` heads boxed in red; ``limits`` fix the colour scale."""
    values = np.asarray(values, dtype=float)
    figure, axes = _grid_figure(*values.shape, side=1.0)
    vmin, vmax = limits if limits is not None else (None, None)
    image = axes.imshow(values, cmap=cmap, aspect="auto", vmin=vmin, vmax=vmax)
    for layer, head in marked:
        axes.add_patch(Rectangle((head - 0.5, layer - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.5))
    axes.set_title(title, fontsize=9)
    figure.colorbar(image, cax=figure.add_axes((1 - 0.95 / figure.get_figwidth(), 0.5 / figure.get_figheight(),
                                                0.12 / figure.get_figwidth(), 1 - 0.8 / figure.get_figheight())), label=label)
    return figure


def membership_grid(shape: tuple[int, int], circuit: Collection[Head], base: Collection[Head]) -> np.ndarray:
    """[L, H] category per head: 0 outside the circuit, 1 in it and in the base circuit, 2 in it and emergent."""
    grid = np.zeros(shape, dtype=int)
    for head in circuit:
        grid[head] = 1 if head in base else 2
    return grid


def membership_heatmap(shape: tuple[int, int], circuit: Collection[Head], base: Collection[Head], title: str) -> Figure:
    """Which heads are in the circuit, colouring those kept from the base circuit apart from emergent ones."""
    figure, axes = _grid_figure(*shape, side=1.6)
    colours = ListedColormap(MEMBERSHIP_COLOURS)
    axes.imshow(membership_grid(shape, circuit, base), cmap=colours, vmin=0, vmax=len(MEMBERSHIP) - 1, aspect="auto")
    axes.set_title(title, fontsize=9)
    handles = [Patch(facecolor=colour, edgecolor="grey", label=name) for name, colour in zip(MEMBERSHIP, MEMBERSHIP_COLOURS)]
    axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    return figure


def _line_figure(title: str, xlabel: str, ylabel: str) -> tuple[Figure, Axes]:
    figure = margined_figure(5.0, 3.2, left=0.7, right=0.15)
    axes = figure.subplots()
    axes.set_title(title, fontsize=9)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_ylim(-0.02, 1.05)
    axes.grid(alpha=0.3)
    return figure, axes


def survival_plot(times: ArrayLike, survival: ArrayLike, title: str) -> Figure:
    """A Kaplan-Meier step curve S(t) over head life durations (``HeadLineage.survival()``)."""
    figure, axes = _line_figure(title, "steps since birth", "share of heads still in the circuit")
    axes.step(times, survival, where="post", color="#4c72b0")
    return figure


def cohort_plot(cohorts: Mapping[int, Cohort], title: str) -> Figure:
    """One line per cohort (heads first in the circuit at one snapshot): the share of it in the circuit at each later step."""
    figure, axes = _line_figure(title, "training step", "share of cohort in the circuit")
    for start, cohort in sorted(cohorts.items()):
        axes.plot(cohort.steps, cohort.fraction, marker="o", markersize=3, label=f"step {start} ({len(cohort.heads)} heads)")
    if cohorts:
        axes.legend(fontsize=7, loc="lower left")
    return figure


def save_png(figure: Figure, path: str | Path) -> Path:
    """Write ``figure`` as a PNG, creating the parent directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)
    return path


def figure_pixels(figure: Figure) -> np.ndarray:
    """The rendered figure as an [height, width, 3] uint8 RGB array."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
