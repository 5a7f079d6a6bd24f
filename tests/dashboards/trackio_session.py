"""A trackio session for the tests, run as a subprocess with TRACKIO_DIR set.

trackio reads TRACKIO_DIR once, at import, into many of its modules, so each test gets a fresh
process pointed at its own temporary directory instead of patching trackio's globals.

    python -m tests.dashboards.trackio_session own      feed the snapshots into the dashboard's own run, print what trackio stored
    python -m tests.dashboards.trackio_session shared   the same into a run the trainer started, from step 20 on (a restored tracker)
    python -m tests.dashboards.trackio_session serve    feed, then serve the dashboard; print its URL, stop when stdin closes
"""

from __future__ import annotations

import json
import sys

import trackio
from trackio.sqlite_storage import SQLiteStorage

from sparks.dashboards.trackio_dashboard import TrackioDashboard
from tests.dashboards.snapshot_reports import reports

PROJECT = "sparks-test"


def feed(dashboard: TrackioDashboard, first_step: int = 0) -> None:
    """Snapshots from ``first_step`` on, a failed snapshot at step 40, a run summary."""
    for report in reports():
        if report.step >= first_step:
            dashboard.snapshot(report)
    dashboard.failure(40, "scoring raised ValueError")
    dashboard.summary({"alignment/pearson": 0.5, "alignment/note": None})


def stored(run: str, **facts) -> None:
    """Print the run's logged rows and config (as trackio's storage returns them) and ``facts`` as JSON."""
    logs = SQLiteStorage.get_logs(PROJECT, run)
    print(json.dumps({"logs": logs, "config": SQLiteStorage.get_run_config(PROJECT, run), **facts}, default=str))


def main(mode: str) -> None:
    if mode == "own":
        dashboard = TrackioDashboard(PROJECT, "grpo-1", "exp", "grpo")
        feed(dashboard)
        dashboard.close()
        stored("grpo-1", current_run_left=trackio.context_vars.current_run.get() is not None)
    elif mode == "shared":
        trainer_run = trackio.init(project=PROJECT, name="trainer", auto_log_cpu=False)
        trackio.log({"train/reward": 0.1, "train/global_step": 15})
        dashboard = TrackioDashboard(PROJECT, "ignored")
        feed(dashboard, first_step=20)
        dashboard.close()
        left_running = trackio.context_vars.current_run.get() is trainer_run
        trackio.finish()
        stored("trainer", trainer_run_left_running=left_running, runs=SQLiteStorage.get_runs(PROJECT))
    elif mode == "serve":
        feed(TrackioDashboard(PROJECT, "grpo-1"))
        trackio.finish()
        server, url, *_ = trackio.show(project=PROJECT, open_browser=False, block_thread=False)
        print(json.dumps({"url": url}), flush=True)
        sys.stdin.read()
        server.close()
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1])
