"""Answer openings sampled from a model, for style pairs (docs/method.md, "Probe pairs").

The paper's style pairs follow the same question with the reasoning model's own opening and the
baseline model's own opening. Here each model continues the chat prompt that the pair rows use
(probes.schemes.pair_prompt), greedily or sampled with a
seed, and the new tokens up to the first end-of-sequence are its opening, as text: style_pairs
tokenizes it and aligns both styles to equal length. The same continuations as ids, in a thinking
mode of the chat template, are what thinking-mode pairs teacher-force (probes.schemes.mode_pairs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sparks.probes.schemes import decoded, pair_prompt
from sparks.tasks.evaluation import decoding


def _continue(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    questions: Sequence[str],
    tokens: int,
    generation: dict[str, Any],
    system_prompt: str | None,
    enable_thinking: bool | None,
) -> list[list[int]]:
    """One left-padded batch of questions continued by the model; new ids up to the first end-of-sequence."""
    prompts = [pair_prompt(tokenizer, question, system_prompt, enable_thinking) for question in questions]
    batch = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    batch = batch.to(next(model.parameters()).device)
    output = model.generate(  # type: ignore[operator]  # causal LMs mix in GenerationMixin, which PreTrainedModel's type does not declare
        **batch,
        **generation,
        max_new_tokens=tokens,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    stops = {tokenizer.eos_token_id, tokenizer.pad_token_id} - {None}
    continuations = []
    for row in output[:, batch["input_ids"].shape[1] :].tolist():
        end = next((index for index, token in enumerate(row) if token in stops), len(row))
        continuations.append(row[:end])
    return continuations


@torch.no_grad()
def continuation_ids(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    questions: Sequence[str],
    *,
    tokens: int = 16,
    seed: int | None = None,
    system_prompt: str | None = None,
    batch_size: int = 16,
    enable_thinking: bool | None = None,
    progress: bool = True,
) -> list[list[int]]:
    """Each question's continuation as ``model`` writes it: at most ``tokens`` new ids, up to the first end-of-sequence.

    The prompt is probes.schemes.pair_prompt's, in the thinking mode ``enable_thinking`` when given.
    ``seed=None`` decodes greedily; a seed samples at temperature 1 (no top-k or top-p), with the
    global RNG state restored afterwards. The model's training mode is restored too.
    """
    if tokens < 1:
        raise ValueError(f"tokens must be >= 1, got {tokens}")
    if len(tokenizer) > cast(nn.Embedding, model.get_input_embeddings()).num_embeddings:  # a causal LM's input embedding
        raise ValueError(f"the tokenizer has {len(tokenizer)} tokens, more than the model's vocabulary")
    device = next(model.parameters()).device
    training = model.training
    continuations = []
    starts = range(0, len(questions), batch_size)
    try:
        model.eval()
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            if seed is not None:
                torch.manual_seed(seed)
            for start in tqdm(starts, desc="generating", unit="batch", disable=not progress):
                continuations += _continue(
                    model, tokenizer, questions[start : start + batch_size], tokens, decoding(None if seed is None else 1.0),
                    system_prompt, enable_thinking
                )
    finally:
        model.train(training)
    return continuations


def sample_openings(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    questions: Sequence[str],
    *,
    tokens: int = 16,
    seed: int | None = None,
    system_prompt: str | None = None,
    batch_size: int = 16,
) -> list[str]:
    """Each question's opening as ``model`` writes it, as text: continuation_ids decoded."""
    ids = continuation_ids(
        model, tokenizer, questions, tokens=tokens, seed=seed, system_prompt=system_prompt, batch_size=batch_size
    )
    return [decoded(tokenizer, row) for row in ids]
