"""What the heads dashboards show for one snapshot: the pictures and the event table rows.

Both dashboards (W&B and trackio) draw the same panels from a SnapshotReport, so they are built
here once; each dashboard only wraps them in its own image and table types.
"""

from __future__ import annotations

from matplotlib.figure import Figure

from sparks.dashboards.plots import cohort_plot, head_heatmap, membership_heatmap, survival_plot
from sparks.dashboards.report import SnapshotReport

EVENT_COLUMNS = ["step", "layer", "head", "event", "confidence", "confident", "score", "reward"]
EFFECT_LABEL = "E = (I - I_base) / (I + I_base)"


def figures(report: SnapshotReport) -> dict[str, Figure]:
    """The snapshot's pictures by panel name (none unless ``report.pictures``); the effect E panel once
    there is a snapshot after the base.

    ``heads/importance`` boxes the circuit heads; ``heads/membership`` is each head's share of
    bootstrap replicate circuits, circuit boxed; ``heads/circuit`` colours the circuit heads by
    whether the base circuit had them; survival and cohorts cover every snapshot so far.
    """
    lineage, step = report.lineage, report.step
    if not report.pictures:
        return {}
    panels = {
        "heads/importance": head_heatmap(report.importance, f"step {step}: importance, circuit boxed", report.circuit),
        "heads/membership": head_heatmap(
            report.membership, f"step {step}: membership probability, circuit boxed", report.circuit,
            label="share of bootstrap circuits", cmap="magma", limits=(0.0, 1.0),
        ),
        "heads/circuit": membership_heatmap(lineage.shape, report.circuit, lineage.base, f"step {step}: circuit heads"),
        "heads/activation_frequency": head_heatmap(
            lineage.activation_frequency(), f"step {step}: in the circuit in {len(lineage)} snapshots",
            label="share of snapshots in the circuit", limits=(0.0, 1.0),
        ),
        "heads/survival": survival_plot(*lineage.survival(), f"step {step}: survival of heads born after the base"),
        "heads/cohorts": cohort_plot(lineage.cohorts(), f"step {step}: cohorts by first step in the circuit"),
    }
    if len(lineage) > 1:
        panels["heads/effect"] = head_heatmap(
            lineage.importance_effect(), f"step {step}: importance effect E",
            label=EFFECT_LABEL, cmap="RdBu_r", limits=(-1.0, 1.0),
        )
    return panels


def event_rows(events: list[dict]) -> list[list]:
    """Lineage events as table rows in ``EVENT_COLUMNS`` order."""
    return [[event[column] for column in EVENT_COLUMNS] for event in events]
