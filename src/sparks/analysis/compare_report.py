"""The ``sparks compare`` report: one self-contained HTML page (Plotly, plotly.js inline, no network) and a PNG per figure.

Each figure is first a Chart: panels of traces holding the series analysis.compare read from the
run stores. The same Chart is drawn twice, by Plotly for the page and by matplotlib for the PNG
(Plotly's own PNG export needs kaleido and a browser), so the picture and the page show one set of
numbers. The page also carries those numbers as JSON (``<script id="sparks-data">``), what the
figures and tables were drawn from. The report is written into a temporary directory beside
``--out`` and renamed into place at the end: a failure leaves nothing half-written.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from plotly.subplots import make_subplots

from sparks.analysis.compare import (
    CUMULATIVE_SHARE,
    Estimate,
    Run,
    RunSummary,
    alignment_rows,
    cohort_sizes,
    comparable,
    confident_events,
    emergent_counts,
    faithfulness,
    jaccard,
    load_runs,
    null_churn,
    replicate_lineages,
    reward_curve,
    summarise,
    survival_band,
)
from sparks.analysis.outputs import check_out, staged
from sparks.dashboards.plots import DPI, save_png
from sparks.runs.lineage import CHURN_KINDS, HeadLineage
from sparks.runs.store import plain_number

COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")
REPORT = "report.html"
MARKED_POINTS = 40
"""Lines of up to this many points (snapshot series) mark their points; longer ones (the logged reward) do not."""


@dataclass(frozen=True)
class Trace:
    """One drawn series: ``line`` (y over x; ``step`` draws it as a step curve), ``band`` (low to high over x),
    ``area`` (stacked with the panel's other areas) or ``heatmap`` (z [L, H], ``outline`` heads boxed)."""

    kind: str
    name: str
    colour: str
    x: Sequence[float] = field(default_factory=list)
    y: list[float | None] = field(default_factory=list)
    low: list[float | None] = field(default_factory=list)
    high: list[float | None] = field(default_factory=list)
    z: list[list[float]] = field(default_factory=list)
    outline: list[list[int]] = field(default_factory=list)
    step: bool = False
    dashed: bool = False


@dataclass(frozen=True)
class Panel:
    """One plot area of a chart: its title, axis labels and traces."""

    title: str
    xlabel: str
    ylabel: str
    traces: list[Trace]


@dataclass(frozen=True)
class Chart:
    """One figure: its file name, title, and panels stacked on one x axis (heatmap panels keep their own)."""

    name: str
    title: str
    panels: list[Panel]


def _plain(values: Any) -> list:
    """A float array as a JSON list, NaN as None."""
    return [plain_number(value) for value in np.asarray(values, dtype=float).tolist()]


def _colour(index: int) -> str:
    return COLOURS[index % len(COLOURS)]


# -- the charts ------------------------------------------------------------------------------------


def emergent_chart(runs: Sequence[Run]) -> Chart:
    """Emergent heads (all, and the confident ones dashed) over steps, the logged reward beneath on the same step axis."""
    counts, rewards = [], []
    for index, run in enumerate(runs):
        raw, confident = emergent_counts(run.lineage)
        counts += [Trace("line", f"{run.name}: emergent", _colour(index), run.lineage.steps, _plain(raw)),
                   Trace("line", f"{run.name}: confident", _colour(index), run.lineage.steps, _plain(confident), dashed=True)]
        key, steps, values = reward_curve(run.metrics)
        if key is not None:
            rewards.append(Trace("line", f"{run.name}: {key}", _colour(index), _plain(steps), _plain(values)))
    return Chart("emergent", "Emergent heads and reward", [
        Panel("heads in the circuit that the base circuit lacks", "", "emergent heads", counts),
        Panel("logged reward (GRPO reward, SFT token accuracy)", "training step", "reward", rewards),
    ])


def churn_chart(runs: Sequence[Run]) -> Chart:
    """Per run, confident births and prunings per snapshot against the band up to the null churn (what the probe draw alone changes)."""
    panels = []
    for index, run in enumerate(runs):
        steps = run.lineage.steps
        panels.append(Panel(run.name, "training step" if index == len(runs) - 1 else "", "heads", [
            Trace("band", "null churn", "#999999", steps, low=[0.0] * len(steps), high=_plain(null_churn(run.records))),
            *(Trace("line", f"{run.name}: confident {kind.counted_as}", _colour(index), steps,
                    _plain(confident_events(run.lineage, kind.name)), dashed=number > 0) for number, kind in enumerate(CHURN_KINDS)),
        ]))
    return Chart("churn", "Confident births and prunings per snapshot, against the null churn", panels)


def cohort_chart(runs: Sequence[Run]) -> Chart:
    """Per run, the circuit's heads stacked by the snapshot where each was first in it."""
    panels = []
    for index, run in enumerate(runs):
        sizes = cohort_sizes(run.lineage)
        panels.append(Panel(run.name, "training step" if index == len(runs) - 1 else "", "heads in the circuit", [
            Trace("area", f"first at step {start}", _colour(run.lineage.steps.index(start)), run.lineage.steps, _plain(counts))
            for start, counts in sorted(sizes.items())
        ]))
    return Chart("cohorts", "Circuit heads by the step they first entered it", panels)


def activation_chart(runs: Sequence[Run]) -> Chart:
    """Per run, the share of snapshots each head was in the circuit (layer x head), the final circuit boxed."""
    return Chart("activation", "Activation frequency, final circuit boxed", [
        Panel(run.name, "head", "layer", [Trace(
            "heatmap", run.name, _colour(index), z=run.lineage.activation_frequency().tolist(),
            outline=[list(head) for head in sorted(run.lineage.snapshots[-1].heads)])])
        for index, run in enumerate(runs)
    ])


def jaccard_chart(runs: Sequence[Run]) -> Chart:
    """Jaccard similarity of each circuit to the previous snapshot's and to the base circuit."""
    previous, base = [], []
    for index, run in enumerate(runs):
        to_previous, to_base = jaccard(run.lineage)
        previous.append(Trace("line", run.name, _colour(index), run.lineage.steps, _plain(to_previous)))
        base.append(Trace("line", run.name, _colour(index), run.lineage.steps, _plain(to_base)))
    return Chart("jaccard", "Circuit similarity", [
        Panel("Jaccard to the previous snapshot", "", "Jaccard", previous),
        Panel("Jaccard to the base circuit", "training step", "Jaccard", base),
    ])


def survival_chart(runs: Sequence[Run], replicates: Sequence[Sequence[HeadLineage]]) -> Chart:
    """Kaplan-Meier survival of heads born after the base, with the 95% band over the bootstrap replicate lineages."""
    traces = []
    for index, (run, others) in enumerate(zip(runs, replicates)):
        times, survival, low, high = survival_band(run.lineage, others)
        traces += [Trace("band", f"{run.name}: 95% band", _colour(index), _plain(times), low=_plain(low), high=_plain(high), step=True),
                   Trace("line", run.name, _colour(index), _plain(times), _plain(survival), step=True)]
    return Chart("survival", "Survival of heads born after the base", [
        Panel("Kaplan-Meier, band over the bootstrap replicate lineages", "steps since birth", "share still in the circuit", traces),
    ])


def faithfulness_chart(runs: Sequence[Run]) -> Chart:
    """Each snapshot's circuit faithfulness with its 95% bootstrap interval."""
    traces = []
    for index, run in enumerate(runs):
        value, low, high = faithfulness(run.records)
        traces += [Trace("band", f"{run.name}: 95% interval", _colour(index), run.lineage.steps, low=_plain(low), high=_plain(high)),
                   Trace("line", run.name, _colour(index), run.lineage.steps, _plain(value))]
    return Chart("faithfulness", "Circuit faithfulness", [Panel("faithfulness of each snapshot's circuit", "training step", "faithfulness", traces)])


def charts(runs: Sequence[Run], replicates: Sequence[Sequence[HeadLineage]]) -> list[Chart]:
    """Every figure of the report, in page order."""
    return [emergent_chart(runs), churn_chart(runs), cohort_chart(runs), activation_chart(runs), jaccard_chart(runs),
            survival_chart(runs, replicates), faithfulness_chart(runs)]


# -- drawing ---------------------------------------------------------------------------------------


def _faded(colour: str) -> str:
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},0.2)"


def _finite_runs(*series: Sequence[float | None]) -> list[slice]:
    """The stretches of indices where every series has a value: a band is filled over each, never across a gap."""
    present = [all(values[index] is not None for values in series) for index in range(len(series[0]))]
    runs, start = [], None
    for index, here in enumerate([*present, False]):
        if here and start is None:
            start = index
        elif not here and start is not None:
            runs.append(slice(start, index))
            start = None
    return runs


def plotly_figure(chart: Chart) -> go.Figure:
    """The chart as a Plotly figure: panels stacked, step axes shared unless a panel is a heatmap; a name is in the legend once."""
    heatmaps = any(trace.kind == "heatmap" for panel in chart.panels for trace in panel.traces)
    figure = make_subplots(rows=len(chart.panels), cols=1, shared_xaxes=not heatmaps, vertical_spacing=0.25 / len(chart.panels),
                           subplot_titles=[panel.title for panel in chart.panels])
    named: set[str] = set()
    for row, panel in enumerate(chart.panels, start=1):
        for trace in panel.traces:
            legend = {"name": trace.name, "legendgroup": trace.name, "showlegend": trace.name not in named}
            named.add(trace.name)
            line = {"color": trace.colour, "dash": "dash" if trace.dashed else "solid", "shape": "hv" if trace.step else "linear"}
            if trace.kind == "line":
                mode = "lines+markers" if len(trace.x) <= MARKED_POINTS else "lines"
                figure.add_trace(go.Scatter(x=trace.x, y=trace.y, mode=mode, line=line, **legend), row=row, col=1)
            elif trace.kind == "band":
                edge = {**line, "width": 0}
                for number, part in enumerate(_finite_runs(trace.low, trace.high)):
                    figure.add_trace(go.Scatter(x=trace.x[part], y=trace.low[part], mode="lines", line=edge, hoverinfo="skip",
                                                **{**legend, "showlegend": False}), row=row, col=1)
                    figure.add_trace(go.Scatter(x=trace.x[part], y=trace.high[part], mode="lines", line=edge, fill="tonexty",
                                                fillcolor=_faded(trace.colour), **{**legend, "showlegend": legend["showlegend"] and not number}),
                                     row=row, col=1)
            elif trace.kind == "area":
                figure.add_trace(go.Scatter(x=trace.x, y=trace.y, mode="lines", line=line, stackgroup=f"panel{row}", **legend),
                                 row=row, col=1)
            else:
                figure.add_trace(go.Heatmap(z=trace.z, zmin=0.0, zmax=1.0, colorscale="Viridis", showscale=row == 1,
                                            colorbar={"title": {"text": "share of snapshots"}}, name=trace.name), row=row, col=1)
                for layer, head in trace.outline:
                    figure.add_shape(type="rect", x0=head - 0.5, x1=head + 0.5, y0=layer - 0.5, y1=layer + 0.5,
                                     line={"color": "red", "width": 2}, row=row, col=1)
                figure.update_yaxes(autorange="reversed", dtick=1, row=row, col=1)
                figure.update_xaxes(dtick=1, row=row, col=1)
        figure.update_yaxes(title_text=panel.ylabel, row=row, col=1)
        figure.update_xaxes(title_text=panel.xlabel, row=row, col=1)
    figure.update_layout(title=chart.title, height=180 + 300 * len(chart.panels), template="plotly_white",
                         margin={"l": 70, "r": 30, "t": 90, "b": 50})
    return figure


def matplotlib_figure(chart: Chart) -> Figure:
    """The same chart drawn with matplotlib on the Agg canvas, for the PNG."""
    figure = Figure(figsize=(8.0, 1.0 + 2.6 * len(chart.panels)), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle(chart.title)
    for axes, panel in zip(figure.subplots(len(chart.panels), 1, squeeze=False)[:, 0], chart.panels):
        areas = [trace for trace in panel.traces if trace.kind == "area"]
        if areas:
            axes.stackplot(areas[0].x, *[np.array(trace.y, dtype=float) for trace in areas],
                           labels=[trace.name for trace in areas], colors=[trace.colour for trace in areas], alpha=0.8)
        for trace in panel.traces:
            x = np.array(trace.x, dtype=float)
            if trace.kind == "line":
                style = {"color": trace.colour, "linestyle": "--" if trace.dashed else "-", "label": trace.name}
                y = np.array(trace.y, dtype=float)
                if trace.step:
                    axes.step(x, y, where="post", **style)
                else:
                    axes.plot(x, y, marker="o" if len(x) <= MARKED_POINTS else None, markersize=3, **style)
            elif trace.kind == "band":
                axes.fill_between(x, np.array(trace.low, dtype=float), np.array(trace.high, dtype=float), color=trace.colour,
                                  alpha=0.2, step="post" if trace.step else None, label=trace.name, linewidth=0)
            elif trace.kind == "heatmap":
                image = axes.imshow(np.array(trace.z), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
                for layer, head in trace.outline:
                    axes.add_patch(Rectangle((head - 0.5, layer - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.5))
                figure.colorbar(image, ax=axes, label="share of snapshots")
        axes.set_title(panel.title, fontsize=9)
        axes.set_xlabel(panel.xlabel)
        axes.set_ylabel(panel.ylabel)
        if any(trace.kind != "heatmap" for trace in panel.traces):
            axes.grid(alpha=0.3)
            axes.legend(fontsize=7, loc="best")
    return figure


# -- tables and page -------------------------------------------------------------------------------


def _number(value: float | None, digits: int = 2) -> str:
    if value is None or math.isnan(value):
        return "–"
    return "not reached" if math.isinf(value) else f"{value:.{digits}f}"


def _estimate(estimate: Estimate, digits: int = 2) -> str:
    return f"{_number(estimate.value, digits)} [{_number(estimate.low, digits)}, {_number(estimate.high, digits)}]"


@dataclass(frozen=True)
class Table:
    """One of the report's tables: its header and rows of cell texts, as the page shows them."""

    header: list[str]
    rows: list[list[str]]

    def html(self, table_id: str) -> str:
        head = "".join(f"<th>{html.escape(cell)}</th>" for cell in self.header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in self.rows)
        return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def summary_table(summaries: Sequence[RunSummary]) -> Table:
    """Per run: behaviour, share of born heads alive at the end, confident churn / null churn, median lifespan, final emergent heads."""
    header = ["run", "snapshots", "behaves", "born heads alive at the end", "confident churn / null churn",
              "median lifespan (steps)", "final emergent heads"]
    rows = [[row.name, str(row.snapshots), row.mode, _estimate(row.share_alive), _estimate(row.churn_ratio),
             _estimate(row.median_lifespan, 0), _estimate(row.final_emergent, 0)] for row in summaries]
    return Table(header, rows)


def alignment_table(runs: Sequence[Run]) -> Table:
    """The reward-alignment statistics of every run's summary, with the lag-search corrected p and its Holm adjustment."""
    header = ["run", "series", "method", "r", "lag", "n", "p (lag search)", "p (Holm, run's tests)", "note"]
    rows = [[run.name, row["series"], row["method"], _number(row["r"]), "–" if row["lag"] is None else str(row["lag"]), str(row["n"]), _number(row["p"], 3),
             _number(row["p_holm"], 3), "insufficient pairs" if row["insufficient"] else ""]
            for run in runs for row in alignment_rows(run.summary)]
    return Table(header, rows)


def _difference(cells: dict[str, Any] | None, cell: str) -> str:
    if cells is None:
        return "–"
    estimate = cells[cell]
    return f"{estimate['value']:+.2f} [{estimate['low']:+.2f}, {estimate['high']:+.2f}]"


ABLATION_NOTE = ("sparks ablate results stored in each run's ablations/ directory. Differences are paired problem by problem "
                 "(same problems, same sampling seeds) with 95% bootstrap intervals over the problems; easy and hard are the "
                 "lowest and highest third of the levels.")


def ablation_table(runs: Sequence[Run]) -> Table:
    """Every ``sparks ablate`` result stored with a run: the head set, the intervention, and the paired pass@1
    differences against the unchanged model and the matched random controls, overall, on easy and on hard levels."""
    header = ["run", "ablation", "heads", "intervention", "pass@1 change vs model", "vs random (all)",
              "vs random (easy levels)", "vs random (hard levels)", "vs base circuit"]
    rows = []
    for run in runs:
        for name, result in run.ablations.items():
            differences = result["differences"]
            change = result["mode"] if result["factor"] is None else f"{result['mode']} x{result['factor']}"
            rows.append([run.name, name, str(len(result["heads"])), change,
                         _difference(differences.get("heads - model"), "all"),
                         *(_difference(differences.get("heads - random"), cell) for cell in ("all", "easy", "hard")),
                         _difference(differences.get("heads - base"), "all")])
    return Table(header, rows)


STYLE = """body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:4px 8px;font-size:14px}th{background:#f4f4f4}.warning{color:#a94400}"""


def page(runs: Sequence[Run], summaries: Sequence[RunSummary], tables: dict[str, Table], drawn: Sequence[Chart],
         warnings: Sequence[str]) -> str:
    """The report's HTML: warnings, the summary table, the alignment table, then every chart, plotly.js inline once."""
    figures = "".join(
        f'<section><h2>{html.escape(chart.title)}</h2>'
        + pio.to_html(plotly_figure(chart), full_html=False, include_plotlyjs=index == 0, div_id=f"chart-{chart.name}",
                      config={"displaylogo": False})
        + f'<p><a href="{chart.name}.png">{chart.name}.png</a></p></section>'
        for index, chart in enumerate(drawn)
    )
    data = _clean({"runs": [run.name for run in runs], "warnings": list(warnings),
                   "summary": [asdict(summary) for summary in summaries],
                   "alignment": {run.name: alignment_rows(run.summary) for run in runs},
                   "charts": [asdict(chart) for chart in drawn]})
    notes = "".join(f'<li class="warning">{html.escape(warning)}</li>' for warning in warnings)
    ablations = (f'<h2>Ablation and scaling</h2><p>{html.escape(ABLATION_NOTE)}</p>{tables["ablation"].html("ablation")}'
                 if "ablation" in tables else "")
    explanation = (
        "Intervals are 95%. Share alive, median lifespan and final emergent heads: the figure over the bootstrap replicate "
        "lineages (replicate b's circuits across the snapshots, the same resampling of the probe pairs at every snapshot). "
        "Churn ratio: the snapshots after the base resampled with replacement. A run behaves cumulatively when the whole "
        f"interval of its share of born heads alive at the end lies above {CUMULATIVE_SHARE}, dynamically when below it.")
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>sparks compare: {html.escape(", ".join(run.name for run in runs))}'
            f'</title><style>{STYLE}</style></head><body><h1>sparks compare</h1>'
            f'<ul id="warnings">{notes}</ul><h2>Summary</h2><p>{html.escape(explanation)}</p>{tables["summary"].html("summary")}'
            f'<h2>Reward alignment</h2>{tables["alignment"].html("alignment")}{ablations}{figures}'
            f'<script type="application/json" id="sparks-data">{html.escape(json.dumps(data, allow_nan=False), quote=False)}</script>'
            f'</body></html>')


def _clean(value: Any) -> Any:
    """Infinite and NaN floats of the data block as strings/None, so it stays strict JSON."""
    if isinstance(value, float):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else value
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(item) for item in value]
    return value


@dataclass(frozen=True)
class Report:
    """A written report: its page (the PNGs beside it), the runs compared, the warnings (runs left out,
    settings that differ) and its tables ("summary", "alignment", and "ablation" when a run holds
    sparks ablate results) as the page shows them."""

    path: Path
    compared: list[str]
    warnings: list[str]
    tables: dict[str, Table]


def write_report(run_dirs: Sequence[str | Path], out: str | Path) -> Report:
    """Compare the runs into ``out`` (report.html and a PNG per chart).

    Bad input (a directory that is not a run, a run without snapshots, no two comparable runs, an
    ``out`` that cannot be written) raises RunStoreError or OSError, one line, leaving nothing behind.
    """
    out = Path(out)
    check_out(out)
    runs, unread = load_runs(run_dirs)
    kept, warnings = comparable(runs)
    warnings = unread + warnings
    replicates = [replicate_lineages(run.lineage) for run in kept]
    summaries = [summarise(run, others) for run, others in zip(kept, replicates)]
    drawn = charts(kept, replicates)
    tables = {"summary": summary_table(summaries), "alignment": alignment_table(kept)}
    if any(run.ablations for run in kept):
        tables["ablation"] = ablation_table(kept)
    with staged(out) as staging:
        for chart in drawn:
            save_png(matplotlib_figure(chart), staging / f"{chart.name}.png")
        (staging / REPORT).write_text(page(kept, summaries, tables, drawn, warnings))
    return Report(out / REPORT, [run.name for run in kept], warnings, tables)
