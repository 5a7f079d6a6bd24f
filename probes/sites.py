"""Where heads live: a small table per architecture (after pyvene) resolved against a live model.

A head's output is its slice of the input of ``self_attn.o_proj`` ([B, T, H * d_head]); q/k/v are
read on the projection outputs. Paths name the module that is called in the forward pass, so for a
PEFT-LoRA model they resolve to the LoRA layer wrapping the projection, whose input and output are
the same tensors as the plain projection's.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

_DECODER = {
    "embed_tokens": "model.embed_tokens",
    "layers": "model.layers",
    "input_layernorm": "model.layers.{layer}.input_layernorm",
    "q_proj": "model.layers.{layer}.self_attn.q_proj",
    "k_proj": "model.layers.{layer}.self_attn.k_proj",
    "v_proj": "model.layers.{layer}.self_attn.v_proj",
    "o_proj": "model.layers.{layer}.self_attn.o_proj",
    "post_attention_layernorm": "model.layers.{layer}.post_attention_layernorm",
    "mlp": "model.layers.{layer}.mlp",
    "norm": "model.norm",
    "lm_head": "lm_head",
}

SITE_TABLES: dict[str, dict[str, str]] = {
    "llama": _DECODER,
    "mistral": _DECODER,
    "qwen2": _DECODER,
    # Qwen3 normalises q and k per head after the projection (gradients at the projection outputs
    # already include it).
    "qwen3": {
        **_DECODER,
        "q_norm": "model.layers.{layer}.self_attn.q_norm",
        "k_norm": "model.layers.{layer}.self_attn.k_norm",
    },
}
"""model_type -> site name -> module path; other model types are tried with the Llama layout."""


@dataclass(frozen=True)
class LayerSites:
    """The modules of one decoder layer that scoring hooks."""

    input_layernorm: nn.Module
    q_proj: nn.Module
    k_proj: nn.Module
    v_proj: nn.Module
    o_proj: nn.Module
    post_attention_layernorm: nn.Module
    mlp: nn.Module
    q_norm: nn.Module | None
    k_norm: nn.Module | None


@dataclass(frozen=True)
class Sites:
    """A resolved model: the causal LM to call, its modules by role, and its head geometry."""

    model: nn.Module
    embed_tokens: nn.Module
    layers: tuple[LayerSites, ...]
    norm: nn.Module
    lm_head: nn.Module
    num_heads: int
    num_kv_heads: int
    head_dim: int

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def check_head(self, layer: int, head: int) -> None:
        """Raise IndexError unless (layer, head) names a head of this model."""
        if not 0 <= layer < self.num_layers:
            raise IndexError(f"layer {layer} out of range: the model has {self.num_layers} layers")
        if not 0 <= head < self.num_heads:
            raise IndexError(f"head {head} out of range: the model has {self.num_heads} heads per layer")


def unwrap(model: nn.Module) -> nn.Module:
    """The transformers model inside a PEFT wrapper (LoRA layers stay injected), else the model."""
    get_base_model = getattr(model, "get_base_model", None)
    return get_base_model() if callable(get_base_model) else model


def _module(model: nn.Module, path: str) -> nn.Module:
    try:
        return model.get_submodule(path)
    except AttributeError:
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        raise ValueError(
            f"{type(model).__name__} (model_type {model_type!r}) has no module {path!r}; "
            f"probes.sites knows {sorted(SITE_TABLES)}"
        ) from None


def _features(module: nn.Module, name: str) -> int:
    value = getattr(module, name, None)
    if value is None:
        raise ValueError(f"{type(module).__name__} has no {name}: not a linear projection")
    return int(value)


def resolve(model: nn.Module) -> Sites:
    """Resolve the site table for ``model`` (PEFT-wrapped or not) and check the head geometry."""
    base = unwrap(model)
    config = base.config
    table = SITE_TABLES.get(config.model_type, _DECODER)
    num_layers = len(_module(base, table["layers"]))

    def layer_sites(layer: int) -> LayerSites:
        def get(name: str) -> nn.Module | None:
            return _module(base, table[name].format(layer=layer)) if name in table else None

        return LayerSites(**{name: get(name) for name in LayerSites.__dataclass_fields__})

    num_heads = config.num_attention_heads
    num_kv_heads = getattr(config, "num_key_value_heads", None) or num_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // num_heads
    sites = Sites(
        model=base,
        embed_tokens=_module(base, table["embed_tokens"]),
        layers=tuple(layer_sites(layer) for layer in range(num_layers)),
        norm=_module(base, table["norm"]),
        lm_head=_module(base, table["lm_head"]),
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        head_dim=head_dim,
    )
    first = sites.layers[0]
    expected = {
        ("q_proj", "out_features"): num_heads * head_dim,
        ("k_proj", "out_features"): num_kv_heads * head_dim,
        ("v_proj", "out_features"): num_kv_heads * head_dim,
        ("o_proj", "in_features"): num_heads * head_dim,
    }
    for (name, attr), size in expected.items():
        if _features(getattr(first, name), attr) != size:
            raise ValueError(
                f"{name}.{attr} is {_features(getattr(first, name), attr)}, expected {size} from "
                f"{num_heads} heads x {num_kv_heads} kv heads x head_dim {head_dim}"
            )
    return sites
