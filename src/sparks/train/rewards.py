"""Reward functions for GRPO, selected by name in the recipe's `reward_funcs`.

Each follows TRL's signature `f(completions, **columns) -> list[float]`; data-set columns arrive as
keyword lists. `accuracy` checks the arithmetic world exactly and real math with math-verify.
"""

from __future__ import annotations

from collections.abc import Callable

from sparks.tasks import formats


def completion_text(completion: str | list[dict[str, str]]) -> str:
    """The generated text, whether TRL passes a string or a conversational message list."""
    return completion if isinstance(completion, str) else completion[0]["content"]


def accuracy_reward(completions: list, answer: list[str], task: list[str], **kwargs) -> list[float]:
    """1.0 when the final answer is right, else 0.0."""
    rewards = []
    for completion, gold, kind in zip(completions, answer, task):
        text = completion_text(completion)
        right = formats.is_correct(text, gold) if kind == "arith" else formats.math_equal(text, gold)
        rewards.append(float(right))
    return rewards


def format_reward(completions: list, **kwargs) -> list[float]:
    """1.0 for a non-empty `<think>` block followed by an `<answer>` block, else 0.0."""
    return [float(formats.has_think_format(completion_text(completion))) for completion in completions]


REWARDS: dict[str, Callable[..., list[float]]] = {"accuracy": accuracy_reward, "format": format_reward}


def get_rewards(names: list[str]) -> list[Callable[..., list[float]]]:
    """The reward functions called `names`, in order."""
    unknown = [name for name in names if name not in REWARDS]
    if unknown:
        raise ValueError(f"unknown reward {unknown[0]!r} in reward_funcs; known rewards are {sorted(REWARDS)}")
    if not names:
        raise ValueError("reward_funcs is empty; name at least one of " + ", ".join(sorted(REWARDS)))
    return [REWARDS[name] for name in names]
