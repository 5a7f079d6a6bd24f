"""Probe pairs from a recipe's own data set: held-out questions of gsm8k / openr1-math, read from a
local directory through the same `datasets.load_dataset` call as the hub names, made into style pairs
in the recipe's chat format and system prompt; the training set never holds them."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import datasets
import pytest
import yaml
from trl import GRPOConfig, ModelConfig, SFTConfig

import sparks.train.preparation
from sparks.tasks.data import PROBE_ONE_IN, is_probe_question, load
from sparks.tasks.tokenizer import build_tokenizer
from sparks.train.arguments import GRPOScriptArguments, RecipeArguments, RecipeError, parse_recipe, tracker_pairs

REPO = Path(__file__).resolve().parents[1]
TOKENIZER = build_tokenizer()  # byte-level: encodes any text, so real questions tokenize without a hub tokenizer
NAMES = ("Natalia", "Weng", "Betty", "Julie", "James", "Albert", "Mark", "Ken")
# The paper's two template openings, cut to the 26 tokens both hold in the byte-level tokenizer
# (the baseline opening "To determine the answer, we" is 27 bytes: N = 27 - 1).
REASONING_ROW_END = "<think>\nOkay, so I have this pro"
BASELINE_ROW_END = "To determine the answer, w"
# Probe questions asked of the small local files.
PROBES = 6
ROWS = 1000  # 13 GSM8K-like and 20 OpenR1-like questions held out, at one in PROBE_ONE_IN


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path, monkeypatch):
    """`datasets` caches what it reads under the test's directory, not under $HOME."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def gsm8k_rows(count: int) -> list[dict]:
    """Rows in GSM8K's layout: a question, and a rationale ending in `#### <answer>`."""
    rows = []
    for index in range(count):
        name, sold = NAMES[index % len(NAMES)], 2 * (index + 10)
        rows.append({
            "question": f"{name} sold clips to {sold} of her friends in April, and then she sold half as many clips "
                        f"in May. How many clips did {name} sell altogether in April and May?",
            "answer": f"{name} sold {sold}/2 = <<{sold}/2={sold // 2}>>{sold // 2} clips in May.\n"
                      f"{name} sold {sold}+{sold // 2} = <<{sold}+{sold // 2}={sold * 3 // 2}>>{sold * 3 // 2} clips "
                      f"altogether in April and May.\n#### {sold * 3 // 2:,}",
        })
    return rows


def openr1_rows(count: int) -> list[dict]:
    """Rows in OpenR1-Math-220k's layout (default subset): R1 generations with math-verify's verdicts."""
    rows = []
    for index in range(count):
        side = index + 3
        rows.append({
            "problem": f"A square has side ${side}$. What is its area?",
            "solution": f"The area is ${side}^2 = {side * side}$.",
            "answer": str(side * side),
            "problem_type": "Geometry",
            "question_type": "math-word-problem",
            "source": "olympiads",
            "uuid": f"uuid-{index}",
            "is_reasoning_complete": [True, True],
            "generations": [f"<think>\nguess {side}\n</think>\n<answer>{side}</answer>",
                            f"<think>\n{side} times {side}\n</think>\n<answer>{side * side}</answer>"],
            "correctness_math_verify": [False, True],
            "correctness_llama": None,
            "finish_reasons": None,
            "correctness_count": 1,
            "messages": [{"role": "user", "content": f"A square has side ${side}$. What is its area?"}],
        })
    return rows


def write_gsm8k_snapshot(directory: Path, rows: list[dict]) -> Path:
    """A local copy of openai/gsm8k as the hub holds it: configs main and socratic, parquet files, README metadata."""
    for config in ("main", "socratic"):
        (directory / config).mkdir(parents=True)
        datasets.Dataset.from_list(rows).to_parquet(directory / config / "train-00000-of-00001.parquet")
        datasets.Dataset.from_list(rows[:5]).to_parquet(directory / config / "test-00000-of-00001.parquet")
    (directory / "README.md").write_text("---\n" + yaml.safe_dump({"configs": [
        {"config_name": config, "data_files": [{"split": split, "path": f"{config}/{split}-*"} for split in ("train", "test")]}
        for config in ("main", "socratic")
    ]}) + "---\n")
    return directory


def write_jsonl(directory: Path, rows: list[dict]) -> Path:
    """A plain directory holding the training split as `train.jsonl`."""
    directory.mkdir(parents=True)
    (directory / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return directory


def write_openr1(directory: Path, rows: list[dict]) -> Path:
    """OpenR1-Math-220k's file layout for the default subset: data/train-*.parquet."""
    (directory / "data").mkdir(parents=True)
    datasets.Dataset.from_list(rows).to_parquet(directory / "data" / "train-00000-of-00001.parquet")
    return directory


def gpu_recipe(tmp_path: Path, script: str, num_problems: int) -> Path:
    """The shipped GPU recipe, unchanged but for fewer probe questions (the test files are small)
    and bf16 off (TrainingArguments refuses bf16 on a machine without a GPU)."""
    recipe = yaml.safe_load((REPO / f"configs/qwen2.5-math-1.5b/{script}.yaml").read_text())
    recipe["tracker"]["num_problems"] = num_problems
    recipe["bf16"] = False
    path = tmp_path / f"{script}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def parse(script: str, recipe: Path, *argv: str) -> tuple:
    types = (GRPOScriptArguments, GRPOConfig, ModelConfig) if script == "grpo" else (RecipeArguments, SFTConfig, ModelConfig)
    return parse_recipe(types, ["--config", str(recipe), *argv])


def check_style_pairs(pairs, questions_in_file: set[str], system_prompt: str) -> None:
    """Each pair: one question of the file in the recipe's chat prompt, then the reasoning opening in
    the clean row and the baseline opening in the corrupted row, both the same length."""
    assert pairs
    for pair in pairs:
        shown = f"\nclean: {pair.clean_text!r}\ncorrupted: {pair.corrupted_text!r}"
        question = pair.meta["question"]
        assert question in questions_in_file, shown
        prompt = TOKENIZER.apply_chat_template(
            [{"role": "system", "content": system_prompt}, {"role": "user", "content": question}],
            tokenize=False, add_generation_prompt=True,
        )
        assert pair.clean_text == prompt + REASONING_ROW_END, shown
        assert pair.corrupted_text == prompt + BASELINE_ROW_END, shown
        assert system_prompt in pair.clean_text and question in pair.corrupted_text, shown
        assert len(pair.clean_ids) == len(pair.corrupted_ids) and pair.clean_ids != pair.corrupted_ids, shown
        assert pair.targets == list(range(len(pair.clean_ids) - 26, len(pair.clean_ids))), shown


def training_questions(dataset) -> set[str]:
    return {row["prompt"][-1]["content"] for row in dataset}


def test_gpu_grpo_recipe_with_a_local_gsm8k_copy_builds_style_pairs_of_held_out_questions(tmp_path):
    rows = gsm8k_rows(ROWS)
    questions = {row["question"] for row in rows}
    held_out = {question for question in questions if is_probe_question(question)}
    assert len(held_out) > PROBES
    local = write_gsm8k_snapshot(tmp_path / "gsm8k", rows)
    script_args, training_args, model_args = parse(
        "grpo", gpu_recipe(tmp_path, "grpo", PROBES), "--dataset_name", "gsm8k", "--dataset_path", str(local),
        "--output_dir", str(tmp_path / "run"),
    )
    script_args.check()
    tracker = script_args.tracker_config()
    pairs = tracker_pairs(tracker, script_args, model_args, TOKENIZER)
    assert len(pairs) == PROBES and {pair.meta["question"] for pair in pairs} <= held_out
    assert "<think>" in script_args.system_prompt
    check_style_pairs(pairs, questions, script_args.system_prompt)
    answers = {row["question"]: row["answer"].split("#### ")[-1].replace(",", "") for row in rows}
    assert all(pair.meta["answer"] == answers[pair.meta["question"]] for pair in pairs)

    train = load("gsm8k", script_args.data_options("grpo", training_args.seed))
    assert training_questions(train) == questions - held_out  # every other question, none of the held-out ones
    assert train[0]["prompt"][0] == {"role": "system", "content": script_args.system_prompt}
    # built again (every rank builds them), the same pairs
    again = tracker_pairs(tracker, script_args, model_args, TOKENIZER)
    assert [pair.clean_ids for pair in again] == [pair.clean_ids for pair in pairs]


def test_gpu_sft_recipe_with_a_local_openr1_math_copy_builds_style_pairs_of_held_out_questions(tmp_path):
    rows = openr1_rows(ROWS)
    questions = {row["problem"] for row in rows}
    held_out = {question for question in questions if is_probe_question(question)}
    assert len(held_out) > PROBES
    local = write_openr1(tmp_path / "openr1", rows)
    script_args, training_args, model_args = parse(
        "sft", gpu_recipe(tmp_path, "sft", PROBES), "--dataset_path", str(local), "--output_dir", str(tmp_path / "run"),
    )
    assert script_args.dataset_name == "openr1-math"  # the recipe's own data set
    script_args.check()
    pairs = tracker_pairs(script_args.tracker_config(), script_args, model_args, TOKENIZER)
    assert len(pairs) == PROBES and {pair.meta["question"] for pair in pairs} <= held_out
    check_style_pairs(pairs, questions, script_args.system_prompt)

    train = load("openr1-math", script_args.data_options("sft", training_args.seed))
    assert training_questions(train) == questions - held_out
    side = 3 + next(index for index, row in enumerate(rows) if row["problem"] not in held_out)
    row = next(row for row in train if row["answer"] == str(side * side))
    assert row["completion"][0]["content"].endswith(f"<answer>{side * side}</answer>")  # the math-verified generation


def test_a_plain_directory_of_files_reads_like_the_hub_snapshot(tmp_path):
    rows = gsm8k_rows(ROWS)
    snapshot = write_gsm8k_snapshot(tmp_path / "snapshot", rows)
    plain = write_jsonl(tmp_path / "plain", rows)
    recipe = gpu_recipe(tmp_path, "grpo", PROBES)
    built = []
    for local in (snapshot, plain):
        script_args, _, model_args = parse("grpo", recipe, "--dataset_name", "gsm8k", "--dataset_path", str(local))
        built.append(tracker_pairs(script_args.tracker_config(), script_args, model_args, TOKENIZER))
    assert [pair.clean_ids for pair in built[0]] == [pair.clean_ids for pair in built[1]]


def test_more_probe_questions_than_held_out_is_named(tmp_path):
    local = write_jsonl(tmp_path / "gsm8k", gsm8k_rows(60))
    held = sum(is_probe_question(row["question"]) for row in gsm8k_rows(60))
    script_args, _, model_args = parse("grpo", gpu_recipe(tmp_path, "grpo", 64), "--dataset_name", "gsm8k",
                                       "--dataset_path", str(local))
    with pytest.raises(RecipeError) as error:
        tracker_pairs(script_args.tracker_config(), script_args, model_args, TOKENIZER)
    assert str(error.value) == (f"tracker.num_problems: 64 probe questions asked, gsm8k holds {held} "
                                f"(one question in {PROBE_ONE_IN} is held out from training)")


def test_the_arithmetic_world_keeps_its_pairs_built_at_train_begin(tmp_path):
    script_args, _, model_args = parse("grpo", REPO / "configs/tiny/grpo.yaml", "--output_dir", str(tmp_path / "run"))
    assert tracker_pairs(script_args.tracker_config(), script_args, model_args, TOKENIZER) is None


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (("--dataset_path", "{data}"),
         "dataset_path: arith is generated, not read; dataset_path is for gsm8k, openr1-math"),
        (("--dataset_name", "gsm8k", "--dataset_path", "{data}/missing"), "dataset_path: '{data}/missing' is not a directory"),
        (("--dataset_name", "gsm8k", "--dataset_path", "{data}"),
         "tracker.scheme: numbers pairs swap operands of arithmetic-world questions, not of gsm8k's; use scheme: style "
         "(pairs of gsm8k's held-out questions) or a pair file (tracker.pairs)"),
    ],
)
@pytest.mark.hostile
def test_bad_data_settings_stop_before_the_model_loads_with_one_line(tmp_path, capsys, monkeypatch, random_model_dir,
                                                                     overrides, expected):
    data = write_jsonl(tmp_path / "gsm8k", gsm8k_rows(10))
    grpo = importlib.import_module("sparks.train.grpo")

    def refuse(*args, **kwargs):
        raise AssertionError("a model or data set was loaded before the bad setting was refused")

    monkeypatch.setattr(sparks.train.preparation, "load_model", refuse)
    monkeypatch.setattr(sparks.train.preparation, "load_tokenizer", refuse)
    argv = ["--model_name_or_path", str(random_model_dir), "--output_dir", str(tmp_path / "run"),
            *(item.format(data=data) for item in overrides)]
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        grpo.main(*parse("grpo", REPO / "configs/tiny/grpo.yaml", *argv))
    assert stopped.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("sparks: error: ")]
    assert lines == [f"sparks: error: {expected.format(data=data)}"]
    assert not (tmp_path / "run").exists()


def test_sparks_pairs_with_a_dataset_writes_the_pairs_the_tracker_scores(tmp_path, random_model_dir, capsys):
    """`sparks pairs --dataset gsm8k` draws the held-out questions the tracker draws, so its pair file
    is the tracker's own pairs (and holds no training question)."""
    from sparks.analysis.cli import main
    from sparks.probes.pairs import load_pairs

    local = write_gsm8k_snapshot(tmp_path / "gsm8k", gsm8k_rows(ROWS))
    script_args, _, model_args = parse(
        "grpo", gpu_recipe(tmp_path, "grpo", PROBES), "--dataset_name", "gsm8k", "--dataset_path", str(local),
        "--output_dir", str(tmp_path / "run"),
    )
    tracker = script_args.tracker_config()
    expected = tracker_pairs(tracker, script_args, model_args, TOKENIZER)
    out = tmp_path / "pairs.jsonl"
    assert main(["pairs", "--scheme", "style", "--model", str(random_model_dir), "--dataset", "gsm8k", "--dataset-path",
                 str(local), "--count", str(PROBES), "--seed", str(tracker.seed), "--system-prompt",
                 script_args.system_prompt, "--out", str(out)]) == 0
    written = load_pairs(out)
    assert [pair.clean_ids for pair in written] == [pair.clean_ids for pair in expected]
    assert [pair.corrupted_ids for pair in written] == [pair.corrupted_ids for pair in expected]
    assert all(is_probe_question(pair.meta["question"]) for pair in written)
    assert main(["pairs", "--scheme", "style", "--model", str(random_model_dir), "--dataset", "gsm8k",
                 "--questions", str(out), "--out", str(tmp_path / "other.jsonl")]) == 2
    assert "sparks: error: --questions and --dataset are two sources of questions" in capsys.readouterr().err
