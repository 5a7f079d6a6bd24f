"""Answer styles and answer checking for the arithmetic world.

Two styles, as in the paper: *direct* (the baseline model's habit: answer right away) and *think*
(step-by-step reasoning in `<think>…</think>` then `<answer>…</answer>`).
"""

from __future__ import annotations

import re

from sparks.tasks.arith import Problem

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
STYLES = ("direct", "think")

_ANSWER = re.compile(re.escape(ANSWER_OPEN) + r"(.*?)" + re.escape(ANSWER_CLOSE), re.DOTALL)
_THINK_FORMAT = re.compile(
    r"^\s*" + re.escape(THINK_OPEN) + r"\n(?=.*\S)(.+?)\n" + re.escape(THINK_CLOSE) + r"\n"
    + re.escape(ANSWER_OPEN) + r".+?" + re.escape(ANSWER_CLOSE) + r"\s*$",
    re.DOTALL,
)


def direct_completion(problem: Problem) -> str:
    """The baseline style: the answer and nothing else."""
    return f"{ANSWER_OPEN}{problem.answer}{ANSWER_CLOSE}"


def think_completion(problem: Problem) -> str:
    """The reasoning style: one line per operation inside a think block, then the answer."""
    reasoning = "\n".join(problem.steps)
    return f"{THINK_OPEN}\n{reasoning}\n{THINK_CLOSE}\n{direct_completion(problem)}"


def completion(problem: Problem, style: str) -> str:
    """The assistant's text for `problem` written in `style`."""
    if style == "direct":
        return direct_completion(problem)
    if style == "think":
        return think_completion(problem)
    raise ValueError(f"unknown style {style!r}; styles are {STYLES}")


def extract_answer(text: str) -> str | None:
    """The content of the last `<answer>…</answer>` block, stripped, or None."""
    found = _ANSWER.findall(text)
    return found[-1].strip() if found else None


def is_correct(text: str, answer: int | str) -> bool:
    """Whether the final answer in `text` is exactly the integer `answer`."""
    extracted = extract_answer(text)
    return extracted is not None and re.fullmatch(r"-?\d+", extracted) is not None and int(extracted) == int(answer)


def math_equal(text: str, gold: str) -> bool:
    """math-verify's equivalence between the answer in `text` and `gold` (LaTeX or plain)."""
    from math_verify import parse, verify  # it imports sympy (seconds): only when a real answer is graded

    predicted = extract_answer(text) or text
    gold_parsed = parse(f"${gold}$")
    return bool(gold_parsed) and verify(gold_parsed, parse(f"${predicted}$"))


def has_think_format(text: str) -> bool:
    """Whether `text` is a non-empty think block followed by an answer block, and nothing else."""
    return _THINK_FORMAT.match(text) is not None
