"""The head pictures draw exactly the data they are given."""

from __future__ import annotations

import dataclasses

import numpy as np
from matplotlib.patches import Rectangle

from sparks.dashboards.panels import figures
from sparks.dashboards.plots import (
    cohort_plot,
    figure_pixels,
    head_heatmap,
    membership_grid,
    membership_heatmap,
    save_png,
    survival_plot,
)
from tests.dashboards.snapshot_reports import STEPS, final_lineage, reports


def test_head_heatmap_shows_the_values_and_boxes_the_marked_heads(tmp_path):
    values = np.arange(6, dtype=float).reshape(2, 3)
    figure = head_heatmap(values, "title", marked=[(1, 2), (0, 0)])
    axes = figure.axes[0]
    np.testing.assert_array_equal(axes.images[0].get_array(), values)
    boxes = [patch.get_xy() for patch in axes.patches if isinstance(patch, Rectangle)]
    assert boxes == [(1.5, 0.5), (-0.5, -0.5)]  # (head - 0.5, layer - 0.5)
    assert (axes.get_title(), axes.get_xlabel(), axes.get_ylabel()) == ("title", "head", "layer")
    path = save_png(figure, tmp_path / "sub" / "heatmap.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_membership_tells_emergent_heads_from_heads_kept_from_base():
    tracked, base = [(0, 0), (1, 0)], {(0, 0), (0, 1), (1, 2)}
    grid = membership_grid((2, 3), tracked, base)
    assert grid.tolist() == [[1, 0, 0], [2, 0, 0]]
    axes = membership_heatmap((2, 3), tracked, base, "membership").axes[0]
    np.testing.assert_array_equal(axes.images[0].get_array(), grid)
    assert [text.get_text() for text in axes.get_legend().get_texts()] == ["not in the circuit", "kept from base", "emergent"]


def test_survival_curve_is_the_lineage_kaplan_meier_estimate():
    times, survival = final_lineage().survival()
    assert len(times) > 1 and survival[-1] < 1  # the hand-made lineage has deaths to draw
    (line,) = survival_plot(times, survival, "survival").axes[0].get_lines()
    np.testing.assert_array_equal(line.get_xdata(), times)
    np.testing.assert_array_equal(line.get_ydata(), survival)
    assert line.get_drawstyle() == "steps-post"


def test_one_cohort_line_per_first_step_in_the_circuit():
    cohorts = final_lineage().cohorts()
    lines = cohort_plot(cohorts, "cohorts").axes[0].get_lines()
    assert len(lines) == len(cohorts) == 2
    for line, (start, cohort) in zip(lines, sorted(cohorts.items())):
        assert list(line.get_xdata()) == cohort.steps and list(line.get_ydata()) == cohort.fraction
        assert line.get_label() == f"step {start} ({len(cohort.heads)} heads)"


def test_report_panels_and_their_pixels():
    names = [set(figures(report)) for report in reports()]  # each drawn before the shared lineage grows
    base_panels = {"heads/importance", "heads/membership", "heads/circuit", "heads/activation_frequency",
                   "heads/survival", "heads/cohorts"}
    assert names == [base_panels] + [base_panels | {"heads/effect"}] * (len(STEPS) - 1)  # E needs a later snapshot
    *_, last = reports()
    panels = figures(last)
    np.testing.assert_allclose(panels["heads/effect"].axes[0].images[0].get_array(), last.lineage.importance_effect())
    np.testing.assert_allclose(
        panels["heads/activation_frequency"].axes[0].images[0].get_array(), last.lineage.activation_frequency()
    )
    np.testing.assert_allclose(panels["heads/membership"].axes[0].images[0].get_array(), last.membership)
    assert figures(dataclasses.replace(last, pictures=False)) == {}  # TrackerConfig.pictures_every skips them
    assert last.step == STEPS[-1] and panels["heads/importance"].axes[0].get_title().startswith(f"step {last.step}:")
    pixels = figure_pixels(panels["heads/circuit"])
    assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 3  # drawn, not blank
