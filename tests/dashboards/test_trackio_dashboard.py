"""The trackio dashboard: what it logs is read back from trackio's own storage (sqlite and media files)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sparks.dashboards.panels import EVENT_COLUMNS
from tests.dashboards.snapshot_reports import STEPS, circuit_size, reports

SESSION = ["-m", "tests.dashboards.trackio_session"]  # run from anywhere: session_env puts the repository on the path
IMAGES = ["heads/importance", "heads/membership", "heads/circuit", "heads/activation_frequency", "heads/survival", "heads/cohorts"]


def session_env(trackio_dir: Path) -> dict[str, str]:
    """The environment of a trackio session subprocess: its own TRACKIO_DIR, the tests' helpers importable."""
    paths = [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "TRACKIO_DIR": str(trackio_dir), "PYTHONPATH": os.pathsep.join(filter(None, paths)), "OMP_NUM_THREADS": "1"}


def run_session(mode: str, trackio_dir: Path) -> dict:
    done = subprocess.run([sys.executable, *SESSION, mode], env=session_env(trackio_dir), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def events_so_far() -> dict[int, list[dict]]:
    """Per snapshot step, every lineage event up to it, as event-table rows."""
    return {report.step: [{column: event[column] for column in EVENT_COLUMNS} for event in report.lineage.events] for report in reports()}


def test_own_run_logs_scalars_images_events_failure_and_summary_at_the_global_step(tmp_path):
    stored = run_session("own", tmp_path)
    rows = stored["logs"]
    assert [row["step"] for row in rows] == [*STEPS, 40, 40]  # trackio's step is the global step in its own run
    assert all(row["train/global_step"] == row["step"] for row in rows)
    expected_events = events_so_far()
    for row in rows[:len(STEPS)]:
        step = row["step"]
        assert row["heads/circuit_size"] == circuit_size(step) and row["heads/failed"] == 0
        for name in IMAGES + ([] if step == STEPS[0] else ["heads/effect"]):
            assert row[name]["_type"] == "trackio.image"
            assert (tmp_path / "media" / row[name]["file_path"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert row["heads/events"]["_type"] == "trackio.table" and row["heads/events"]["_value"] == expected_events[step]
    failure, summary = rows[len(STEPS):]
    assert failure["heads/failed"] == 1 and "scoring raised ValueError" in failure["heads/failure"]["_value"]
    assert "alignment/pearson" not in summary
    assert "| alignment/pearson | 0.5 |" in summary["heads/summary"]["_value"]
    assert "| alignment/note | None |" in summary["heads/summary"]["_value"]
    assert stored["config"]["_Group"] == "exp" and stored["config"]["job_type"] == "grpo"
    assert not stored["current_run_left"]  # the dashboard finished the run it started


def test_a_restored_tracker_logs_into_the_trainer_run_and_leaves_it_running(tmp_path):
    stored = run_session("shared", tmp_path)
    rows = stored["logs"]
    assert stored["runs"] == ["trainer"] and stored["trainer_run_left_running"]
    assert [row["step"] for row in rows] == [0, 1, 2, 3, 4]  # the trainer's own counter, continued
    assert [row["train/global_step"] for row in rows] == [15, 20, 30, 40, 40]
    assert rows[1]["heads/events"]["_value"] == events_so_far()[20]  # the events from before the resume included
    assert rows[3]["heads/failed"] == 1
