"""The live dashboards the tracker can feed, in one registry, and which to feed: W&B when a W&B key is
set, the embedded trackio otherwise.

Adding a dashboard is one entry in ``DASHBOARDS`` (docs/dashboards.md, "Adding a dashboard").
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sparks.dashboards.wandb_key import wandb_key_found

if TYPE_CHECKING:
    from sparks.dashboards.report import Dashboard


@dataclass(frozen=True)
class DashboardKind:
    """One dashboard: its name in ``tracker.dashboards``, the transformers ``report_to`` integration through
    which the trainer logs its own series (the reward curve) to the same place, and its class
    (``module:Class``, imported only when one is made, so that choosing imports neither wandb nor trackio).

    The class takes ``(project, run_name, group, job_type, config)`` and is a dashboards.report.Dashboard.
    """

    name: str
    report_to: str
    dashboard: str

    def make(self, project: str, run_name: str | None, group: str | None, job_type: str | None,
             config: dict[str, Any] | None) -> Dashboard:
        module, name = self.dashboard.split(":")
        return getattr(importlib.import_module(module), name)(project, run_name, group, job_type, config)


DASHBOARDS: tuple[DashboardKind, ...] = (
    DashboardKind("wandb", report_to="wandb", dashboard="sparks.dashboards.wandb_dashboard:WandbDashboard"),
    DashboardKind("trackio", report_to="trackio", dashboard="sparks.dashboards.trackio_dashboard:TrackioDashboard"),
)
"""Every dashboard the tracker can feed."""
KINDS = {kind.name: kind for kind in DASHBOARDS}


def make_dashboards(
    names: list[str],
    project: str,
    run_name: str | None = None,
    group: str | None = None,
    job_type: str | None = None,
    config: dict[str, Any] | None = None,
) -> list[Dashboard]:
    """One dashboard per name (``DASHBOARDS``), each with the run's identity."""
    unknown = sorted(set(names) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown dashboard {', '.join(unknown)} (known: {', '.join(KINDS)})")
    return [KINDS[name].make(project, run_name, group, job_type, config) for name in names]


def default_dashboards() -> list[str]:
    """``["wandb"]`` when a W&B key is set, else ``["trackio"]`` (local, needs no account)."""
    return ["wandb"] if wandb_key_found() else ["trackio"]
