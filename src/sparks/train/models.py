"""Loading the policy model and tokenizer a recipe names, the same way for a tiny model and a hub model."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from trl import GRPOConfig, ModelConfig, SFTConfig


def load_tokenizer(model_args: ModelConfig, training_args: GRPOConfig | SFTConfig) -> PreTrainedTokenizerBase:
    """The model's tokenizer, with a pad token (the eos token where the model has none)."""
    tokenizer = AutoTokenizer.from_pretrained(
        model_args.model_name_or_path,
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(model_args: ModelConfig, training_args: GRPOConfig | SFTConfig) -> PreTrainedModel:
    """The causal LM in the recipe's dtype and attention kernel; PEFT is applied later by the trainer."""
    dtype = model_args.dtype if model_args.dtype in (None, "auto") else getattr(torch, model_args.dtype)
    assert model_args.model_name_or_path, "check_model_path refuses a recipe without a model first"
    return AutoModelForCausalLM.from_pretrained(
        model_args.model_name_or_path,
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
        attn_implementation=model_args.attn_implementation,
        dtype=dtype,
        use_cache=not training_args.gradient_checkpointing,
    )
