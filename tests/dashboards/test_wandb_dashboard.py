"""The W&B dashboard, offline: what it logs is read back from the run's transaction log and files."""

from __future__ import annotations

import json

import pytest
import wandb

from sparks.dashboards.panels import EVENT_COLUMNS, event_rows
from sparks.dashboards.wandb_dashboard import WandbDashboard
from tests.dashboards import wandb_records
from tests.dashboards.snapshot_reports import STEPS, circuit_size, final_lineage, reports

IMAGES = ["heads/importance", "heads/membership", "heads/circuit", "heads/activation_frequency", "heads/survival", "heads/cohorts"]


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """Offline W&B writing under ``tmp_path``; wandb reads its environment once per setup, so tear it down around."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_RUN_ID", raising=False)
    wandb.teardown()
    yield tmp_path
    wandb.teardown()


def _written_run(root):
    """The offline run's directory and transaction log, once wandb's service has shut down and flushed it."""
    wandb.teardown()
    (run_dir,) = (root / "wandb").glob("offline-run-*")
    (log,) = run_dir.glob("run-*.wandb")
    return run_dir, log


def _feed(dashboard: WandbDashboard, first_step: int = 0) -> None:
    """Snapshots from ``first_step`` on (a tracker restored from a checkpoint starts later), a failure, a summary."""
    for report in reports():
        if report.step >= first_step:
            dashboard.snapshot(report)
    dashboard.failure(40, "scoring raised ValueError")
    dashboard.summary({"alignment/pearson": 0.5, "alignment/best_lag": 2, "alignment/note": None})


def test_own_run_logs_heads_on_the_global_step_axis_and_is_finished(offline):
    dashboard = WandbDashboard(project="sparks-test", run_name="grpo-1", group="exp", job_type="grpo", config={"interval": 10})
    _feed(dashboard)
    run = dashboard.run
    assert (run.group, run.job_type, run.name, dict(run.config)) == ("exp", "grpo", "grpo-1", {"interval": 10})
    dashboard.close()
    assert wandb.run is None
    run_dir, log = _written_run(offline)
    assert wandb_records.exited(log)
    assert wandb_records.step_metrics(log)["heads/*"] == "train/global_step"

    rows = wandb_records.history(log)
    assert [row["train/global_step"] for row in rows] == [*STEPS, 40]
    assert all(row["_step"] == index for index, row in enumerate(rows))  # W&B's own counter, not the global step
    for row in rows[:-1]:
        step = row["train/global_step"]
        assert row["heads/circuit_size"] == circuit_size(step) and row["heads/failed"] == 0
        assert row["heads/faithfulness"] == 0.5 + step / 100 and row["heads/null_churn"] == 0.18
        assert {"heads/confident_births", "heads/confident_prunings", "heads/stability"} <= set(row)
        for name in IMAGES:
            image = run_dir / "files" / row[f"{name}/path"]
            assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and row[f"{name}/_type"] == "image-file"
        assert ("heads/effect/path" in row) == (step != STEPS[0])
    assert rows[-1]["heads/failed"] == 1 and "heads/importance/path" not in rows[-1]

    increments = [json.loads((run_dir / "files" / row["heads/events/path"]).read_text()) for row in rows[:-1]]
    assert all(increment["columns"] == EVENT_COLUMNS for increment in increments)
    logged = [event for increment in increments for event in increment["data"]]
    assert logged == event_rows(final_lineage().events)
    assert rows[-2]["heads/events/nrows"] == len(logged)

    summary = wandb_records.summary(log)
    assert summary["alignment/pearson"] == 0.5 and summary["alignment/best_lag"] == 2
    assert summary["heads/failures"] == 1
    assert summary["heads/last_failure"] == "step 40: scoring raised ValueError"


def test_a_restored_tracker_joins_the_trainer_run_leaves_it_running_and_shows_all_events(offline):
    trainer_run = wandb.init(project="sparks-test", name="trainer")
    trainer_run.log({"train/reward": 0.1, "train/global_step": 15})
    dashboard = WandbDashboard(project="ignored", config={"tracker/interval": 10})
    _feed(dashboard, first_step=20)
    dashboard.close()
    assert dashboard.run is None and wandb.run is trainer_run and trainer_run.config["tracker/interval"] == 10
    trainer_run.finish()
    run_dir, log = _written_run(offline)
    rows = wandb_records.history(log)
    assert [row["train/global_step"] for row in rows] == [15, 20, 30, 40]
    increments = [json.loads((run_dir / "files" / row["heads/events/path"]).read_text())["data"] for row in rows[1:3]]
    assert increments[0] + increments[1] == event_rows(final_lineage().events)
    assert {row[0] for row in increments[0]} == {0, 10, 20}  # the first log carries the events from before the resume


def test_a_tracked_training_run_shares_one_wandb_run_with_the_trainer(offline, monkeypatch, random_model_dir):
    from tests.callbacks.training_runs import TRACKER, run_grpo

    for name in ("WANDB_JOB_TYPE", "WANDB_RUN_GROUP", "WANDB_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    tracker = TRACKER | {"dashboards": ["wandb"], "group": "exp-7"}
    run_grpo(random_model_dir, offline / "run", 2, tracker, "--report_to", "wandb", "--run_name", "grpo-tracked")
    _, log = _written_run(offline)
    (run,) = [record.run for record in wandb_records.records(log) if record.HasField("run")][:1]
    assert (run.run_group, run.job_type, run.display_name, run.project) == ("exp-7", "grpo", "grpo-tracked", "sparks")
    rows = wandb_records.history(log)
    rewards = [row["train/global_step"] for row in rows if "train/reward" in row]
    heads = [row["train/global_step"] for row in rows if "heads/circuit_size" in row]
    assert rewards == [1, 2] and heads == [0, 2]
