"""Why a wrong answer is wrong: the error taxonomy of the paper's over-thinking failures.

Each wrong completion gets exactly one category, tried in the order of ``CATEGORIES``:

- ``loop``: the completion repeats itself (a line written three times, or its end one short segment
  over and over), whether or not it stopped.
- ``truncated``: it hit the token limit before closing its answer.
- ``format``: it stopped, but with no ``<answer>`` block holding an answer, or a think block left
  open; in the arithmetic world also an answer that is not an integer, or think lines that are not
  ``a op b=c`` steps.
- ``slip``: an arithmetic slip, a step ``a op b=c`` whose result is wrong, in an otherwise well-formed chain.
- ``plan``: every step's arithmetic is right, but the steps do not compute the question (an operand
  copied wrong, a step missing or out of order), so the answer is wrong.
- ``final``: the steps are exactly the question's worked steps, and the final answer still differs.
- ``direct``: a wrong answer with no steps written (thinking off, or the direct style).
- ``unchecked``: a real data set's wrong answer after reasoning whose steps cannot be checked exactly.

In the arithmetic world every step is checked exactly against the problem (``arith.Problem.steps``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sparks.tasks import arith, formats

CATEGORIES = ("loop", "truncated", "format", "slip", "plan", "final", "direct", "unchecked")
LOOP_LINES = 3
"""A non-empty line written this many times is a loop."""
LOOP_TAIL = (4, 8)
"""The completion's end repeating a segment at least 4 times over at least 8 characters is a loop."""
_STEP = re.compile(r"(\d+)([+\-*])(\d+)=(\d+)")


def is_loop(text: str) -> bool:
    """Whether ``text`` repeats a line ``LOOP_LINES`` times or ends in one segment repeated (``LOOP_TAIL``)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if any(lines.count(line) >= LOOP_LINES for line in set(lines)):
        return True
    times, span = LOOP_TAIL
    for period in range(1, len(text) // times + 1):
        segment = text[-period:]
        repeats = 1
        while text[: len(text) - repeats * period].endswith(segment):
            repeats += 1
        if repeats >= times and repeats * period >= span:
            return True
    return False


def think_lines(text: str) -> list[str] | None:
    """The non-empty lines of the completion's think block, or None without a closed one."""
    start, end = text.find(formats.THINK_OPEN), text.find(formats.THINK_CLOSE)
    if start < 0 or end < start:
        return None
    return [line.strip() for line in text[start + len(formats.THINK_OPEN) : end].splitlines() if line.strip()]


def step_is_right(step: str) -> bool:
    """Whether the ``a op b=c`` step's result is right for its own operands."""
    match = _STEP.fullmatch(step)
    if match is None:
        raise ValueError(f"{step!r} is not an `a op b=c` step")
    left, operator, right, result = match.groups()
    return arith.OPERATORS[operator](int(left), int(right)) == int(result)


def categorise(text: str, truncated: bool, steps: Sequence[str] | None) -> str:
    """The category of a wrong completion (see the module docstring).

    ``truncated``: it ended at the token limit; ``steps``: the question's worked steps (arithmetic
    world), or None where steps cannot be checked (a real data set).
    """
    if is_loop(text):
        return "loop"
    answer = formats.extract_answer(text)
    if answer is None and truncated:
        return "truncated"
    lines = think_lines(text)
    unclosed = lines is None and formats.THINK_OPEN in text
    if not answer or unclosed or (steps is not None and not re.fullmatch(r"-?\d+", answer)):
        return "format"
    if not lines:
        return "direct"
    if steps is None:
        return "unchecked"
    if not all(_STEP.fullmatch(line) for line in lines):
        return "format"
    if not all(step_is_right(line) for line in lines):
        return "slip"
    return "final" if tuple(lines) == tuple(steps) else "plan"
