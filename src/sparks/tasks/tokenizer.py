"""A character-level tokenizer built in code, with a Qwen3-style chat template.

It is a Qwen2 byte-level BPE tokenizer with no merges: every byte is one token, and every tag and
special token is one token. Being a genuine `Qwen2Tokenizer`, it saves and loads like any hub
tokenizer (`AutoTokenizer.from_pretrained(dir)` picks the same class for a Qwen2 model directory),
so the training scripts treat the tiny world and a real model the same way.
"""

from __future__ import annotations

from tokenizers import AddedToken, pre_tokenizers
from transformers import Qwen2Tokenizer

PAD, BOS_CHAT, EOS_CHAT = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = (PAD, BOS_CHAT, EOS_CHAT)
# Tags the model writes itself: not special, so decoding with skip_special_tokens keeps them (as Qwen3).
TAG_TOKENS = ("<think>", "</think>", "<answer>", "</answer>")

# Qwen3's convention: thinking off means the generation prompt already holds an empty think block.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}"
    "{{- '<think>\\n\\n</think>\\n' -}}"
    "{%- endif -%}"
    "{%- endif -%}"
)


def build_tokenizer() -> Qwen2Tokenizer:
    """The arithmetic world's tokenizer: one token per byte, one per tag and special token."""
    byte_symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: index for index, token in enumerate((*SPECIAL_TOKENS, *TAG_TOKENS, *byte_symbols))}
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=[],
        unk_token=None,  # type: ignore[arg-type]  # transformers annotates str, but None (no unknown token) is what a byte-level vocabulary needs
        eos_token=EOS_CHAT,
        pad_token=PAD,
        additional_special_tokens=[BOS_CHAT],
        padding_side="left",
        model_max_length=512,
    )
    tokenizer.add_tokens([AddedToken(token, special=False, normalized=False) for token in TAG_TOKENS])
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
