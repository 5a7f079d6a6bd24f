"""Rewards: exact checking for the arithmetic world, math-verify for real math, the think/answer format."""

import pytest

from sparks.train.rewards import accuracy_reward, format_reward, get_rewards


def test_accuracy_exact_for_arith_and_math_verify_for_real_math():
    completions = [
        [{"role": "assistant", "content": "<think>\n3+4=7\n</think>\n<answer>7</answer>"}],
        [{"role": "assistant", "content": "<answer>8</answer>"}],
        "<answer>\\frac{1}{2}</answer>",
        "<answer>0.5</answer>",
        "<answer>x=3</answer>",
    ]
    rewards = accuracy_reward(
        completions, answer=["7", "7", "0.5", "0.5", "4"], task=["arith", "arith", "math", "arith", "math"]
    )
    # 0.5 is only right as real math: the arithmetic world wants the exact integer.
    assert rewards == [1.0, 0.0, 1.0, 0.0, 0.0]


def test_format_needs_a_non_empty_think_block_then_an_answer():
    completions = [
        "<think>\n3+4=7\n</think>\n<answer>7</answer>",
        "<answer>7</answer>",
        "<think>\n\n</think>\n<answer>7</answer>",
        "<think>\n3+4=7\n</think>\n<answer>7</answer> extra",
    ]
    assert format_reward(completions) == [1.0, 0.0, 0.0, 0.0]


def test_registry_names_unknown_rewards():
    assert [f.__name__ for f in get_rewards(["format", "accuracy"])] == ["format_reward", "accuracy_reward"]
    with pytest.raises(ValueError, match="unknown reward 'lenght'"):
        get_rewards(["accuracy", "lenght"])
