"""sparks think: the mode pairs, the paired comparison by hand, the command end to end, and its refusals."""

import json
import random
import shutil

import pytest
import torch
import transformers

from sparks.analysis.cli import main
from sparks.analysis.think import compare_modes, thinking_pairs
from sparks.probes.circuit import Circuit
from sparks.probes.pairs import load_pairs
from sparks.probes.schemes import mode_pairs, numbers_pairs, pair_prompt, text_number_swap
from sparks.probes.statistics import SnapshotStats
from sparks.tasks import arith
from sparks.tasks.data import chat_prompt
from sparks.tasks.tokenizer import build_tokenizer

EMPTY_THINK_BLOCK = "<think>\n\n</think>\n"


@pytest.fixture(scope="module")
def base(base_model_dir):
    return (transformers.AutoModelForCausalLM.from_pretrained(base_model_dir),
            transformers.AutoTokenizer.from_pretrained(base_model_dir))


def test_mode_pairs_are_one_question_in_two_templates_continued_by_the_model(base):
    model, tokenizer = base
    problems = arith.problems("probe", [1, 2, 5], 6, seed=0)
    swaps = [pair.meta for pair in numbers_pairs(tokenizer, problems)]
    pairs = thinking_pairs(model, tokenizer, swaps, tokens=8, min_tokens=3, system_prompt=None, batch_size=4)
    assert len(pairs["on"]) == len(swaps) == 6
    assert [p.meta["question"] for p in pairs["on"]] == [p.meta["question"] for p in pairs["off"]] == [s["question"] for s in swaps]
    for mode, switch in (("on", True), ("off", False)):
        count = min(len(pair.targets) for pair in pairs[mode])
        assert count >= 1 and all(len(pair.targets) == count for pair in pairs[mode])
        for pair in pairs[mode]:
            prompt = len(pair.clean_ids) - count
            assert pair.targets == list(range(prompt - 1, prompt - 1 + count))
            rendered = [tokenizer.apply_chat_template(chat_prompt(pair.meta[key], None), add_generation_prompt=True,
                                                      enable_thinking=switch, tokenize=False)
                        for key in ("question", "corrupted_question")]
            assert [tokenizer.decode(ids[:prompt]) for ids in (pair.clean_ids, pair.corrupted_ids)] == rendered
            tail = pair.clean_ids[prompt:]
            assert pair.corrupted_ids[prompt:] == tail == pair.clean_answer_ids  # teacher-forced: the clean continuation
            differ = [index for index, (a, b) in enumerate(zip(pair.clean_ids, pair.corrupted_ids)) if a != b]
            before = rendered[0][: rendered[0].index(pair.meta["question"])]
            question_start = len(tokenizer(before, add_special_tokens=False)["input_ids"])  # then one token per character
            assert differ and all(question_start <= index < question_start + len(pair.meta["question"]) for index in differ)
            alone = torch.tensor([pair.clean_ids[:prompt]])
            generated = model.generate(alone, attention_mask=torch.ones_like(alone), max_new_tokens=8, do_sample=False,
                                       pad_token_id=tokenizer.pad_token_id)
            assert generated[0, prompt : prompt + count].tolist() == tail
    for on, off in zip(pairs["on"], pairs["off"]):
        on_prompt = tokenizer.decode(on.clean_ids[: on.targets[0] + 1])
        assert tokenizer.decode(off.clean_ids[: off.targets[0] + 1]) == on_prompt + EMPTY_THINK_BLOCK


def test_mode_pairs_keep_a_question_only_when_both_modes_pair_it():
    tokenizer = build_tokenizer()
    swaps = [{"question": "1+2", "corrupted_question": "1+3"}, {"question": "4+5", "corrupted_question": "4+6"},
             {"question": "7+1", "corrupted_question": "17+1"}, {"question": "2+2", "corrupted_question": "2+3"}]
    continuations = {"on": [[10, 11, 12], [13, 14], [15, 16], [17, 18, 19, 20]], "off": [[21, 22], [], [23], [24, 25, 26]]}
    pairs = mode_pairs(tokenizer, swaps, continuations)
    # swap 1 has no off continuation, swap 2's prompts differ in length: both left out of both modes
    assert [p.meta["question"] for p in pairs["on"]] == [p.meta["question"] for p in pairs["off"]] == ["1+2", "2+2"]
    assert [p.clean_answer_ids for p in pairs["on"]] == [[10, 11, 12], [17, 18, 19]]  # cut to the shortest kept: 3
    assert [p.clean_answer_ids for p in pairs["off"]] == [[21, 22], [24, 25]]
    prompt = tokenizer(pair_prompt(tokenizer, "2+2", None, False), add_special_tokens=False)["input_ids"]
    assert pairs["off"][1].clean_ids == prompt + [24, 25] and pairs["off"][1].meta["continuation_tokens"] == 2
    with pytest.raises(ValueError, match="3 continuations in thinking mode on for 4 swaps"):
        mode_pairs(tokenizer, swaps, {"on": continuations["on"][:3], "off": continuations["off"]})
    # with min_tokens 3, swap 0's two-token off continuation leaves it out instead of cutting every off pair to 2
    longer = mode_pairs(tokenizer, swaps, continuations, min_tokens=3)
    assert [p.meta["question"] for p in longer["on"]] == [p.meta["question"] for p in longer["off"]] == ["2+2"]
    assert longer["off"][0].clean_answer_ids == [24, 25, 26] and longer["on"][0].clean_answer_ids == [17, 18, 19, 20]


def _stats(heads: list[tuple[int, int]], replicates: list[set[int]], importance: list[float], faithfulness: float) -> SnapshotStats:
    """Statistics of a one-layer, three-head model: the reported circuit, replicate circuits (head sets), importance."""
    members = torch.tensor([[[head in replicate for head in range(3)]] for replicate in replicates])
    value = torch.tensor([importance], dtype=torch.float64)
    return SnapshotStats(pair_weight=4.0, mean=value, mean_abs=value, ranking=value, importance=value,
                         importance_interval=torch.stack([value / 2, value * 2]),
                         circuit=Circuit(heads, [], [], value.float(), [], []), replicates=members,
                         faithfulness=faithfulness, faithfulness_interval=(0.0, 1.0))


def test_the_comparison_by_hand():
    stats = {"on": _stats([(0, 0), (0, 1)], [{0, 1}, {0, 1}, {0}, {0, 1, 2}], [0.5, 0.3, 0.2], 0.8),
             "off": _stats([(0, 1), (0, 2)], [{1, 2}, {1}, {1, 2}, {0, 1, 2}], [0.1, 0.5, 0.4], 0.6)}
    faithful = {"on": torch.tensor([0.8, 0.7, 0.9, 0.8], dtype=torch.float64),
                "off": torch.tensor([0.6, 0.5, 0.7, 0.4], dtype=torch.float64)}
    result = compare_modes(stats, faithful, confidence=0.75)
    table = [(row["head"], row["category"], row["confidence"], row["confident"]) for row in result["heads"]]
    # per replicate: shared {1} {1} {} {0,1,2}; on-only {0} {0} {0} {}; off-only {2} {} {1,2} {}
    assert table == [([0, 1], "shared", 0.75, True), ([0, 0], "on-only", 0.75, True), ([0, 2], "off-only", 0.5, False)]
    assert result["heads"][0]["importance"] == {"on": 0.3, "off": 0.5}
    assert result["heads"][0]["importance_interval"] == {"on": [0.15, 0.6], "off": [0.25, 1.0]}
    assert result["heads"][2]["membership"] == {"on": 0.25, "off": 0.75}
    counts = result["counts"]
    # linear quantiles of 4 values at 2.5% and 97.5%: x(0) + 0.075 (x(1) - x(0)) and x(2) + 0.925 (x(3) - x(2))
    assert [counts[c]["raw"] for c in ("shared", "on-only", "off-only")] == [1, 1, 1]
    assert [counts[c]["confident"] for c in ("shared", "on-only", "off-only")] == [1, 1, 0]
    assert counts["shared"]["interval"] == pytest.approx([0.075, 2.85])  # counts 1 1 0 3
    assert counts["on-only"]["interval"] == pytest.approx([0.075, 1.0])  # 1 1 1 0
    assert counts["off-only"]["interval"] == pytest.approx([0.0, 1.925])  # 1 0 2 0
    size = result["size"]
    assert size["on"]["value"] == 2 and size["on"]["interval"] == pytest.approx([1.075, 2.925])  # 2 2 1 3
    assert size["difference"]["value"] == 0 and size["difference"]["interval"] == pytest.approx([-0.925, 0.925])  # 0 -1 1 0
    assert result["faithfulness"]["difference"]["value"] == pytest.approx(-0.2)
    assert result["faithfulness"]["difference"]["interval"] == pytest.approx([-0.385, -0.2])  # -0.2 -0.2 -0.2 -0.4
    assert result["efficiency"]["difference"]["value"] == pytest.approx(-0.1)
    assert result["efficiency"]["difference"]["interval"] == pytest.approx([-0.1925, -0.1])  # -0.1 -0.1 -0.1 -0.2
    assert result["verdict"][:3] == [
        "dedicated thinking heads (on-only at confidence >= 0.75): 1 confident (0.0) of 1 raw",
        "compensatory heads (off-only at confidence >= 0.75): none confident of 1 raw",
        "thinking off is broader: undecided (size off - on +0, 95% [-0.9, +0.9])",
    ]
    assert result["verdict"][3].startswith("thinking off is less efficient: yes (faithfulness per head off - on -0.100, 95% [")
    unpaired = {"on": stats["on"], "off": _stats([(0, 1)], [{1}] * 3, [0.1, 0.5, 0.4], 0.6)}
    with pytest.raises(ValueError, match="replicates differ in shape"):
        compare_modes(unpaired, faithful, confidence=0.9)


def test_think_end_to_end(base_model_dir, tmp_path, capsys):
    out = tmp_path / "think"
    assert main(["think", "--model", str(base_model_dir), "--levels", "1", "2", "--count", "8", "--replicates", "20",
                 "--ig-steps", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "think.json").read_text())
    assert summary["num_pairs"] == 8 and summary["metric"] == "kl" and summary["replicates"] == 20
    circuits = {mode: {tuple(head) for head in summary["modes"][mode]["circuit_heads"]} for mode in ("on", "off")}
    by_category = {category: {tuple(row["head"]) for row in summary["heads"] if row["category"] == category}
                   for category in ("shared", "on-only", "off-only")}
    assert by_category == {"shared": circuits["on"] & circuits["off"], "on-only": circuits["on"] - circuits["off"],
                           "off-only": circuits["off"] - circuits["on"]}
    for category, count in summary["counts"].items():
        rows = [row for row in summary["heads"] if row["category"] == category]
        assert count["raw"] == len(rows) and count["confident"] == sum(row["confident"] for row in rows)
        assert all(0 <= row["confidence"] <= 1 and row["confident"] == (row["confidence"] >= 0.9) for row in rows)
    assert summary["size"]["on"]["value"] == len(circuits["on"]) and summary["size"]["off"]["value"] == len(circuits["off"])
    low, high = summary["faithfulness"]["on"]["interval"]
    assert low <= summary["faithfulness"]["on"]["value"] <= high
    on, off = load_pairs(out / "pairs-on.jsonl"), load_pairs(out / "pairs-off.jsonl")
    assert len(on) == len(off) == 8 and [p.meta["question"] for p in on] == [p.meta["question"] for p in off]
    assert (out / "think.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(line in printed for line in summary["verdict"]) and "8 of 8 questions pair" in printed


def _model_copy(source, target, chat_template):
    """``source``'s weights with its tokenizer saved again under another chat template (None: no template)."""
    target.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(source / name, target / name)
    tokenizer = transformers.AutoTokenizer.from_pretrained(source)
    tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(target)
    return target


NO_SWITCH = "{%- for m in messages -%}{{ m['content'] }}{%- endfor -%}{%- if add_generation_prompt -%}A:{%- endif -%}"


@pytest.mark.parametrize(
    "case, message",
    [
        ("no_switch", "renders the same prompt with enable_thinking on and off"),
        ("no_template", "has no chat template"),
        ("style_pairs", "takes a number-swap pair file"),
        ("levels", "--levels: unknown level 9"),
        ("pairs_and_levels", "--pairs brings its own"),
        ("out_not_empty", "exists and is not an empty directory"),
        ("eap", "--method, --metric: eap with kl scores exactly zero"),
    ],
)
@pytest.mark.hostile
def test_think_refuses_bad_input_in_one_line(case, message, random_model_dir, tmp_path, capsys):
    model, out, extra = random_model_dir, tmp_path / "out", []
    if case == "no_switch":
        model = _model_copy(random_model_dir, tmp_path / "no-switch", NO_SWITCH)
    elif case == "no_template":
        model = _model_copy(random_model_dir, tmp_path / "no-template", None)
    elif case == "style_pairs":
        style = tmp_path / "style.jsonl"
        assert main(["pairs", "--scheme", "style", "--model", str(model), "--levels", "1", "--count", "2", "--out", str(style)]) == 0
        extra = ["--pairs", str(style)]
    elif case == "levels":
        extra = ["--levels", "1", "9"]
    elif case == "pairs_and_levels":
        extra = ["--pairs", str(tmp_path / "any.jsonl"), "--levels", "1"]
    elif case == "out_not_empty":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    elif case == "eap":
        extra = ["--method", "eap"]
    capsys.readouterr()
    assert main(["think", "--model", str(model), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("sparks: error") == 1
    last = err.rstrip("\n").split("\n")[-1]
    assert last.startswith("sparks: error: ") and message in last
    assert [path.name for path in out.iterdir()] == ["keep.txt"] if case == "out_not_empty" else not out.exists()


QUESTIONS = ["Tom has 12 apples and buys 7 more. How many apples?", "What is 45 plus 3?", "No numbers at all?",
             "A box holds 6 pens. How many pens are in 4 boxes?", "Sara reads 23 pages a day for 5 days."]


def test_a_real_data_sets_questions_are_swapped_in_their_text(random_model_dir, tmp_path):
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps({"question": q, "source": "mine"}) + "\n" for q in QUESTIONS))
    out = tmp_path / "think"
    assert main(["think", "--model", str(random_model_dir), "--questions", str(questions), "--replicates", "10",
                 "--ig-steps", "2", "--min-tokens", "1", "--out", str(out)]) == 0
    on = load_pairs(out / "pairs-on.jsonl")
    kept = [pair.meta["question"] for pair in on]
    assert "No numbers at all?" not in kept and kept == [q for q in QUESTIONS if q != "No numbers at all?"][: len(kept)]
    for pair in on:
        question, swapped = pair.meta["question"], pair.meta["corrupted_question"]
        assert pair.meta["source"] == "mine" and swapped != question and len(swapped) == len(question)
        assert swapped == text_number_swap(question, random.Random(f"0-{question}"))
    assert json.loads((out / "think.json").read_text())["num_questions"] == 4


@pytest.mark.parametrize(("extra", "message"), [
    (["--questions", "Q", "--pairs", "P"], "--pairs and --questions are two sources of questions"),
    (["--dataset-path", "D"], "--dataset-path is a local copy of a --dataset"),
    (["--questions", "Q", "--levels", "1"], "--levels draws arithmetic questions; --questions brings its own"),
    (["--questions", "Q", "--count", "3"], "--count draws questions; --questions brings its own"),
    (["--questions", "NONE"], "no question of --questions holds a whole number to change"),
])
def test_question_sources_refuse_bad_input_in_one_line(random_model_dir, tmp_path, capsys, extra, message):
    (tmp_path / "Q").write_text("What is 4 plus 5?\n")
    (tmp_path / "NONE").write_text("No numbers.\nNone here either.\n")
    extra = [str(tmp_path / item) if item in ("Q", "P", "D", "NONE") else item for item in extra]
    out = tmp_path / "out"
    assert main(["think", "--model", str(random_model_dir), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("sparks: error") == 1 and message in err.rstrip("\n").split("\n")[-1]
    assert not out.exists()


def test_a_data_sets_held_out_questions_from_a_local_copy(random_model_dir, tmp_path, monkeypatch):
    import datasets

    from sparks.tasks.data import is_probe_question

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    copy = tmp_path / "gsm8k"
    copy.mkdir()
    rows = [{"question": f"Ann has {n} pens and buys {n % 7 + 2} more. How many pens now?", "answer": f"#### {n + n % 7 + 2}"}
            for n in range(10, 1010)]
    (copy / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "think"
    assert main(["think", "--model", str(random_model_dir), "--dataset", "gsm8k", "--dataset-path", str(copy), "--count", "4",
                 "--replicates", "10", "--ig-steps", "2", "--min-tokens", "1", "--out", str(out)]) == 0
    summary = json.loads((out / "think.json").read_text())
    questions = [pair.meta["question"] for pair in load_pairs(out / "pairs-on.jsonl")]
    assert summary["num_questions"] == 4 and questions and all(is_probe_question(q) for q in questions)
