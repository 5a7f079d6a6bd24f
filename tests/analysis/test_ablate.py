import json
import random
import shutil
from collections import Counter
from contextlib import contextmanager

import numpy as np
import pytest
import torch
import transformers

from sparks.analysis import ablate
from sparks.analysis.ablate import evaluate_conditions, matched_random_heads, summarise
from sparks.analysis.cli import main
from sparks.tasks import arith, formats
from sparks.tasks.evaluation import grade
from tests.analysis.synthetic_runs import write_run


@pytest.mark.parametrize("heads", [[(0, 1), (0, 2), (1, 3)], [(1, 0)], [(0, 0), (0, 1), (0, 2), (1, 1)]])
def test_matched_random_controls_match_size_and_layers(heads):
    num_heads = 6
    draws = [matched_random_heads(heads, num_heads, random.Random(seed)) for seed in range(30)]
    for drawn in draws:
        assert len(drawn) == len(heads) and len(set(drawn)) == len(drawn)
        assert Counter(layer for layer, _ in drawn) == Counter(layer for layer, _ in heads)
        assert not set(drawn) & set(heads)
        assert all(0 <= head < num_heads for _, head in drawn)
    assert len({tuple(drawn) for drawn in draws}) > 1  # random, not one fixed set


def test_no_control_matches_a_set_that_fills_its_layer():
    with pytest.raises(ValueError, match="layer 0 has 3 of its 4 heads"):
        matched_random_heads([(0, 0), (0, 1), (0, 2)], 4, random.Random(0))


def _hooks(model):
    return sum(len(module._forward_pre_hooks) + len(module._forward_hooks) for module in model.modules())


@pytest.fixture(scope="module")
def model_and_tokenizer(random_model_dir):
    model = transformers.AutoModelForCausalLM.from_pretrained(random_model_dir)
    return model, transformers.AutoTokenizer.from_pretrained(random_model_dir)


PROBLEMS = arith.problems("test", [1, 4], 4, 0)


def _evaluate(model, tokenizer, conditions, mode, factor=None, seeds=(0,)):
    return evaluate_conditions(model, tokenizer, PROBLEMS, conditions, mode=mode, factor=factor, seeds=seeds, temperature=1.0,
                               style="think", system_prompt=None, max_new_tokens=6, batch_size=3, check=formats.is_correct)


@pytest.mark.parametrize(("mode", "factor"), [("zero", None), ("mean", None), ("scale", 3.0)])
def test_each_condition_leaves_the_model_exactly_as_found(model_and_tokenizer, monkeypatch, mode, factor):
    model, tokenizer = model_and_tokenizer
    model.train()
    weights = {name: value.clone() for name, value in model.state_dict().items()}
    rng = torch.get_rng_state()
    exits = []
    changed_inside = []
    real = ablate.intervention

    @contextmanager
    def checked(model_, mode_, heads, factor_, means):
        with real(model_, mode_, heads, factor_, means):
            changed_inside.append(_hooks(model_) > 0)
            yield
        exits.append(_hooks(model_) == 0 and all(torch.equal(value, weights[name]) for name, value in model_.state_dict().items()))

    monkeypatch.setattr(ablate, "intervention", checked)
    first = _evaluate(model, tokenizer, {"model": []}, mode, factor, seeds=(0, 1))
    after = _evaluate(model, tokenizer, {"heads": [(0, 1), (1, 2)], "model": []}, mode, factor, seeds=(0, 1))
    assert exits == [True] * 6 and changed_inside == [False, False, True, True, False, False]
    assert model.training and all(module.training for module in model.modules())
    assert torch.equal(torch.get_rng_state(), rng)
    # the unchanged model answers the same after an intervened condition as before it: nothing leaked
    strip = lambda records: [{k: v for k, v in r.items() if k != "condition"} for r in records]  # noqa: E731
    assert strip([r for r in after if r["condition"] == "model"]) == strip(first)
    heads_records = [r for r in after if r["condition"] == "heads"]
    assert [r["completion"] for r in heads_records] != [r["completion"] for r in first]
    # the unchanged condition is exactly grade() on the model with the seed set
    model.eval()
    torch.manual_seed(1)
    graded = grade(model, tokenizer, PROBLEMS, ("think",), None, 6, 3, temperature=1.0)
    model.train()
    assert [item.completion for item in graded] == [r["completion"] for r in first if r["seed"] == 1]


def _records(level_results: dict[str, dict[int, list[bool]]]) -> list[dict]:
    """Records of groups whose problems (numbered per level, 10 a level) are right or wrong as given."""
    records = []
    for condition, by_level in level_results.items():
        for level, results in by_level.items():
            for index, right in enumerate(results):
                records.append({"condition": condition, "seed": 0, "problem": 10 * (level - 1) + index, "level": level,
                                "correct": right, "error": None if right else ("slip" if level == 1 else "loop")})
    return records


def test_summary_by_hand():
    right, wrong = [True] * 10, [False] * 10
    half = [True] * 5 + [False] * 5
    records = _records({
        "model": {1: right, 2: half, 3: wrong},
        "heads": {1: wrong, 2: half, 3: right},
        "random-1": {1: right, 2: half, 3: wrong},
        "random-2": {1: half, 2: half, 3: wrong},
    })
    summary = summarise(records, [1, 2, 3])
    pass_at_1 = summary["pass_at_1"]
    assert pass_at_1["model"]["1"]["value"] == 1.0 and pass_at_1["heads"]["3"]["value"] == 1.0
    assert pass_at_1["random"]["1"]["value"] == 0.75  # the draws pooled: (1 + 0.5) / 2
    assert pass_at_1["model"]["all"]["value"] == pytest.approx(0.5) and pass_at_1["model"]["2"]["problems"] == 10
    assert pass_at_1["model"]["1"]["low"] == pass_at_1["model"]["1"]["high"] == 1.0  # no spread, no width
    low, high = pass_at_1["model"]["2"]["low"], pass_at_1["model"]["2"]["high"]
    assert 0.1 < low < 0.5 < high < 0.9
    against_random = summary["differences"]["heads - random"]
    assert against_random["easy"]["value"] == -0.75 and against_random["hard"]["value"] == 1.0
    assert summary["differences"]["heads - model"]["2"] == {"value": 0.0, "low": 0.0, "high": 0.0, "problems": 10}
    assert "heads - base" not in summary["differences"]
    assert summary["errors"]["heads"]["1"]["slip"] == 10 and summary["errors"]["heads"]["3"]["loop"] == 0
    assert summary["errors"]["random"]["all"]["slip"] == 5 and summary["errors"]["random"]["all"]["loop"] == 30
    assert summary["answers"]["random"]["all"] == 60
    rates = summary["error_rates"]
    assert set(rates) == {"slip", "loop"} and rates["slip"]["heads"]["value"] == pytest.approx(1 / 3)
    assert rates["slip"]["random"]["value"] == pytest.approx(0.25 / 3)  # level 1: half of one draw's answers
    assert rates["slip"]["heads - model"]["value"] == pytest.approx(1 / 3)
    assert rates["loop"]["heads - random"]["value"] == pytest.approx(5 / 30 - 15 / 30)
    assert summary["random_draws"] == {"random-1": pytest.approx(0.5), "random-2": pytest.approx(1 / 3)}
    assert any(line.startswith("easy-versus-hard trade-off: yes") for line in summary["verdicts"])
    assert any(line.startswith("slip errors: the set makes more than the random controls: +0.250") for line in summary["verdicts"])
    assert any(line.startswith("loop errors: the set makes fewer") for line in summary["verdicts"])


def test_an_error_category_seen_a_few_times_is_not_called():
    right = [True] * 10
    few = [False] * 4 + [True] * 6  # 4 slips (level 1) against none: an interval above 0, but 4 errors are not a finding
    records = _records({"model": {1: right, 2: right}, "heads": {1: few, 2: right}, "random-1": {1: right, 2: right}})
    summary = summarise(records, [1, 2])
    assert summary["error_rates"]["slip"]["heads - random"]["low"] > 0 and summary["error_rates"]["slip"]["heads"]["count"] == 4
    assert not any(line.startswith("slip errors") for line in summary["verdicts"])
    more = [False] * 10
    summary = summarise(_records({"model": {1: right, 2: right}, "heads": {1: more, 2: right}, "random-1": {1: right, 2: right}}), [1, 2])
    assert any(line.startswith("slip errors: the set makes more") for line in summary["verdicts"])


def test_a_difference_whose_interval_holds_zero_is_not_called():
    coin = [True, False] * 5
    records = _records({"model": {1: coin, 2: coin, 3: coin}, "heads": {1: coin[::-1], 2: coin, 3: coin},
                        "random-1": {1: coin, 2: coin, 3: coin}})
    verdicts = summarise(records, [1, 2, 3])["verdicts"]
    assert "heads - model: does not change (interval holds 0)" in verdicts[0]
    assert verdicts[-1].startswith("easy-versus-hard trade-off: undecided")


ARGS = ["--mode", "scale", "--factor", "1.5", "--levels", "1", "2", "4", "--per-level", "3", "--controls", "2",
        "--seeds", "0", "1", "--max-new-tokens", "6", "--batch-size", "9"]


def test_ablate_writes_its_result_and_the_comparison_shows_it(random_model_dir, tmp_path, capsys):
    heads, base = tmp_path / "heads.json", tmp_path / "base.txt"
    heads.write_text(json.dumps([[0, 1], [1, 2], [1, 3]]))
    base.write_text("0.0, 1.1")
    out = tmp_path / "result"
    assert main(["ablate", "--model", str(random_model_dir), "--heads", str(heads), "--base-heads", str(base), *ARGS,
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "heads - random" in printed and "easy-versus-hard trade-off" in printed
    result = json.loads((out / "ablation.json").read_text())
    conditions = result["conditions"]
    assert list(conditions) == ["model", "heads", "random-1", "random-2", "base"]
    assert conditions["heads"] == [[0, 1], [1, 2], [1, 3]] and conditions["base"] == [[0, 0], [1, 1]]
    for draw in ("random-1", "random-2"):
        assert Counter(layer for layer, _ in conditions[draw]) == Counter({0: 1, 1: 2})
    records = [json.loads(line) for line in (out / "completions.jsonl").read_text().splitlines()]
    assert len(records) == 5 * 2 * 9 and {r["level"] for r in records} == {1, 2, 4}
    assert all((r["error"] is None) == r["correct"] for r in records)
    assert set(result["pass_at_1"]) == {"model", "heads", "random", "base"}
    assert (out / "ablation.png").stat().st_size > 10_000

    run = write_run(tmp_path / "cumulative", "cumulative")
    write_run(tmp_path / "dynamic", "dynamic")
    assert main(["ablate", "--model", str(random_model_dir), "--from-run", str(run), "--emergent", *ARGS]) == 0
    stored = json.loads((run / "ablations" / "emergent-scale1.5" / "ablation.json").read_text())
    assert stored["conditions"]["heads"] == [[0, 1], [1, 2]] and stored["conditions"]["base"] == [[0, 0]]
    assert stored["emergence_confidence"] == {"0.1": 1.0, "1.2": 1.0}
    report = tmp_path / "report"
    assert main(["compare", str(run), str(tmp_path / "dynamic"), "--out", str(report)]) == 0
    page = (report / "report.html").read_text()
    assert '<table id="ablation">' in page and "emergent-scale1.5" in page and "scale x1.5" in page


@pytest.mark.parametrize(
    ("heads", "extra", "message"),
    [
        ("[[0, 1], [2, 0]]", [], "--heads: head 2.0 is out of range: the model has 2 layers of 4 heads"),
        ("[]", [], "--heads: the head set is empty"),
        ("0.1 x", [], "'x' is not a LAYER.HEAD head"),
        ("[[0, 1]]", ["--mode", "zero", "--factor", "2"], "--factor is for --mode scale"),
        ("[[0, 1]]", ["--mode", "scale"], "--mode scale needs --factor"),
        ("[[0, 1]]", ["--mode", "zero", "--greedy"], "greedy decoding gives the same answers for every seed"),
        ("[[0, 1]]", ["--mode", "zero", "--levels", "9"], "--levels: unknown level 9"),
    ],
)
def test_bad_input_is_one_line(random_model_dir, tmp_path, capsys, heads, extra, message):
    path = tmp_path / "heads.txt"
    path.write_text(heads)
    out = tmp_path / "out"
    mode = [] if "--mode" in extra else ["--mode", "zero"]
    assert main(["ablate", "--model", str(random_model_dir), "--heads", str(path), *mode, *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("sparks: error: ") and message in err
    assert not out.exists()


def test_a_run_without_emergent_heads_or_that_step_is_one_line(random_model_dir, tmp_path, capsys):
    run = write_run(tmp_path / "run", "cumulative", snapshots=1)
    for chosen, message in [(["--emergent"], "has no emergent heads at step 0: its circuit holds only base-model heads"),
                            (["--step", "5"], "no snapshot at step 5; its snapshots are at steps [0]")]:
        assert main(["ablate", "--model", str(random_model_dir), "--from-run", str(run), *chosen, "--mode", "zero"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err
    assert not (run / "ablations").exists()


def test_bootstrap_interval_covers_the_mean_and_shrinks_with_more_problems():
    rng = np.random.default_rng(1)
    small, large = (ablate.bootstrap(rng.random(n) < 0.5) for n in (20, 500))
    for estimate in (small, large):
        assert estimate["low"] <= estimate["value"] <= estimate["high"]
    assert large["high"] - large["low"] < small["high"] - small["low"]


def test_a_real_data_sets_problems_are_read_and_checked_with_math_verify(random_model_dir, tmp_path, monkeypatch):
    problems = tmp_path / "gsm8k.jsonl"
    problems.write_text(json.dumps({"question": "Tom has 3 apples and buys 4. How many?", "answer": "3 + 4 = 7\n#### 7"}) + "\n"
                        + json.dumps({"question": "What is half of 1,000?", "answer": "#### 1,000", "level": 2}) + "\n")
    read = ablate.file_problems(problems)
    assert [(p.answer, p.level, p.steps) for p in read] == [("7", 1, None), ("1000", 2, None)]
    # the answers are checked as the accuracy reward checks them: a right answer, in other words, counts
    from sparks.tasks.formats import math_equal
    assert math_equal("<answer>\\frac{14}{2}</answer>", read[0].answer) and not math_equal("<answer>8</answer>", read[0].answer)
    seen = []
    monkeypatch.setattr(ablate, "grade", lambda *a, check, **k: seen.append(check) or grade(*a, check=check, **k))
    heads = tmp_path / "heads.txt"
    heads.write_text("1.2")
    out = tmp_path / "out"
    assert main(["ablate", "--model", str(random_model_dir), "--heads", str(heads), "--mode", "zero", "--problems", str(problems),
                 "--controls", "1", "--seeds", "0", "--max-new-tokens", "4", "--out", str(out)]) == 0
    assert seen and all(check is math_equal for check in seen)
    result = json.loads((out / "ablation.json").read_text())
    assert result["levels"] == [1, 2] and result["problems"] == str(problems)
    records = [json.loads(line) for line in (out / "completions.jsonl").read_text().splitlines()]
    assert {r["answer"] for r in records} == {"7", "1000"}


@pytest.mark.parametrize(("row", "message"), [('{"question": "q"}', "row 1 needs a 'question' and an 'answer'"),
                                              ('{"question": "q", "answer": "1", "level": "hard"}', "'level' must be an integer"),
                                              ("not json", "row 1 is not JSON")])
def test_a_bad_problem_file_is_one_line(tmp_path, row, message):
    path = tmp_path / "problems.jsonl"
    path.write_text(row + "\n")
    with pytest.raises(ValueError, match=message):
        ablate.file_problems(path)


def test_thinking_off_needs_a_template_that_knows_enable_thinking(random_model_dir, tmp_path, capsys):
    model = tmp_path / "no-switch"
    model.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(random_model_dir / name, model / name)
    tokenizer = transformers.AutoTokenizer.from_pretrained(random_model_dir)
    tokenizer.chat_template = "{%- for m in messages -%}{{ m['content'] }}{%- endfor -%}A:"
    tokenizer.save_pretrained(model)
    heads = tmp_path / "heads.txt"
    heads.write_text("0.1")
    out = tmp_path / "out"
    assert main(["ablate", "--model", str(model), "--heads", str(heads), "--mode", "zero", "--style", "direct", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--style direct switches thinking off with the chat template's enable_thinking" in err
    assert not out.exists()
