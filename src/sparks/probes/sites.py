"""Where heads live: the declared architecture table (probes.architectures) resolved against a live model.

A head's output is its slice of the input of the attention output projection ([B, T, H * d_head]); q/k/v
are read on the projection outputs (slices of a fused one where the family fuses them). Paths name the
module that is called in the forward pass, so for a PEFT-LoRA model they resolve to the LoRA layer
wrapping the projection, whose input and output are the same tensors as the plain projection's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from torch import nn

from sparks.probes.architectures import Architecture, architecture, check_family

if TYPE_CHECKING:
    from transformers import PreTrainedConfig


@dataclass(frozen=True)
class Read:
    """A q, k or v input: the projection computing it and its rows (columns of its output) there."""

    proj: nn.Module
    rows: slice


@dataclass(frozen=True)
class LayerSites:
    """The modules of one decoder layer that scoring hooks, and its head geometry.

    ``q``/``k``/``v`` are None where the family's keys and values are no slice of one projection
    (latent attention): such a layer is scored at node level only. A norm that is None is the identity.
    """

    o_proj: nn.Module
    head_dim: int
    q: Read | None
    k: Read | None
    v: Read | None
    attention_norm: nn.Module | None
    attention_out_norm: nn.Module | None
    mlp: nn.Module
    mlp_norm: nn.Module | None
    mlp_out_norm: nn.Module | None

    def read(self, kind: str) -> Read:
        """The q, k or v input; ValueError where keys and values are no slices of one projection (node level only)."""
        read = getattr(self, kind)
        if read is None:
            raise ValueError(f"this layer has no {kind} slices of a projection: it is scored at node level only")
        return read


@dataclass(frozen=True)
class Sites:
    """A resolved model: the causal LM to call, its modules by role, its head geometry and structure."""

    model: nn.Module
    model_type: str
    architecture: Architecture
    embed_tokens: nn.Module
    layers: tuple[LayerSites, ...]
    layer_ids: tuple[int, ...]
    """The decoder layer each of ``layers`` is: 0, 1, ... except in a hybrid, whose layers without heads are skipped."""
    norm: nn.Module
    lm_head: nn.Module
    num_heads: int
    num_kv_heads: int
    embedding_multiplier: float
    residual_multiplier: float

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def head_dim(self) -> int:
        """The head size shared by every layer; ValueError where layers differ (edge maths needs one)."""
        sizes = {layer.head_dim for layer in self.layers}
        if len(sizes) != 1:
            raise ValueError(f"{self.model_type}: head sizes differ between layers ({sorted(sizes)})")
        return sizes.pop()

    def check_head(self, layer: int, head: int) -> None:
        """Raise IndexError unless (layer, head) names a head of this model."""
        if not 0 <= layer < self.num_layers:
            raise IndexError(f"layer {layer} out of range: the model has {self.num_layers} layers")
        if not 0 <= head < self.num_heads:
            raise IndexError(f"head {head} out of range: the model has {self.num_heads} heads per layer")

    def check_level(self, level: str) -> None:
        """Raise ValueError (one line) unless this model can be scored at ``level`` (node or edge)."""
        check_family(self.model_type, level)


def unwrap(model: nn.Module) -> nn.Module:
    """The transformers model inside a PEFT wrapper (LoRA layers stay injected), else the model."""
    get_base_model = getattr(model, "get_base_model", None)
    return get_base_model() if callable(get_base_model) else model


def compiled(model: nn.Module) -> bool:
    """Whether ``model`` or a submodule runs through torch.compile (``torch.compile(m)`` or ``m.compile()``).

    Its graph never calls the Python hooks scoring reads and patches through.
    """
    return any(
        type(module).__name__ == "OptimizedModule" or getattr(module, "_compiled_call_impl", None) is not None
        for module in model.modules()
    )


def _module(model: nn.Module, path: str, model_type: str) -> nn.Module:
    try:
        return model.get_submodule(path)
    except AttributeError:
        raise ValueError(
            f"{type(model).__name__} (model_type {model_type!r}) has no module {path!r}, which the architecture "
            "table declares for its family"
        ) from None


def _features(module: nn.Module, name: str) -> int:
    """A projection's ``in_features`` or ``out_features``; a transformers Conv1D (GPT-2) keeps them as nx and nf."""
    value = getattr(module, name, None)
    if value is None:
        value = getattr(module, {"in_features": "nx", "out_features": "nf"}[name], None)
    if value is None:
        raise ValueError(f"{type(module).__name__} has no {name}: not a linear projection")
    return int(value)


def _multiplier(config: object, name: str | None) -> float:
    return 1.0 if name is None else float(getattr(config, name))


def resolve(model: nn.Module) -> Sites:
    """Resolve ``model`` (PEFT-wrapped or not) against its family's row and check its head geometry.

    ValueError (one line) for a compiled model, a family the table refuses or does not know, a
    missing module, or projections whose sizes disagree with the config's heads.
    """
    if compiled(model):
        raise ValueError(
            "the model is compiled with torch.compile, whose graph skips the hooks heads are read through: "
            "score the uncompiled module (the trainer's model, before torch.compile)"
        )
    base = unwrap(model)
    config = cast("PreTrainedConfig", base.config)  # a transformers model
    model_type = str(config.model_type)
    arch = architecture(model_type)
    num_heads = int(config.num_attention_heads)
    num_kv_heads = int(getattr(config, "num_key_value_heads", None) or num_heads)

    def get(path: str | None, prefix: str = "") -> nn.Module | None:
        return None if path is None else _module(base, prefix + path, model_type)

    def layer_sites(layer: int) -> LayerSites:
        prefix = f"{arch.layers}.{layer}."
        o_proj = _module(base, prefix + arch.o_proj, model_type)
        width = _features(o_proj, "in_features")
        if width % num_heads:
            raise ValueError(f"{prefix}{arch.o_proj}.in_features {width} is not a multiple of {num_heads} heads")
        head_dim = width // num_heads
        q_rows, kv_rows = num_heads * head_dim, num_kv_heads * head_dim
        reads: list[Read | None]
        expected: list[tuple[nn.Module, int]]
        if arch.qkv_proj is not None:
            fused = _module(base, prefix + arch.qkv_proj, model_type)
            reads = [Read(fused, slice(0, q_rows)), Read(fused, slice(q_rows, q_rows + kv_rows)),
                     Read(fused, slice(q_rows + kv_rows, q_rows + 2 * kv_rows))]
            expected = [(fused, q_rows + 2 * kv_rows)]
        elif arch.q_proj is not None and arch.k_proj is not None and arch.v_proj is not None:
            projections = [_module(base, prefix + path, model_type) for path in (arch.q_proj, arch.k_proj, arch.v_proj)]
            reads = [Read(proj, slice(0, rows)) for proj, rows in zip(projections, (q_rows, kv_rows, kv_rows))]
            expected = list(zip(projections, (q_rows, kv_rows, kv_rows)))
        else:
            reads, expected = [None, None, None], []
        for proj, rows in expected:
            if _features(proj, "out_features") != rows:
                raise ValueError(
                    f"{prefix}: a projection's out_features is {_features(proj, 'out_features')}, expected {rows} "
                    f"from {num_heads} heads x {num_kv_heads} kv heads x head_dim {head_dim}"
                )
        return LayerSites(
            o_proj=o_proj,
            head_dim=head_dim,
            q=reads[0],
            k=reads[1],
            v=reads[2],
            attention_norm=get(arch.attention_norm, prefix),
            attention_out_norm=get(arch.attention_out_norm, prefix),
            mlp=_module(base, prefix + arch.mlp, model_type),
            mlp_norm=get(arch.mlp_norm, prefix),
            mlp_out_norm=get(arch.mlp_out_norm, prefix),
        )

    layer_ids = tuple(range(len(cast(nn.ModuleList, _module(base, arch.layers, model_type)))))  # the table's layers are a ModuleList
    if arch.attention_layer_type is not None:
        layer_ids = tuple(layer for layer in layer_ids if config.layer_types[layer] == arch.attention_layer_type)
    return Sites(
        model=base,
        model_type=model_type,
        architecture=arch,
        embed_tokens=_module(base, arch.embed_tokens, model_type),
        layers=tuple(layer_sites(layer) for layer in layer_ids),
        layer_ids=layer_ids,
        norm=_module(base, arch.norm, model_type),
        lm_head=_module(base, arch.lm_head, model_type),
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        embedding_multiplier=_multiplier(config, arch.embedding_multiplier),
        residual_multiplier=_multiplier(config, arch.residual_multiplier),
    )


def check_scorable(model: nn.Module, level: str) -> Sites:
    """The resolved sites of ``model`` if it can be scored at ``level``; else ValueError with one line.

    Called before any work (the tracker at train begin, the CLI after loading), so a family the table
    cannot express fails before the first forward pass.
    """
    sites = resolve(model)
    sites.check_level(level)
    return sites
