"""The user's reporting settings are kept: an explicit `report_to: none` reports nowhere, and the
tracker's W&B group and job type reach the runs without leaking into the process environment."""

from __future__ import annotations

import os

import pytest
import trackio
import wandb
from transformers import TrainingArguments
from trl import GRPOConfig, ModelConfig

import sparks.train.arguments
from sparks.dashboards.wandb_dashboard import WandbDashboard
from sparks.runs.store import RunStore
from sparks.train.arguments import GRPOScriptArguments, check_training_args, parse_recipe
from sparks.train.run import tracker_callbacks
from tests.callbacks.training_runs import TRACKER, lineage_of, run_grpo
from tests.dashboards import test_wandb_dashboard, wandb_records

IDENTITY = ("WANDB_PROJECT", "WANDB_RUN_GROUP", "WANDB_JOB_TYPE")
offline = test_wandb_dashboard.offline  # the fixture: offline W&B under tmp_path
_written_run = test_wandb_dashboard._written_run


def _wandb_environment() -> dict[str, str | None]:
    """The run identity variables (wandb itself adds WANDB_SERVICE while its service runs)."""
    return {name: os.environ.get(name) for name in IDENTITY}


@pytest.mark.parametrize(
    ("recipe_line", "argv", "reports"),
    [
        ("report_to: none", (), False),
        ("report_to: trackio", ("--report_to", "none"), False),
        ("", ("--report-to", "none"), False),
        ("report_to: []", (), False),
        ("", (), True),  # transformers' default is "none" too, but the recipe said nothing: the dashboards stay
        ("report_to: none", ("--report_to", "trackio"), True),
    ],
)
def test_report_to_none_in_the_recipe_or_on_the_command_line_turns_the_dashboards_off(
    recipe_line, argv, reports, tmp_path, monkeypatch
):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"model_name_or_path: model\nuse_cpu: true\nbf16: false\n{recipe_line}\n"
                      "tracker: {dashboards: [trackio, wandb], num_problems: 8}\n")
    script, training, _ = parse_recipe((GRPOScriptArguments, GRPOConfig, ModelConfig),
                                       ["--config", str(recipe), "--output_dir", str(tmp_path / "run"), *argv])
    tracker = script.tracker_config()
    assert tracker.dashboards == (("trackio", "wandb") if reports else ("none",))
    tracker_callbacks(tracker, training, "grpo")
    assert ("trackio" in training.report_to and "wandb" in training.report_to) == reports
    if not reports:
        assert training.report_to == []
        monkeypatch.setattr(sparks.train.arguments, "wandb_lacks_a_key", lambda: True)  # W&B online, no key
        check_training_args(training, tracker)  # nothing will start a W&B run: no key is asked for


def test_an_explicit_report_to_none_starts_no_dashboard_and_still_writes_the_run_store(random_model_dir, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a dashboard run was started under report_to none")

    monkeypatch.setattr(trackio, "init", refuse)
    monkeypatch.setattr(wandb, "init", refuse)
    tracker = {name: value for name, value in TRACKER.items() if name != "dashboards"}  # "auto": W&B or trackio
    run_grpo(random_model_dir, tmp_path, 2, tracker)  # the small runs say --report_to none
    assert lineage_of(tmp_path).steps == [0, 2]
    assert RunStore(tmp_path).run()["config"]["dashboards"] == ["none"]


def test_the_trainers_wandb_run_carries_group_and_job_type_and_the_environment_is_left_as_found(
    offline, monkeypatch, random_model_dir
):
    for name in IDENTITY:
        monkeypatch.delenv(name, raising=False)
    before = _wandb_environment()
    tracker = TRACKER | {"dashboards": ["wandb"], "group": "exp-7"}
    run_grpo(random_model_dir, offline / "run", 2, tracker, "--report_to", "wandb", "--run_name", "grpo-tracked")
    assert _wandb_environment() == before
    _, log = _written_run(offline)
    (run,) = [record.run for record in wandb_records.records(log) if record.HasField("run")][:1]
    assert (run.run_group, run.job_type, run.display_name, run.project) == ("exp-7", "grpo", "grpo-tracked", "sparks")
    rows = wandb_records.history(log)
    assert any("train/reward" in row for row in rows) and any("heads/circuit_size" in row for row in rows)
    assert wandb_records.exited(log)


def test_the_users_wandb_group_and_job_type_win_and_stay(offline, monkeypatch):
    monkeypatch.setenv("WANDB_RUN_GROUP", "user-group")
    monkeypatch.setenv("WANDB_JOB_TYPE", "user-job")
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    before = _wandb_environment()
    dashboard = WandbDashboard(project="sparks-test", run_name="own", group="exp", job_type="grpo")
    dashboard.summary({"heads/snapshots": 0})
    assert (dashboard.run.group, dashboard.run.job_type, dashboard.run.project) == ("user-group", "user-job", "sparks-test")
    dashboard.close()
    assert _wandb_environment() == before


def test_a_training_that_raises_finishes_the_trainers_wandb_run_as_failed(offline, tmp_path, monkeypatch):
    from sparks.dashboards.wandb_dashboard import trainer_run

    for name in IDENTITY:
        monkeypatch.delenv(name, raising=False)
    before = _wandb_environment()
    args = TrainingArguments(output_dir=str(tmp_path / "run"), report_to="wandb", run_name="broken", project="sparks-test",
                             use_cpu=True)
    with pytest.raises(RuntimeError, match="training broke"), trainer_run(args, "exp", "grpo"):
        assert (wandb.run.group, wandb.run.job_type, wandb.run.name) == ("exp", "grpo", "broken")
        raise RuntimeError("training broke")
    assert wandb.run is None and _wandb_environment() == before
    _, log = _written_run(offline)
    assert [record.exit.exit_code for record in wandb_records.records(log) if record.HasField("exit")] == [1]


def test_a_trainer_not_reporting_to_wandb_starts_no_run(tmp_path):
    from sparks.dashboards.wandb_dashboard import trainer_run

    with trainer_run(TrainingArguments(output_dir=str(tmp_path / "run"), report_to="trackio", use_cpu=True), "exp", "grpo"):
        assert wandb.run is None
