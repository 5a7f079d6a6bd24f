"""The arithmetic world's tiny base model: a Qwen2 decoder with grouped-query attention."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from transformers import PreTrainedTokenizerBase, Qwen2Config, Qwen2ForCausalLM


@dataclass
class TinyModelArguments:
    """Shape of the tiny Qwen2 model that `train/pretrain.py` builds from scratch."""

    hidden_size: int = field(default=128, metadata={"help": "Residual stream width."})
    intermediate_size: int = field(default=384, metadata={"help": "MLP width."})
    num_hidden_layers: int = field(default=4, metadata={"help": "Decoder layers."})
    num_attention_heads: int = field(default=8, metadata={"help": "Query heads per layer."})
    num_key_value_heads: int = field(default=2, metadata={"help": "Key-value heads per layer (GQA)."})
    max_position_embeddings: int = field(default=256, metadata={"help": "Longest sequence the model sees."})

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads ({self.num_attention_heads})"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )


def build_tiny_model(shape: TinyModelArguments, tokenizer: PreTrainedTokenizerBase) -> Qwen2ForCausalLM:
    """A randomly initialised Qwen2ForCausalLM sized for the tokenizer, ready for pretraining."""
    vocab_size = -(-len(tokenizer) // 8) * 8
    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads,
        max_position_embeddings=shape.max_position_embeddings,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=cast(int, tokenizer.convert_tokens_to_ids("<|im_start|>")),  # one token, one id
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model
