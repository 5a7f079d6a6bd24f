import random
import re

import pytest

from sparks.probes.pairs import batch_pairs
from sparks.probes.schemes import arith_style_pairs, numbers_pairs, operand_swaps, parse, read_questions, style_pairs
from sparks.tasks import arith, formats
from sparks.tasks.tokenizer import build_tokenizer

TOKENIZER = build_tokenizer()
PROBLEMS = arith.problems("probe", [1, 2, 3, 4, 5, 6], 24, seed=0)


def _ids(text):
    return TOKENIZER(text, add_special_tokens=False)["input_ids"]


def _value(question):
    assert re.fullmatch(r"[0-9+\-*()]+", question)
    return eval(question)  # the test's own evaluator: Python's


def test_numbers_pairs_change_one_operand_and_the_answer_first_token():
    pairs = numbers_pairs(TOKENIZER, PROBLEMS, seed=3)
    assert len(pairs) >= 20
    assert {pair.meta["level"] for pair in pairs} == {1, 2, 3, 4, 5, 6}
    for pair in pairs:
        meta = pair.meta
        assert len(pair.clean_ids) == len(pair.corrupted_ids)
        assert pair.clean_text.endswith(formats.ANSWER_OPEN) and pair.corrupted_text.endswith(formats.ANSWER_OPEN)
        assert meta["question"] in pair.clean_text and meta["corrupted_question"] in pair.corrupted_text
        assert _value(meta["corrupted_question"]) == meta["corrupted_answer"] != meta["answer"]
        clean_numbers = re.findall(r"\d+", meta["question"])
        corrupted_numbers = re.findall(r"\d+", meta["corrupted_question"])
        assert sum(a != b for a, b in zip(clean_numbers, corrupted_numbers)) == 1
        assert [len(a) for a in clean_numbers] == [len(b) for b in corrupted_numbers]
        assert pair.targets == [len(pair.clean_ids) - 1]
        assert pair.clean_answer_ids == [_ids(str(meta["answer"]))[0]]
        assert pair.corrupted_answer_ids == [_ids(str(meta["corrupted_answer"]))[0]]
        assert pair.clean_answer_ids != pair.corrupted_answer_ids
    assert numbers_pairs(TOKENIZER, PROBLEMS, seed=3) == pairs
    assert numbers_pairs(TOKENIZER, PROBLEMS, seed=4) != pairs


def test_operand_swaps_stay_in_the_world():
    question = "(8+9)*6-7"
    swaps = list(operand_swaps(question, random.Random(0)))
    assert swaps and len(set(swaps)) == len(swaps)
    for text, answer in swaps:
        assert _value(text) == answer != 95 and answer in arith.VALUE_RANGE and len(text) == len(question)
    assert ("(8+9)*5-7", 78) in swaps and ("(8+0)*6-7", 41) in swaps
    assert not any(text.startswith("(8+9)*0") for text, _ in swaps)  # 17 * 0 - 7 < 0
    # 17 * 6 = 102 leaves the world, so only swaps that shrink the product survive.
    assert not any(text.startswith(("(8+9)*6", "(8+9)*9", "(9+9)")) for text, _ in swaps)


def test_parse_round_trips_world_questions_and_rejects_others():
    for problem in PROBLEMS:
        assert arith.render(parse(problem.question)) == problem.question
        assert arith.evaluate(parse(problem.question)) == problem.answer
    for text in ["2**3", "(1+2)+3", "x+1", "1/2", "3+", "-1+2"]:
        with pytest.raises(ValueError, match="arithmetic(-| )world"):
            parse(text)


@pytest.mark.parametrize("role", ["reasoning", "baseline"])
def test_arith_style_pairs_align_the_two_openings(role):
    pairs = arith_style_pairs(TOKENIZER, PROBLEMS, role=role)
    assert len(pairs) == len(PROBLEMS)
    for pair, problem in zip(pairs, PROBLEMS):
        think, direct = _ids(formats.think_completion(problem)), _ids(formats.direct_completion(problem))
        clean, corrupted = (think, direct) if role == "reasoning" else (direct, think)
        count = pair.meta["opening_tokens"]
        assert count == 2  # the shortest direct completion "<answer>N</answer>" has 3 tokens
        prompt = pair.clean_ids[:-count]
        assert pair.corrupted_ids[:-count] == prompt
        assert TOKENIZER.decode(prompt).endswith("<|im_start|>assistant\n")
        assert pair.clean_ids[-count:] == clean[:count] and pair.corrupted_ids[-count:] == corrupted[:count]
        assert pair.targets == list(range(len(prompt), len(prompt) + count))
        assert pair.clean_answer_ids == clean[1 : count + 1] and pair.corrupted_answer_ids == corrupted[1 : count + 1]
        assert pair.meta["role"] == role and pair.meta["level"] == problem.level
    assert pairs[0].clean_text.endswith("<think>\n" if role == "reasoning" else "<answer>" + str(PROBLEMS[0].answer)[0])


def test_style_pairs_from_templates_and_a_fixed_length():
    questions = ["Natalia sold 48 clips. How many?", "What is 2+2?"]
    pairs = style_pairs(TOKENIZER, questions, ["<think>\nOkay, so"] * 2, ["To find"] * 2, opening_tokens=4,
                        meta=[{"answer": "72"}, {"answer": "4"}])
    assert [pair.meta["answer"] for pair in pairs] == ["72", "4"]
    assert all(pair.clean_text.endswith("<think>\nOk") and pair.corrupted_text.endswith("To f") for pair in pairs)
    batch = batch_pairs(pairs, TOKENIZER.pad_token_id)
    assert batch.target_positions.shape == (2, 4) and batch.clean_answer_ids.shape == (2, 4)
    # an opening shorter than N + 1 tokens leaves its pair out
    kept = style_pairs(TOKENIZER, questions, ["<think>\nOkay"] * 2, ["To find", "No"], opening_tokens=3)
    assert [pair.corrupted_text[-3:] for pair in kept] == ["To "]
    with pytest.raises(ValueError, match="at least 1 token"):
        style_pairs(TOKENIZER, questions, ["<think>"] * 2, ["To"] * 2)
    with pytest.raises(ValueError, match="unknown role"):
        style_pairs(TOKENIZER, questions, ["a"] * 2, ["b"] * 2, role="teacher")
    with pytest.raises(ValueError, match="2 questions, 1 reasoning"):
        style_pairs(TOKENIZER, questions, ["a"], ["b"] * 2)


def test_read_questions(tmp_path):
    rows = tmp_path / "gsm8k.jsonl"
    rows.write_text('{"question": "Q1?", "answer": "so #### 3"}\n\n{"question": "Q2?"}\n')
    assert read_questions(rows) == [{"question": "Q1?", "answer": "so #### 3"}, {"question": "Q2?"}]
    lines = tmp_path / "questions.txt"
    lines.write_text("Q1?\nQ2?\n")
    assert read_questions(lines) == [{"question": "Q1?"}, {"question": "Q2?"}]
    (tmp_path / "bad.jsonl").write_text('{"text": "Q1?"}\n')
    with pytest.raises(ValueError, match="row 1 has no 'question'"):
        read_questions(tmp_path / "bad.jsonl")
    with pytest.raises(FileNotFoundError):
        read_questions(tmp_path / "missing.jsonl")


def test_text_number_swap_changes_one_whole_number_and_keeps_its_digit_count():
    import random as _random
    import re

    from sparks.probes.schemes import text_number_swap

    question = "Tom has 12 apples, buys 3 more for 2.50 dollars and pays 1,000 cents."
    seen = set()
    for seed in range(40):
        swapped = text_number_swap(question, _random.Random(seed))
        before, after = re.split(r"(\d+)", question), re.split(r"(\d+)", swapped)
        changed = [(a, b) for a, b in zip(before, after) if a != b]
        assert len(before) == len(after) and len(changed) == 1
        (old, new), = changed
        assert old in ("12", "3") and len(new) == len(old) and new != old and (len(new) == 1 or new[0] != "0")
        seen.add(old)
    assert seen == {"12", "3"}  # both plain numbers get chosen; 2.50 and 1,000 never
    assert text_number_swap("No numbers, nor 3.5 or 1,000.", _random.Random(0)) is None
