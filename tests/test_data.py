"""Data sets by name: the arithmetic world in TRL's conversational formats, and the prompts per style."""

import pytest

from sparks.tasks import arith
from sparks.tasks.data import DataOptions, arith_dataset, chat_prompt, load
from sparks.tasks.evaluation import Graded, pass_at_1, style_prompt
from sparks.tasks.tokenizer import build_tokenizer


def options(kind: str, count: int = 400) -> DataOptions:
    return DataOptions(kind=kind, num_examples=count, levels=(1, 4, 6), seed=3, think_fraction=0.2, thinking_off_fraction=0.1)


def test_pretraining_corpus_is_mostly_direct_with_some_reasoning_and_some_thinking_off():
    corpus = arith_dataset(options("pretrain", 2000))
    texts = [row["completion"][0]["content"] for row in corpus]
    think = sum(text.startswith("<think>\n") and not text.startswith("<think>\n\n") for text in texts) / len(texts)
    off = sum(text.startswith("<think>\n\n</think>") for text in texts) / len(texts)
    direct = sum(text.startswith("<answer>") for text in texts) / len(texts)
    assert abs(think - 0.2) < 0.04 and abs(off - 0.1) < 0.03 and abs(direct - 0.7) < 0.04
    assert all(row["prompt"][-1]["role"] == "user" and row["task"] == "arith" for row in corpus)


def test_sft_rows_are_think_traces_and_grpo_rows_are_prompts_with_answers():
    sft = arith_dataset(options("sft"))
    assert all(row["completion"][0]["content"].startswith("<think>\n") for row in sft)
    assert all(row["completion"][0]["content"].endswith(f"<answer>{row['answer']}</answer>") for row in sft)
    grpo = arith_dataset(options("grpo"))
    assert "completion" not in grpo.column_names
    assert set(grpo["level"]) == {1, 4, 6}
    assert [row["prompt"] for row in grpo] == [row["prompt"] for row in arith_dataset(options("grpo"))]


def test_training_data_never_holds_held_out_problems():
    held_out = {p.question for p in arith.problems("test", [1, 4, 6], 300, seed=0)}
    held_out |= {p.question for p in arith.problems("probe", [1, 4, 6], 300, seed=0)}
    questions = {row["prompt"][-1]["content"] for row in arith_dataset(options("grpo", 3000))}
    assert not questions & held_out


def test_system_prompt_is_the_first_message():
    rows = arith_dataset(DataOptions(kind="grpo", num_examples=4, levels=(1,), seed=0, system_prompt="Think first."))
    assert rows[0]["prompt"][0] == {"role": "system", "content": "Think first."}


def test_unknown_dataset_is_named():
    with pytest.raises(ValueError, match="unknown dataset_name 'mnist'"):
        load("mnist", options("grpo"))


def test_style_prompts_open_the_think_block_or_close_it_empty():
    tokenizer = build_tokenizer()
    think = style_prompt(tokenizer, "1+2", "think", None)
    direct = style_prompt(tokenizer, "1+2", "direct", None)
    assert think.endswith("<|im_start|>assistant\n<think>\n")
    assert direct.endswith("<|im_start|>assistant\n<think>\n\n</think>\n")
    with pytest.raises(ValueError, match="unknown style"):
        style_prompt(tokenizer, "1+2", "cot", None)


def test_pass_at_1_counts_per_style_and_level():
    one, two = (arith.Problem("1+1", 2, 1, ("1+1=2",)), arith.Problem("9-1+2", 10, 3, ("9-1=8", "8+2=10")))
    graded = [
        Graded(one, "think", "", True, True), Graded(one, "think", "", False, True),
        Graded(two, "think", "", True, True), Graded(one, "direct", "", False, False),
    ]
    assert pass_at_1(graded) == {"think": {1: 0.5, 3: 1.0}, "direct": {1: 0.0}}


def test_free_prompt_is_the_training_prompt_with_nothing_forced():
    tokenizer = build_tokenizer()
    training_prompt = tokenizer.apply_chat_template(chat_prompt("1+2", None), tokenize=False, add_generation_prompt=True)
    assert style_prompt(tokenizer, "1+2", "free", None) == training_prompt
