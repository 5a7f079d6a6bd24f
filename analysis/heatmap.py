"""A layer x head heatmap PNG (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from torch import Tensor  # noqa: E402


def head_heatmap(
    values: Tensor, path: str | Path, title: str, marked: Sequence[tuple[int, int]] = (), label: str = "share of |score|"
) -> None:
    """Draw ``values`` [L, H] with layer 0 at the top, box the ``marked`` heads, and save a PNG."""
    layers, heads = values.shape
    figure, axes = plt.subplots(figsize=(1.2 + 0.45 * heads, 1.0 + 0.4 * layers))
    image = axes.imshow(values.float().numpy(), cmap="viridis", aspect="auto")
    for layer, head in marked:
        axes.add_patch(plt.Rectangle((head - 0.5, layer - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.5))
    axes.set_xlabel("head")
    axes.set_ylabel("layer")
    axes.set_xticks(range(heads))
    axes.set_yticks(range(layers))
    axes.set_title(title, fontsize=9)
    figure.colorbar(image, ax=axes, label=label)
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
