"""``sparks compare --wandb``, offline: the comparison run is read back from its transaction log and files
(job type, group, the report's tables cell for cell, every figure, the page), and bad input is refused
with one line before anything is written."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest
import wandb

import sparks.dashboards.wandb_key
from sparks.analysis.cli import main
from tests.analysis.synthetic_runs import write_run
from tests.dashboards import wandb_records

CHARTS = ["emergent", "churn", "cohorts", "activation", "jaccard", "survival", "faithfulness"]


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """Offline W&B writing under ``tmp_path``, no user identity variables; wandb reads its environment once per setup."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    for name in ("WANDB_RUN_ID", "WANDB_PROJECT", "WANDB_RUN_GROUP", "WANDB_JOB_TYPE"):
        monkeypatch.delenv(name, raising=False)
    wandb.teardown()
    yield tmp_path
    wandb.teardown()


def grouped_run(directory: Path, name: str, group: str | None) -> Path:
    """A synthetic run store whose tracker config names ``group`` (as a tracker with ``group:`` writes it)."""
    write_run(directory, name)
    path = directory / "sparks" / "run.json"
    run = json.loads(path.read_text())
    run["config"]["group"] = group
    path.write_text(json.dumps(run))
    return directory


def written_run(root: Path):
    """The offline run's directory, its ``wandb.init`` record and its one history row, once wandb has flushed them."""
    wandb.teardown()
    (run_dir,) = (root / "wandb").glob("offline-run-*")
    (log,) = run_dir.glob("run-*.wandb")
    (init,) = [record.run for record in wandb_records.records(log) if record.HasField("run")][:1]
    (row,) = wandb_records.history(log)
    assert wandb_records.exited(log)
    return run_dir, init, row


def html_table(page: str, table_id: str) -> list[list[str]]:
    """Header and rows of one table of the report page, cell texts unescaped."""
    table = re.search(rf'<table id="{table_id}">(.*?)</table>', page).group(1)
    return [[html.unescape(cell) for cell in re.findall(r"<t[hd]>(.*?)</t[hd]>", row)] for row in re.findall(r"<tr>(.*?)</tr>", table)]


def test_the_comparison_run_sits_in_the_runs_group_with_the_reports_tables_and_figures(offline, capsys):
    runs = [grouped_run(offline / name, name, "exp-3") for name in ("cumulative", "dynamic")]
    out = offline / "compare"
    assert main(["compare", *map(str, runs), "--out", str(out), "--wandb"]) == 0
    assert "logged the comparison to W&B (sparks, group exp-3, job type compare)" in capsys.readouterr().out
    run_dir, init, row = written_run(offline)
    assert (init.job_type, init.run_group, init.project, init.display_name) == ("compare", "exp-3", "sparks", "compare cumulative vs dynamic")

    page = (out / "report.html").read_text()
    for name, rows in (("summary", 2), ("alignment", 5)):
        assert row[f"compare/{name}/_type"] == "table-file"
        logged = json.loads((run_dir / "files" / row[f"compare/{name}/path"]).read_text())
        header, *cells = html_table(page, name)
        assert (logged["columns"], logged["data"]) == (header, cells) and len(cells) == rows
    summary = json.loads((run_dir / "files" / row["compare/summary/path"]).read_text())["data"]
    assert [cells[:4] for cells in summary] == [["cumulative", "4", "cumulative", "1.00 [1.00, 1.00]"],
                                                ["dynamic", "4", "dynamic", "0.33 [0.33, 0.33]"]]

    for chart in CHARTS:
        assert row[f"compare/{chart}/_type"] == "image-file"
        assert (run_dir / "files" / row[f"compare/{chart}/path"]).read_bytes() == (out / f"{chart}.png").read_bytes()
    assert row["compare/report/_type"] == "html-file"
    assert (run_dir / "files" / row["compare/report/path"]).read_text() == page


def test_group_flag_and_the_users_variables(offline, monkeypatch, capsys):
    runs = [grouped_run(offline / name, name, group) for name, group in (("cumulative", "a"), ("dynamic", None))]
    monkeypatch.setenv("WANDB_JOB_TYPE", "grpo")  # left over from a training shell: the comparison stays "compare"
    monkeypatch.setenv("WANDB_PROJECT", "theirs")
    assert main(["compare", *map(str, runs), "--out", str(offline / "compare"), "--wandb", "--group", "chosen", "--project", "mine"]) == 0
    _, init, _ = written_run(offline)
    assert (init.job_type, init.run_group, init.project) == ("compare", "chosen", "theirs")


@pytest.mark.parametrize(
    ("groups", "argv", "line"),
    [
        (("a", None), ["--wandb"], r"--group: the runs are not in one group \(.*cumulative: a, .*dynamic: none\); "
                                   r"name the comparison's group with --group"),
        (("a", "b"), ["--wandb"], r"--group: the runs are not in one group \(.*cumulative: a, .*dynamic: b\)"),
        (("a", "a"), ["--group", "a"], r"--group names where --wandb logs the comparison: add --wandb"),
        (("a", "a"), ["--project", "p"], r"--project names where --wandb logs the comparison: add --wandb"),
    ],
)
def test_runs_in_no_one_group_or_flags_without_wandb_are_refused_before_anything_is_written(offline, capsys, groups, argv, line):
    runs = [grouped_run(offline / name, name, group) for name, group in zip(("cumulative", "dynamic"), groups)]
    assert main(["compare", *map(str, runs), "--out", str(offline / "compare"), *argv]) == 2
    (error,) = capsys.readouterr().err.splitlines()
    assert re.fullmatch(rf"sparks: error: {line}.*", error)
    assert not (offline / "compare").exists() and not (offline / "wandb").exists()


def test_wandb_online_without_a_key_is_refused_before_anything_is_written(offline, monkeypatch, capsys):
    runs = [grouped_run(offline / name, name, "exp") for name in ("cumulative", "dynamic")]
    monkeypatch.setattr(sparks.dashboards.wandb_key, "wandb_lacks_a_key", lambda: True)  # W&B online, no key (tests/test_recipes.py)
    assert main(["compare", *map(str, runs), "--out", str(offline / "compare"), "--wandb"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        'sparks: error: --wandb: wandb needs a W&B API key when online: run "wandb login", set WANDB_API_KEY, '
        "or set WANDB_MODE=offline"]
    assert not (offline / "compare").exists() and not (offline / "wandb").exists()


def test_wandb_disabled_logs_nothing_and_says_so(offline, monkeypatch, capsys):
    runs = [grouped_run(offline / name, name, "exp") for name in ("cumulative", "dynamic")]
    monkeypatch.setenv("WANDB_MODE", "disabled")
    wandb.teardown()
    assert main(["compare", *map(str, runs), "--out", str(offline / "compare"), "--wandb"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "W&B is disabled (WANDB_MODE=disabled): the comparison was not logged"
    assert (offline / "compare" / "report.html").is_file() and not (offline / "wandb").exists()


def test_the_users_wandb_run_group_wins_over_the_runs_groups(offline, monkeypatch):
    runs = [grouped_run(offline / name, name, group) for name, group in (("cumulative", "a"), ("dynamic", "b"))]
    monkeypatch.setenv("WANDB_RUN_GROUP", "theirs")
    assert main(["compare", *map(str, runs), "--out", str(offline / "compare"), "--wandb"]) == 0
    _, init, _ = written_run(offline)
    assert (init.job_type, init.run_group, init.project) == ("compare", "theirs", "sparks")


def test_a_run_wandb_will_not_start_ends_with_one_line_naming_the_written_report(offline, monkeypatch, capsys):
    runs = [grouped_run(offline / name, name, "exp") for name in ("cumulative", "dynamic")]

    def unreachable(**_):
        raise wandb.errors.CommError("could not reach api.wandb.ai\nretrying")

    monkeypatch.setattr(wandb, "init", unreachable)
    assert main(["compare", *map(str, runs), "--out", str(offline / "compare"), "--wandb"]) == 2
    report = offline / "compare" / "report.html"
    assert capsys.readouterr().err.splitlines() == [
        f"sparks: error: --wandb: W&B did not start the run (could not reach api.wandb.ai); the report is at {report}"]
    assert report.is_file()
