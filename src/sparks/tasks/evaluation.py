"""pass@1 of a model on arithmetic problems, per difficulty level and answer style (greedy decoding)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sparks.tasks import formats
from sparks.tasks.arith import Problem
from sparks.tasks.data import rendered_prompt

# How the model is prompted: into each answer style, or left to choose (thinking on, nothing forced).
MODES = (*formats.STYLES, "free")


@dataclass(frozen=True)
class FileProblem:
    """A real data set's problem read from a local file: its gold answer is text (checked with
    math-verify), its level whatever the file says, and its steps cannot be checked (None)."""

    question: str
    answer: str
    level: int
    steps: None = None


@dataclass(frozen=True)
class Graded:
    """One problem, the model's completion, whether it was right, and whether it ran into the token limit."""

    problem: Problem | FileProblem
    style: str
    completion: str
    correct: bool
    formatted: bool
    truncated: bool = False


def style_prompt(tokenizer: PreTrainedTokenizerBase, question: str, style: str, system_prompt: str | None) -> str:
    """The prompt that puts the model in `style` (one of MODES).

    `think` opens the think block for the model; `direct` switches thinking off the Qwen3 way
    (an empty think block), so both styles are measured whatever the model's habit; `free` is the
    plain prompt that training uses, where the model picks its own style.
    """
    if style not in MODES:
        raise ValueError(f"unknown style {style!r}; styles are {MODES}")
    prompt = rendered_prompt(tokenizer, question, system_prompt, enable_thinking=style != "direct")
    return prompt + f"{formats.THINK_OPEN}\n" if style == "think" else prompt


@dataclass(frozen=True)
class Completion:
    """A generated text, and whether it ended at the token limit instead of an end of sequence."""

    text: str
    truncated: bool


def decoding(temperature: float | None) -> dict[str, Any]:
    """`generate` arguments: greedy for None, else plain sampling at `temperature` (no top-k or top-p)."""
    if temperature is None:
        return {"do_sample": False}
    return {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}


@torch.no_grad()
def generate_completions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    max_new_tokens: int,
    batch_size: int,
    progress: tqdm | None = None,
    temperature: float | None = None,
) -> list[Completion]:
    """Completions for `prompts`, in order, batched with left padding: greedy, or sampled at
    `temperature` (no top-k or top-p) from torch's global generator."""
    completions = []
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer(
            prompts[start : start + batch_size], return_tensors="pt", padding=True, padding_side="left"
        ).to(model.device)
        output = model.generate(  # type: ignore[operator]  # causal LMs mix in GenerationMixin, which PreTrainedModel's type does not declare
            **batch,
            **decoding(temperature),
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        new_tokens = output[:, batch["input_ids"].shape[1] :]
        texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        ended = (new_tokens == tokenizer.eos_token_id).any(-1).tolist()
        completions += [Completion(text, not stopped) for text, stopped in zip(texts, ended)]
        if progress is not None:
            progress.update(len(batch["input_ids"]))
    return completions


def grade(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    problems: Sequence[Problem | FileProblem],
    styles: tuple[str, ...] = MODES,
    system_prompt: str | None = None,
    max_new_tokens: int = 96,
    batch_size: int = 64,
    *,
    temperature: float | None = None,
    check: Callable[[str, int | str], bool] = formats.is_correct,
    progress: tqdm | None = None,
) -> list[Graded]:
    """Every problem answered in every style (greedily, or sampled at `temperature`) and checked with
    `check(completion, gold answer)`; `progress` is a bar to advance instead of a bar of its own."""
    was_training = model.training
    model.eval()
    graded = []
    try:
        with nullcontext(progress) if progress is not None else tqdm(
            total=len(problems) * len(styles), desc="evaluating", unit="problem"
        ) as bar:
            for style in styles:
                prompts = [style_prompt(tokenizer, problem.question, style, system_prompt) for problem in problems]
                completions = generate_completions(model, tokenizer, prompts, max_new_tokens, batch_size, bar, temperature)
                for problem, completion in zip(problems, completions):
                    text = f"{formats.THINK_OPEN}\n{completion.text}" if style == "think" else completion.text
                    graded.append(Graded(problem, style, text, check(text, problem.answer), formats.has_think_format(text),
                                         completion.truncated))
    finally:
        model.train(was_training)
    return graded


def pass_at_1(graded: list[Graded]) -> dict[str, dict[int, float]]:
    """Fraction correct per style and level: `{style: {level: pass@1}}`."""
    totals: dict[str, dict[int, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for item in graded:
        cell = totals[item.style][item.problem.level]
        cell[0] += item.correct
        cell[1] += 1
    return {style: {level: right / count for level, (right, count) in sorted(levels.items())} for style, levels in totals.items()}
