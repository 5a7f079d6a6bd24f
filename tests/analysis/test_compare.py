"""``sparks compare``: the report's figures and summary table hold what two synthetic run stores were given,
and bad input ends with one line and nothing written."""

from __future__ import annotations

import html
import json
import math
import os
import re

import numpy as np
import pytest

from sparks.analysis import compare_report
from sparks.analysis.cli import main
from sparks.analysis.compare import churn_ratio_interval, holm
from tests.analysis.synthetic_runs import ALIGNMENT, FAITHFULNESS, NULL_CHURN, STEPS, pairs, reward, write_run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return {name: write_run(root / name, name) for name in ("cumulative", "dynamic")}


@pytest.fixture(scope="module")
def report(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "compare"
    assert main(["compare", str(runs["cumulative"]), str(runs["dynamic"] / "sparks"), "--out", str(out)]) == 0
    text = (out / "report.html").read_text()
    data = json.loads(html.unescape(re.search(r'<script type="application/json" id="sparks-data">(.*?)</script>', text, re.S).group(1)))
    return out, text, data


def traces(data, chart):
    """{panel title: {trace name: trace}} of one chart in the report's data."""
    (found,) = [item for item in data["charts"] if item["name"] == chart]
    return {panel["title"]: {trace["name"]: trace for trace in panel["traces"]} for panel in found["panels"]}


def close(values, expected):
    return np.shape(values) == np.shape(expected) and np.allclose(np.array(values, dtype=float), np.array(expected, dtype=float), equal_nan=True)


def test_report_holds_every_figure_offline_with_a_png_each(report):
    out, text, data = report
    names = [chart["name"] for chart in data["charts"]]
    assert names == ["emergent", "churn", "cohorts", "activation", "jaccard", "survival", "faithfulness"]
    assert sorted(path.name for path in out.iterdir()) == sorted([f"{name}.png" for name in names] + ["report.html"])
    assert all((out / f"{name}.png").read_bytes().startswith(b"\x89PNG") for name in names)
    assert text.count('class="plotly-graph-div"') == len(names)
    # plotly.js inline, nothing fetched (the URLs inside plotly.js belong to map traces, which the report has none of)
    assert "plotly.js v" in text and not re.search(r"<script[^>]*\ssrc=|<link[^>]*\shref=", text)
    assert data["runs"] == ["cumulative", "dynamic"] and data["warnings"] == []


def test_emergent_churn_and_reward_figures_hold_the_stores_series(report):
    data = report[2]
    emergent, rewards = traces(data, "emergent").values()
    assert close(emergent["cumulative: emergent"]["y"], [0, 1, 2, 2]) and close(emergent["dynamic: emergent"]["y"], [0, 1, 1, 1])
    assert close(emergent["cumulative: confident"]["y"], [0, 1, 2, 2]) and emergent["dynamic: emergent"]["x"] == STEPS
    # dynamic at step 20: head (1, 1) emerges in every replicate, so the count stays 1 and it is confident
    assert close(emergent["dynamic: confident"]["y"], [0, 1, 1, 1])
    assert close(rewards["dynamic: reward"]["y"], [reward("dynamic", step) for step in range(1, 31)])
    churn = traces(data, "churn")
    assert close(churn["cumulative"]["cumulative: confident births"]["y"], [0, 1, 1, 0])
    assert close(churn["cumulative"]["cumulative: confident prunings"]["y"], [0, 0, 0, 0])
    # dynamic: the pruning of (1, 0) at step 20 happens in 8 of 10 replicates, below the 0.9 level
    assert close(churn["dynamic"]["dynamic: confident births"]["y"], [0, 1, 1, 1])
    assert close(churn["dynamic"]["dynamic: confident prunings"]["y"], [0, 0, 0, 1])
    assert close(churn["dynamic"]["null churn"]["high"], NULL_CHURN["dynamic"]) and close(churn["dynamic"]["null churn"]["low"], [0] * 4)


def test_cohort_activation_jaccard_survival_faithfulness_figures(report):
    data = report[2]
    cohorts = traces(data, "cohorts")
    assert {name: trace["y"] for name, trace in cohorts["cumulative"].items()} == {
        "first at step 0": [1, 1, 1, 1], "first at step 10": [0, 1, 1, 1], "first at step 20": [0, 0, 1, 1]}
    assert {name: trace["y"] for name, trace in cohorts["dynamic"].items()} == {
        "first at step 0": [1, 1, 1, 1], "first at step 10": [0, 1, 0, 0], "first at step 20": [0, 0, 1, 0],
        "first at step 30": [0, 0, 0, 1]}
    heatmap = traces(data, "activation")["cumulative"]["cumulative"]
    assert close(heatmap["z"], [[1, 0.75, 0, 0], [0, 0, 0.5, 0]]) and heatmap["outline"] == [[0, 0], [0, 1], [1, 2]]
    previous, base = traces(data, "jaccard").values()
    assert close(previous["cumulative"]["y"], [math.nan, 1 / 2, 2 / 3, 1]) and close(previous["dynamic"]["y"], [math.nan, 1 / 2, 1 / 3, 1 / 3])
    assert close(base["cumulative"]["y"], [1, 1 / 2, 1 / 3, 1 / 3]) and close(base["dynamic"]["y"], [1, 1 / 2, 1 / 2, 1 / 2])
    (survival,) = traces(data, "survival").values()
    # dynamic lives: (1,0) 10 steps, (1,1) 10 steps, (1,3) censored at 0; replicates 8, 9: (1,0) lives 20 steps
    assert survival["dynamic"]["x"] == [0, 10, 20] and close(survival["dynamic"]["y"], [1, 0, 0])
    assert close(survival["dynamic: 95% band"]["high"], [1, 0.5, 0]) and close(survival["dynamic: 95% band"]["low"], [1, 0, 0])
    assert close(survival["cumulative"]["y"], [1] * len(survival["cumulative"]["x"]))
    (faithful,) = traces(data, "faithfulness").values()
    expected = [[math.nan] * 3 if value is None else value for value in FAITHFULNESS["cumulative"]]
    assert close(faithful["cumulative"]["y"], [row[0] for row in expected])
    assert close(faithful["cumulative: 95% interval"]["low"], [row[1] for row in expected])
    assert close(faithful["cumulative: 95% interval"]["high"], [row[2] for row in expected])


def test_summary_table_says_which_run_is_cumulative_with_intervals(report):
    _, text, data = report
    cumulative, dynamic = data["summary"]
    assert cumulative["mode"] == "cumulative" and dynamic["mode"] == "dynamic"
    assert (cumulative["share_alive"]["value"], cumulative["share_alive"]["low"], cumulative["share_alive"]["high"]) == (1, 1, 1)
    assert dynamic["share_alive"]["value"] == pytest.approx(1 / 3) and dynamic["share_alive"]["high"] == pytest.approx(1 / 3)
    assert cumulative["churn_ratio"]["value"] == pytest.approx(2 / 4.5) and dynamic["churn_ratio"]["value"] == pytest.approx(4 / 2.0)
    assert 0 <= cumulative["churn_ratio"]["low"] <= cumulative["churn_ratio"]["high"] <= 1 / 1.0
    assert cumulative["median_lifespan"]["value"] == "inf" and (dynamic["median_lifespan"]["value"], dynamic["median_lifespan"]["low"],
                                                                dynamic["median_lifespan"]["high"]) == (10, 10, 10)
    assert (cumulative["final_emergent"]["value"], dynamic["final_emergent"]["value"]) == (2, 1)
    assert "10 bootstrap replicate lineages" in cumulative["share_alive"]["source"]
    row = re.search(r'<table id="summary">.*?<tr><td>dynamic</td>(.*?)</tr>', text).group(1)
    assert re.findall(r"<td>(.*?)</td>", row) == ["4", "dynamic", "0.33 [0.33, 0.33]",
                                                  f"2.00 [{dynamic['churn_ratio']['low']:.2f}, {dynamic['churn_ratio']['high']:.2f}]",
                                                  "10 [10, 10]", "1 [1, 1]"]
    assert "<td>cumulative</td><td>4</td><td>cumulative</td><td>1.00 [1.00, 1.00]</td>" in text
    assert "not reached [not reached, not reached]" in text


def test_alignment_table_holds_the_stored_p_values_and_their_holm_adjustment(report):
    data = report[2]
    rows = {(row["series"], row["method"]): row for row in data["alignment"]["cumulative"]}
    for test, result in ALIGNMENT["cumulative"].items():
        row = rows[tuple(test.split("/"))]
        assert (row["r"], row["p"], row["lag"]) == ((None, None, None) if result is None else result[:3])
    # Holm over p = 0.01, 0.04, 0.03: 3 * 0.01, then max(0.03, 2 * 0.03), then max(0.06, 0.04)
    assert rows[("confident_churn", "pearson")]["p_holm"] == pytest.approx(0.03)
    assert rows[("confident_emergent_change", "pearson")]["p_holm"] == pytest.approx(0.06)
    assert rows[("confident_churn", "spearman")]["p_holm"] == pytest.approx(0.06)
    assert rows[("confident_emergent_change", "spearman")]["p_holm"] is None
    assert data["alignment"]["dynamic"][0]["insufficient"] is True
    assert "insufficient pairs" in report[1]


def test_holm_and_churn_interval_on_hand_cases():
    assert holm([0.04, math.nan, 0.01, 0.5]) == pytest.approx([0.08, math.nan, 0.03, 0.5], nan_ok=True)
    # the same confident churn / null churn at every snapshot: every resample gives that ratio
    assert churn_ratio_interval(np.array([0, 2, 4, 1]), np.array([9, 1, 2, 0.5])) == pytest.approx((2.0, 2.0))


def test_a_run_on_other_pairs_is_left_out_with_a_warning(runs, tmp_path, capsys):
    other = write_run(tmp_path / "other", "dynamic", probe_pairs=pairs(offset=5))
    out = tmp_path / "compare"
    assert main(["compare", str(runs["cumulative"]), str(runs["dynamic"]), str(other), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "sparks: warning: left out other: its 3 probe pairs differ from the 3 cumulative was scored on" in err
    assert "left out other" in (out / "report.html").read_text()


BAD_INPUT = {
    "not a run": (lambda root, runs: [str(root)], "not a sparks run (no sparks/run.json)"),
    "no snapshots": (lambda root, runs: [str(runs["cumulative"]), str(write_run(root / "empty", "dynamic", snapshots=0))],
                     "the run has no snapshots yet"),
    "head layout": (lambda root, runs: [str(runs["cumulative"]), str(write_run(root / "wide", "dynamic", layout={"layers": 2, "heads": 8}))],
                    "no two runs are comparable: left out wide: its head layout {'layers': 2, 'heads': 8} differs"),
    "probe pairs": (lambda root, runs: [str(runs["cumulative"]), str(write_run(root / "other", "dynamic", probe_pairs=pairs(4)))],
                    "no two runs are comparable: left out other: its 4 probe pairs differ from the 3 cumulative was scored on"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_runs_end_with_one_line_and_nothing_written(case, runs, tmp_path, capsys):
    arguments, message = BAD_INPUT[case]
    out = tmp_path / "compare"
    assert main(["compare", *arguments(tmp_path, runs), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("sparks: error: ") and message in err
    assert not out.exists() and not list(tmp_path.glob(".compare*"))


def test_an_unwritable_or_used_out_is_refused_before_anything_is_drawn(runs, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("x")
    for out, message in [(blocker / "compare", "is not a directory to write in"),
                         (used, "exists and is not an empty directory")]:
        assert main(["compare", str(runs["cumulative"]), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "sparks: error: --out: " in err and message in err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["file", "used"] and os.listdir(used) == ["keep.txt"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only directory")
def test_a_read_only_directory_is_refused(runs, tmp_path, capsys):
    tmp_path.chmod(0o500)
    try:
        assert main(["compare", str(runs["cumulative"]), "--out", str(tmp_path / "compare")]) == 2
    finally:
        tmp_path.chmod(0o700)
    assert "is not writable" in capsys.readouterr().err


def test_a_failed_write_leaves_nothing_behind(runs, tmp_path, monkeypatch, capsys):
    def full_disk(figure, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(compare_report, "save_png", full_disk)
    assert main(["compare", str(runs["cumulative"]), "--out", str(tmp_path / "compare")]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_the_page_draws_each_chart_from_its_data(runs):
    from sparks.analysis.compare import load_runs, replicate_lineages
    from sparks.analysis.compare_report import charts, plotly_figure

    loaded, _ = load_runs([runs["cumulative"], runs["dynamic"]])
    for chart in charts(loaded, [replicate_lineages(run.lineage) for run in loaded]):
        drawn = plotly_figure(chart).data
        for row, trace in ((row, trace) for row, panel in enumerate(chart.panels, start=1) for trace in panel.traces):
            if trace.kind == "heatmap":
                assert any(item.type == "heatmap" and close(item.z, trace.z) for item in drawn), chart.name
            elif trace.kind != "band":
                assert any(item.name == trace.name and close(item.x, trace.x) and close(item.y, trace.y) for item in drawn), trace.name
            else:
                # one filled trace per stretch without gaps: together they hold every interval end there is
                highs = [value for item in drawn if item.name == trace.name and item.fill == "tonexty"
                         and item.xaxis == ("x" if row == 1 else f"x{row}") for value in item.y]
                assert close(highs, [value for value in trace.high if value is not None]), trace.name


@pytest.mark.hostile
def test_a_damaged_run_is_named_and_left_out_and_the_others_compared(tmp_path, capsys):
    root = tmp_path / "runs"
    runs = {name: write_run(root / name, name) for name in ("cumulative", "dynamic")}
    damaged = write_run(root / "damaged", "dynamic")
    snapshot = damaged / "sparks" / "snapshots" / f"step-{STEPS[1]:08d}"
    (snapshot / "scores.safetensors").unlink()
    assert main(["compare", str(runs["cumulative"]), str(damaged), str(runs["dynamic"]), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert f"sparks: warning: left out damaged: {snapshot / 'scores.safetensors'}: unreadable (" in err
    data = json.loads(html.unescape(re.search(r'id="sparks-data">(.*?)</script>', (tmp_path / "out" / "report.html").read_text(),
                                              re.S).group(1)))
    assert data["runs"] == ["cumulative", "dynamic"] and data["warnings"][0].startswith("left out damaged: ")
    assert main(["compare", str(runs["cumulative"]), str(damaged), "--out", str(tmp_path / "two")]) == 2
    assert capsys.readouterr().err.startswith("sparks: error: fewer than two runs can be read: left out damaged: ")
    assert not (tmp_path / "two").exists()
