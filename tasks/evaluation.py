"""pass@1 of a model on arithmetic problems, per difficulty level and answer style (greedy decoding)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sparks.tasks import formats
from sparks.tasks.arith import Problem
from sparks.tasks.data import chat_prompt


# How the model is prompted: into each answer style, or left to choose (thinking on, nothing forced).
MODES = (*formats.STYLES, "free")


@dataclass(frozen=True)
class Graded:
    """One problem, the model's completion and whether it was right."""

    problem: Problem
    style: str
    completion: str
    correct: bool
    formatted: bool


def style_prompt(tokenizer: PreTrainedTokenizerBase, question: str, style: str, system_prompt: str | None) -> str:
    """The prompt that puts the model in `style` (one of MODES).

    `think` opens the think block for the model; `direct` switches thinking off the Qwen3 way
    (an empty think block), so both styles are measured whatever the model's habit; `free` is the
    plain prompt that training uses, where the model picks its own style.
    """
    if style not in MODES:
        raise ValueError(f"unknown style {style!r}; styles are {MODES}")
    prompt = tokenizer.apply_chat_template(
        chat_prompt(question, system_prompt),
        tokenize=False,
        add_generation_prompt=True,
        enable_thinking=style != "direct",
    )
    return prompt + f"{formats.THINK_OPEN}\n" if style == "think" else prompt


@torch.no_grad()
def generate_completions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    max_new_tokens: int,
    batch_size: int,
    progress: tqdm | None = None,
) -> list[str]:
    """Greedy completions for `prompts`, in order, batched with left padding."""
    completions = []
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer(
            prompts[start : start + batch_size], return_tensors="pt", padding=True, padding_side="left"
        ).to(model.device)
        output = model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        completions += tokenizer.batch_decode(output[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
        if progress is not None:
            progress.update(len(batch["input_ids"]))
    return completions


def grade(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    problems: list[Problem],
    styles: tuple[str, ...] = MODES,
    system_prompt: str | None = None,
    max_new_tokens: int = 96,
    batch_size: int = 64,
) -> list[Graded]:
    """Every problem answered greedily in every style, and checked."""
    was_training = model.training
    model.eval()
    graded = []
    try:
        with tqdm(total=len(problems) * len(styles), desc="evaluating", unit="problem") as progress:
            for style in styles:
                prompts = [style_prompt(tokenizer, problem.question, style, system_prompt) for problem in problems]
                texts = generate_completions(model, tokenizer, prompts, max_new_tokens, batch_size, progress)
                for problem, text in zip(problems, texts):
                    text = f"{formats.THINK_OPEN}\n{text}" if style == "think" else text
                    graded.append(
                        Graded(problem, style, text, formats.is_correct(text, problem.answer), formats.has_think_format(text))
                    )
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
