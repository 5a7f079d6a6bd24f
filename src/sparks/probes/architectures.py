"""The declared architecture table (after pyvene's per-model site tables): one row per ``model_type``.

A row says where a decoder family keeps its heads and what the residual stream's structure is, which is
all the edge maths needs (docs/architectures.md explains each field and how to add a family):

- readers: q/k/v read ``attention_norm(residual)`` (the residual itself when None) through their own
  projections or slices of a fused ``qkv`` one; the MLP reads ``mlp_norm(residual)``, or, in a
  ``parallel`` block, the attention's normed input;
- writers: the heads write ``o_proj(z)``, passed through ``attention_out_norm`` when the family
  normalises a block's output before the residual add (a sandwich or post norm), the MLP its output
  through ``mlp_out_norm``; both scaled by the config's ``residual_multiplier``, the embedding by its
  ``embedding_multiplier`` (an embedding module that scales itself, as Gemma's, needs nothing).

A row with ``edge_refusal`` is scored at node level only (a head is its slice of the input of the
output projection, whatever else the layer does); a model type in ``REFUSED`` or in neither table is
refused with one line. Nothing is ever tried with another family's row.
"""

from __future__ import annotations

from dataclasses import dataclass

DOCS = "docs/architectures.md"


@dataclass(frozen=True)
class Architecture:
    """One decoder family. Module paths below ``layers`` are relative to a decoder layer."""

    layers: str = "model.layers"
    embed_tokens: str = "model.embed_tokens"
    norm: str = "model.norm"
    lm_head: str = "lm_head"
    q_proj: str | None = "self_attn.q_proj"
    k_proj: str | None = "self_attn.k_proj"
    v_proj: str | None = "self_attn.v_proj"
    qkv_proj: str | None = None
    """A fused projection whose output is [q | k | v] (Phi-3); q_proj, k_proj and v_proj are then None."""
    o_proj: str = "self_attn.o_proj"
    attention_norm: str | None = "input_layernorm"
    attention_out_norm: str | None = None
    mlp: str = "mlp"
    mlp_norm: str | None = "post_attention_layernorm"
    mlp_out_norm: str | None = None
    parallel: bool = False
    """Attention and MLP read the same ``attention_norm`` output and write together (Cohere)."""
    embedding_multiplier: str | None = None
    residual_multiplier: str | None = None
    routed: bool = False
    """Some MLPs route each token to its top-k experts: IG's path crosses routing discontinuities."""
    attention_layer_type: str | None = None
    """In a hybrid, the entry of the config's ``layer_types`` that marks softmax-attention layers: only they
    have heads, and the layer numbers sparks reports count them alone (``Sites.layer_ids`` maps them back)."""
    edge_refusal: str | None = None
    """Why edges cannot be expressed for this family (node level only), or None."""


_LLAMA = Architecture()
_SANDWICH = Architecture(
    attention_out_norm="post_attention_layernorm",
    mlp_norm="pre_feedforward_layernorm",
    mlp_out_norm="post_feedforward_layernorm",
)
_POST_NORM = Architecture(
    attention_norm=None,
    attention_out_norm="post_attention_layernorm",
    mlp_norm=None,
    mlp_out_norm="post_feedforward_layernorm",
)
_ROUTED = Architecture(routed=True)
_HYBRID_REFUSAL = ("hybrid: its linear-attention (Gated DeltaNet) layers write to the residual stream as nodes the "
                   "edge graph has no place for")

ARCHITECTURES: dict[str, Architecture] = {
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "qwen2": _LLAMA,
    "qwen3": _LLAMA,  # q_norm/k_norm sit after the projections: gradients taken there include them
    "smollm3": _LLAMA,
    "seed_oss": _LLAMA,
    "gemma": _LLAMA,  # the embedding module scales itself by sqrt(hidden_size)
    "qwen3_moe": _ROUTED,
    "mixtral": _ROUTED,
    "gpt_oss": _ROUTED,
    "llama4_text": Architecture(mlp="feed_forward", routed=True),
    "gemma2": _SANDWICH,
    "gemma3_text": _SANDWICH,
    "glm4": Architecture(
        attention_out_norm="post_self_attn_layernorm",
        mlp_norm="post_attention_layernorm",
        mlp_out_norm="post_mlp_layernorm",
    ),
    "olmo2": _POST_NORM,
    "olmo3": _POST_NORM,
    "exaone4": _POST_NORM,
    "granite": Architecture(embedding_multiplier="embedding_multiplier", residual_multiplier="residual_multiplier"),
    "phi3": Architecture(q_proj=None, k_proj=None, v_proj=None, qkv_proj="self_attn.qkv_proj"),
    "cohere": Architecture(mlp_norm=None, parallel=True),
    "deepseek_v3": Architecture(
        q_proj=None,
        k_proj=None,
        v_proj=None,
        routed=True,
        edge_refusal="multi-head latent attention: keys and values come from a shared low-rank latent, "
        "so a head's k/v input is no slice of one projection",
    ),
    "gemma4_text": Architecture(
        attention_out_norm="post_attention_layernorm",
        mlp_norm="pre_feedforward_layernorm",
        mlp_out_norm="post_feedforward_layernorm",
        edge_refusal="each layer's layer_scalar rescales the whole residual stream and per-layer token "
        "inputs write into it, so a node's write is not what the later layers read",
    ),
    # Older layouts under other module names; node level only.
    "gpt2": Architecture(
        layers="transformer.h", embed_tokens="transformer.wte", norm="transformer.ln_f", q_proj=None, k_proj=None,
        v_proj=None, o_proj="attn.c_proj", attention_norm="ln_1", mlp_norm="ln_2",
        edge_refusal="a fused Conv1D c_attn and learned position embeddings, which the edge maths does not express yet",
    ),
    "gpt_neox": Architecture(
        layers="gpt_neox.layers", embed_tokens="gpt_neox.embed_in", norm="gpt_neox.final_layer_norm",
        q_proj=None, k_proj=None, v_proj=None, o_proj="attention.dense", parallel=True,
        edge_refusal="a fused query_key_value with each head's q, k and v rows side by side, and a residual that "
        "is parallel or not by config, which the edge maths does not express yet",
    ),
    # Hybrids: heads only in the full-attention layers, whose q_proj also computes an output gate.
    "qwen3_next": Architecture(q_proj=None, k_proj=None, v_proj=None, routed=True,
                               attention_layer_type="full_attention", edge_refusal=_HYBRID_REFUSAL),
    "qwen3_5_text": Architecture(q_proj=None, k_proj=None, v_proj=None,
                                 attention_layer_type="full_attention", edge_refusal=_HYBRID_REFUSAL),
    "qwen3_5_moe_text": Architecture(q_proj=None, k_proj=None, v_proj=None, routed=True,
                                     attention_layer_type="full_attention", edge_refusal=_HYBRID_REFUSAL),
}
"""model_type -> its row. Adding a row adds its tests (tests/probes/test_architectures.py)."""

_NO_HEADS = "no attention heads: its layers are state-space or recurrent mixers"
REFUSED: dict[str, str] = {
    "mamba": _NO_HEADS,
    "mamba2": _NO_HEADS,
    "falcon_mamba": _NO_HEADS,
    "rwkv": _NO_HEADS,
    "xlstm": _NO_HEADS,
}
"""model_type -> why it is refused even at node level."""


def check_family(model_type: str | None, level: str) -> Architecture:
    """The row of ``model_type`` if it can be scored at ``level`` (node or edge); else ValueError, one line.

    Needs only the config's model_type, so the CLI checks before loading any weights."""
    row = architecture(model_type)
    if level not in ("node", "edge"):
        raise ValueError(f"unknown level {level!r}; choose from ('node', 'edge')")
    if level == "edge" and row.edge_refusal is not None:
        raise ValueError(f"{model_type} is scored at node level only, not edge: {row.edge_refusal}")
    return row


def architecture(model_type: str | None) -> Architecture:
    """The declared row of ``model_type``; ValueError (one line) for a refused or unknown family."""
    if model_type in REFUSED:
        raise ValueError(f"model_type {model_type!r} is not supported: {REFUSED[model_type]} (see {DOCS})")
    if model_type not in ARCHITECTURES:
        raise ValueError(
            f"model_type {model_type!r} is not in sparks' architecture table, so where its heads live is "
            f"unknown; see {DOCS} for the families scored and how to add one"
        )
    return ARCHITECTURES[model_type]
