"""Randomly initialised models the benches share."""

from __future__ import annotations

import torch
import transformers


def wide_model(vocab_size: int, head_dim: int, layers: int = 28) -> torch.nn.Module:
    """A random Qwen2 with Qwen2.5-Math-1.5B's head layout (28 layers, 12 query heads, 2 key-value heads)
    and a small hidden size (12 × ``head_dim``), seeded, so it fits a CPU.

    ``head_dim`` 128 gives Qwen2.5-Math-1.5B's own widths (hidden 1536, MLP 8960); ``layers`` fewer
    than 28 keeps that geometry per layer at a fraction of the depth (bench/precision.py on a CPU).
    """
    config = transformers.Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=12 * head_dim,
        intermediate_size=int(12 * head_dim * 8960 / 1536),
        num_hidden_layers=layers,
        num_attention_heads=12,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    torch.manual_seed(0)
    return transformers.Qwen2ForCausalLM(config)
