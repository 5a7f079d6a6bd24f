"""Making clean/corrupted pairs (docs/method.md, "Probe pairs"): answer styles, and number swaps.

*style*: the same question, then a reasoning-style opening in one row and a baseline-style opening
in the other (clean = the style of the model under study: ``role="reasoning"`` puts the reasoning
opening in the clean row, ``role="baseline"`` swaps them). The prompt is the chat prompt with the
generation prompt; each opening is tokenized on its own and appended, so both rows share the
prompt's ids exactly. Alignment: both openings are **truncated to the same N + 1 tokens** (N = the
shortest opening in the set minus one, unless given); the rows hold the prompt and N opening
tokens, the N opening positions are scored, and each run's answer there is its own opening's next
token (so ``logit_diff`` reads "own style versus the other style"). Truncating keeps both rows real
prefixes of what each style writes; padding inside the text would put tokens there that neither
style writes.

*numbers*: one operand of an arithmetic question changed (same digit count, every intermediate value
still in the world's range) so the answer changes; the prompt asks for a direct answer and ends in
``<answer>``; the scored position is the last one and the answer ids are the first token of each
answer. Candidates whose answers start with the same token, or whose prompts tokenize to different
lengths, are skipped.

*thinking*: a number swap's two questions in one thinking mode of the chat template (``on``:
``enable_thinking=True``, ``off``: ``False``), each row followed by the model's own continuation of
the clean prompt in that mode (teacher-forced: the corrupted row is the swapped question followed by
the clean question's continuation); every position predicting a continuation token is scored.
Answers are the same tokens in both rows, so only the KL metric means anything here.
"""

from __future__ import annotations

import ast
import json
import random
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from transformers import PreTrainedTokenizerBase

from sparks.probes.pairs import Pair, read_text
from sparks.tasks import arith, formats
from sparks.tasks.data import rendered_prompt
from sparks.tasks.evaluation import style_prompt

SCHEMES = ("style", "numbers")
THINKING_MODES = {"on": True, "off": False}
"""The chat template's ``enable_thinking`` value in each thinking mode."""
ROLES = ("reasoning", "baseline")
REASONING_OPENING = "<think>\nOkay, so I have this problem"
"""The paper's reasoning-model opening, a template for real data sets."""
BASELINE_OPENING = "To determine the answer, we"
"""The paper's baseline-model opening, a template for real data sets."""


def _ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def pair_prompt(
    tokenizer: PreTrainedTokenizerBase, question: str, system_prompt: str | None, enable_thinking: bool | None = None
) -> str:
    """A style (or thinking mode) pair's prompt: the chat prompt of the question with the generation prompt,
    rendered with the template's ``enable_thinking`` switch when it is given (left to the template's default if not)."""
    switch = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
    return rendered_prompt(tokenizer, question, system_prompt, **switch)


def decoded(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> str:
    """The text of one sequence of ids."""
    return cast(str, tokenizer.decode(ids))  # one sequence decodes to one string


def style_pairs(
    tokenizer: PreTrainedTokenizerBase,
    questions: Sequence[str],
    reasoning: Sequence[str],
    baseline: Sequence[str],
    *,
    role: str = "reasoning",
    opening_tokens: int | None = None,
    system_prompt: str | None = None,
    meta: Sequence[dict[str, Any]] | None = None,
) -> list[Pair]:
    """Style pairs from each question's reasoning and baseline openings (templates or samples).

    ``opening_tokens`` is N in the module docstring; pairs with an opening shorter than N + 1
    tokens are left out, and so are pairs whose openings agree on the N tokens the rows hold
    (sampled openings can: both models may start alike), since their two rows would be the same.
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles are {ROLES}")
    if not len(questions) == len(reasoning) == len(baseline):
        raise ValueError(f"{len(questions)} questions, {len(reasoning)} reasoning and {len(baseline)} baseline openings")
    meta = [{} for _ in questions] if meta is None else meta
    rows = []
    for question, *openings in zip(questions, reasoning, baseline):
        prompt = _ids(tokenizer, pair_prompt(tokenizer, question, system_prompt))
        rows.append((prompt, *(_ids(tokenizer, opening) for opening in openings)))
    shortest = min((min(len(think), len(direct)) for _, think, direct in rows), default=0)
    count = shortest - 1 if opening_tokens is None else opening_tokens
    if count < 1:
        raise ValueError(f"openings must be aligned to at least 1 token, got {count} (shortest opening: {shortest})")
    pairs = []
    for (prompt, think, direct), info in zip(rows, meta):
        if min(len(think), len(direct)) < count + 1 or think[:count] == direct[:count]:
            continue
        clean, corrupted = (think, direct) if role == "reasoning" else (direct, think)
        clean_ids, corrupted_ids = prompt + clean[:count], prompt + corrupted[:count]
        pairs.append(
            Pair(
                clean_text=decoded(tokenizer, clean_ids),
                corrupted_text=decoded(tokenizer, corrupted_ids),
                clean_ids=clean_ids,
                corrupted_ids=corrupted_ids,
                targets=list(range(len(prompt), len(clean_ids))),
                clean_answer_ids=clean[1 : count + 1],
                corrupted_answer_ids=corrupted[1 : count + 1],
                meta={"scheme": "style", "role": role, "opening_tokens": count, **info},
            )
        )
    return pairs


def problem_meta(problem: arith.Problem) -> dict[str, Any]:
    """What a style pair of the arithmetic world records about its problem."""
    return {"level": problem.level, "question": problem.question, "answer": problem.answer}


def arith_style_pairs(
    tokenizer: PreTrainedTokenizerBase,
    problems: Sequence[arith.Problem],
    *,
    role: str = "reasoning",
    opening_tokens: int | None = None,
    system_prompt: str | None = None,
) -> list[Pair]:
    """Style pairs in the arithmetic world: the think completion's opening versus the direct one's."""
    return style_pairs(
        tokenizer,
        [problem.question for problem in problems],
        [formats.think_completion(problem) for problem in problems],
        [formats.direct_completion(problem) for problem in problems],
        role=role,
        opening_tokens=opening_tokens,
        system_prompt=system_prompt,
        meta=[problem_meta(problem) for problem in problems],
    )


def parse(question: str) -> arith.Node:
    """The expression tree of an arithmetic-world question (integers, + - *, parentheses)."""
    operators = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*"}

    def walk(node: ast.AST) -> arith.Node:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return arith.Node(value=node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in operators:
            return arith.Node(op=operators[type(node.op)], left=walk(node.left), right=walk(node.right))
        raise ValueError(f"{question!r} is not an arithmetic-world question")

    try:
        tree = walk(ast.parse(question, mode="eval").body)
    except SyntaxError:
        raise ValueError(f"{question!r} is not an arithmetic-world question") from None
    if arith.render(tree) != question:
        raise ValueError(f"{question!r} is not written the way the arithmetic world writes it")
    return tree


def _leaf_count(node: arith.Node) -> int:
    return 1 if node.is_leaf else sum(_leaf_count(operand) for operand in node.branches()[1:])


def _with_leaf(node: arith.Node, index: int, value: int) -> arith.Node:
    """``node`` with its ``index``-th leaf (left to right) set to ``value``."""
    if node.is_leaf:
        return arith.Node(value=value)
    op, left, right = node.branches()
    on_left = _leaf_count(left)
    if index < on_left:
        return arith.Node(op=op, left=_with_leaf(left, index, value), right=right)
    return arith.Node(op=op, left=left, right=_with_leaf(right, index - on_left, value))


def _leaves(node: arith.Node) -> list[int]:
    if node.is_leaf:
        return [node.number()]
    _, left, right = node.branches()
    return _leaves(left) + _leaves(right)


def operand_swaps(question: str, rng: random.Random) -> Iterator[tuple[str, int]]:
    """Every (question, answer) with one operand changed to another of the same digit count, in
    random order, that stays in the world's range and changes the answer."""
    tree = parse(question)
    answer = arith.evaluate(tree)
    candidates = []
    for index, value in enumerate(_leaves(tree)):
        digits = len(str(value))
        low = 0 if digits == 1 else 10 ** (digits - 1)
        candidates += [(index, other) for other in range(low, 10**digits) if other != value]
    rng.shuffle(candidates)
    for index, value in candidates:
        swapped = _with_leaf(tree, index, value)
        if arith.valid(swapped) and arith.evaluate(swapped) != answer:
            yield arith.render(swapped), arith.evaluate(swapped)


_WHOLE_NUMBER = re.compile(r"(?<![\d.,])\d+(?![\d.,]?\d)")
"""A whole number written plainly: not part of a decimal (3.5) or a grouped number (1,000)."""


def text_number_swap(question: str, rng: random.Random) -> str | None:
    """A real data set's question with one of its whole numbers, chosen by ``rng``, changed to another of the
    same digit count (so a digit-wise tokenizer keeps the length), or None when it has none. Its answer
    changes in general and is unknown, which the thinking-mode pairs do not need (they score KL)."""
    numbers = list(_WHOLE_NUMBER.finditer(question))
    if not numbers:
        return None
    number = rng.choice(numbers)
    value, digits = int(number.group()), len(number.group())
    low = 0 if digits == 1 else 10 ** (digits - 1)
    other = value
    while other == value:
        other = rng.randrange(low, 10**digits)
    return f"{question[: number.start()]}{other}{question[number.end():]}"


def numbers_pairs(
    tokenizer: PreTrainedTokenizerBase,
    problems: Sequence[arith.Problem],
    *,
    seed: int = 0,
    system_prompt: str | None = None,
) -> list[Pair]:
    """Number-swap pairs (see the module docstring); a problem with no usable swap is left out."""

    def prompt(question: str) -> list[int]:
        return _ids(tokenizer, style_prompt(tokenizer, question, "direct", system_prompt) + formats.ANSWER_OPEN)

    pairs = []
    for problem in problems:
        clean_ids = prompt(problem.question)
        clean_answer = _ids(tokenizer, str(problem.answer))[0]
        rng = random.Random(f"{seed}-{problem.question}")
        for question, answer in operand_swaps(problem.question, rng):
            corrupted_ids = prompt(question)
            corrupted_answer = _ids(tokenizer, str(answer))[0]
            if len(corrupted_ids) == len(clean_ids) and corrupted_answer != clean_answer:
                pairs.append(
                    Pair(
                        clean_text=decoded(tokenizer, clean_ids),
                        corrupted_text=decoded(tokenizer, corrupted_ids),
                        clean_ids=clean_ids,
                        corrupted_ids=corrupted_ids,
                        targets=[len(clean_ids) - 1],
                        clean_answer_ids=[clean_answer],
                        corrupted_answer_ids=[corrupted_answer],
                        meta={
                            "scheme": "numbers",
                            "level": problem.level,
                            "question": problem.question,
                            "answer": problem.answer,
                            "corrupted_question": question,
                            "corrupted_answer": answer,
                        },
                    )
                )
                break
    return pairs


def has_thinking_switch(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the tokenizer's chat template renders a prompt differently with ``enable_thinking`` on and off."""
    on, off = (pair_prompt(tokenizer, "1+1", None, switch) for switch in THINKING_MODES.values())
    return on != off


def mode_pairs(
    tokenizer: PreTrainedTokenizerBase,
    swaps: Sequence[dict[str, Any]],
    continuations: Mapping[str, Sequence[Sequence[int]]],
    *,
    system_prompt: str | None = None,
    min_tokens: int = 1,
) -> dict[str, list[Pair]]:
    """Thinking-mode pairs (see the module docstring) of number swaps, one list per mode of THINKING_MODES.

    ``swaps`` are number-swap pairs' metadata (``question`` and ``corrupted_question``);
    ``continuations[mode][i]`` are the ids the model wrote after swap i's clean prompt in that mode.
    A swap is kept only when both modes can pair it (clean and corrupted prompts of equal length, a
    continuation of at least ``min_tokens`` ids), so both lists hold the same questions in the same
    order: pair i of ``on`` and pair i of ``off`` share their bootstrap weights (probes.bootstrap).
    Each mode's continuations are cut to the shortest kept one, so every pair of a mode scores as many
    positions; ``min_tokens`` keeps one short answer from cutting every pair to it.
    """
    for mode in THINKING_MODES:
        if len(continuations[mode]) != len(swaps):
            raise ValueError(f"{len(continuations[mode])} continuations in thinking mode {mode} for {len(swaps)} swaps")
    kept = []
    for index, swap in enumerate(swaps):
        rows = {}
        for mode, switch in THINKING_MODES.items():
            clean, corrupted = (
                _ids(tokenizer, pair_prompt(tokenizer, swap[key], system_prompt, switch))
                for key in ("question", "corrupted_question")
            )
            continuation = list(continuations[mode][index])
            if len(clean) == len(corrupted) and clean != corrupted and len(continuation) >= max(1, min_tokens):
                rows[mode] = (clean, corrupted, continuation)
        if len(rows) == len(THINKING_MODES):
            kept.append((swap, rows))
    pairs: dict[str, list[Pair]] = {}
    for mode in THINKING_MODES:
        count = min((len(rows[mode][2]) for _, rows in kept), default=0)
        pairs[mode] = []
        for swap, rows in kept:
            clean, corrupted, continuation = rows[mode]
            tail = continuation[:count]
            pairs[mode].append(
                Pair(
                    clean_text=decoded(tokenizer, clean + tail),
                    corrupted_text=decoded(tokenizer, corrupted + tail),
                    clean_ids=clean + tail,
                    corrupted_ids=corrupted + tail,
                    targets=list(range(len(clean) - 1, len(clean) + count - 1)),
                    clean_answer_ids=tail,
                    meta={**swap, "scheme": "thinking", "thinking": mode, "continuation_tokens": count},
                )
            )
    return pairs


def read_questions(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a real data set: JSONL objects with a ``question`` (other fields are kept as metadata),
    or, for any other file, one question per line."""
    path = Path(path)
    lines = [line for line in read_text(path, "questions").splitlines() if line.strip()]
    if path.suffix != ".jsonl":
        return [{"question": line} for line in lines]
    rows = []
    for number, line in enumerate(lines, start=1):
        try:
            row = json.loads(line)
        except ValueError:
            raise ValueError(f"{path}: row {number} is not JSON") from None
        if not isinstance(row, dict) or not isinstance(row.get("question"), str):
            raise ValueError(f"{path}: row {number} has no 'question' text")
        rows.append(row)
    return rows
