"""Choosing the live dashboards: W&B when a W&B key is set, the embedded trackio otherwise."""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from sparks.callbacks.report import Dashboard
from sparks.callbacks.trackio_dashboard import TrackioDashboard
from sparks.callbacks.wandb_dashboard import WandbDashboard

DASHBOARDS = ("wandb", "trackio")


def make_dashboards(
    names: list[str],
    project: str,
    run_name: str | None = None,
    group: str | None = None,
    job_type: str | None = None,
    config: dict[str, Any] | None = None,
) -> list[Dashboard]:
    """One dashboard per name in ``DASHBOARDS``; trackio has no job type, so it goes into its run config."""
    unknown = sorted(set(names) - set(DASHBOARDS))
    if unknown:
        raise ValueError(f"unknown dashboard {', '.join(unknown)} (known: {', '.join(DASHBOARDS)})")
    dashboards: list[Dashboard] = []
    for name in names:
        if name == "wandb":
            dashboards.append(WandbDashboard(project, run_name, group, job_type, config))
        else:
            trackio_config = {**(config or {}), **({"job_type": job_type} if job_type else {})}
            dashboards.append(TrackioDashboard(project, run_name, group, trackio_config or None))
    return dashboards


def wandb_key_is_set() -> bool:
    """Whether W&B can log in: ``WANDB_API_KEY`` is set, or the netrc file has a password for the W&B host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        entry = netrc.netrc(path).authenticators(host) if path.is_file() else None
    except (netrc.NetrcParseError, OSError):
        return False
    return bool(entry and entry[2])


def default_dashboards() -> list[str]:
    """``["wandb"]`` when a W&B key is set, else ``["trackio"]`` (local, needs no account)."""
    return ["wandb"] if wandb_key_is_set() else ["trackio"]
