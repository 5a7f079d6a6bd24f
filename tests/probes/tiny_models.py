"""Tiny random-weight decoders, LoRA wrapping and random pairs for the probes tests."""

from __future__ import annotations

import torch
import transformers

from sparks.probes.forward import target_logits
from sparks.probes.pairs import PairBatch, pad_pairs
from sparks.probes.sites import resolve

ARCHS = {
    "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
    "qwen3": (transformers.Qwen3Config, transformers.Qwen3ForCausalLM),
    "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
    "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM),
}
VOCAB = 64
DEVICE = torch.device("cpu")
"""Where tiny_model and random_pairs build; the ``on_device`` fixture (conftest.py) sets it for a test."""

_MOE = {"num_experts_per_tok": 2, "experts_implementation": "eager"}
_LINEAR = {"linear_num_value_heads": 2, "linear_num_key_heads": 2, "linear_key_head_dim": 16, "linear_value_head_dim": 16}
FAMILY_CONFIGS: dict[str, dict] = {
    "llama": {}, "mistral": {}, "qwen2": {}, "qwen3": {}, "seed_oss": {}, "gemma": {},
    "smollm3": {"pad_token_id": 0},
    "qwen3_moe": {**_MOE, "num_experts": 4, "moe_intermediate_size": 32},
    "mixtral": {**_MOE, "num_local_experts": 4},
    "gpt_oss": {**_MOE, "num_local_experts": 4, "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}},
    "llama4_text": {**_MOE, "num_local_experts": 4, "intermediate_size_mlp": 128},
    "gemma2": {}, "gemma3_text": {},
    "glm4": {"pad_token_id": 0},
    "olmo2": {}, "olmo3": {}, "exaone4": {},
    "granite": {"embedding_multiplier": 3.0, "residual_multiplier": 0.5, "attention_multiplier": 0.25, "logits_scaling": 2.0},
    "phi3": {"pad_token_id": 0},
    "cohere": {"use_qk_norm": False, "logit_scale": 0.5},
    "deepseek_v3": {**_MOE, "num_key_value_heads": 4, "n_routed_experts": 4, "n_group": 1, "topk_group": 1, "first_k_dense_replace": 1,
                    "moe_intermediate_size": 32, "q_lora_rank": 32, "kv_lora_rank": 16, "qk_rope_head_dim": 8,
                    "qk_nope_head_dim": 8, "v_head_dim": 16, "head_dim": 8},
    "gemma4_text": {"global_head_dim": 32, "hidden_size_per_layer_input": 0},
    "gpt2": {"num_key_value_heads": 4, "head_dim": None}, "gpt_neox": {"num_key_value_heads": 4, "head_dim": None},
    "qwen3_next": {**_MOE, "num_experts": 4, "moe_intermediate_size": 32, "shared_expert_intermediate_size": 32,
                   **_LINEAR},
    "qwen3_5_text": _LINEAR,
    "qwen3_5_moe_text": {**_MOE, "num_experts": 4, "moe_intermediate_size": 32, "shared_expert_intermediate_size": 32,
                         **_LINEAR},
}
"""model_type -> what its tiny config sets beyond the shared geometry (MoE rows with eager experts, which run in
float64; Granite with multipliers that are not 1, so ignoring one shows). Every row of the architecture table
needs one (tests/probes/test_architectures.py checks)."""
EAGER_ONLY = {"gpt_oss": "eager", "gemma2": "eager"}
"""Families whose transformers code has no SDPA attention."""


def tiny_model(
    arch: str = "qwen2",
    *,
    layers: int = 2,
    dtype: torch.dtype = torch.float64,
    attn: str = "sdpa",
    seed: int = 0,
    init: float = 0.2,
) -> torch.nn.Module:
    """A random-weight causal LM on DEVICE: 4 heads of 16 dims, 2 kv heads (GQA), hidden 64 (weights drawn on the CPU).

    ``arch`` is a key of ARCHS or any model_type of FAMILY_CONFIGS (built from its transformers config class).
    """
    if arch not in ARCHS:
        return family_model(arch, layers=layers, dtype=dtype, attn=attn, seed=seed, init=init)
    config_cls, model_cls = ARCHS[arch]
    config = config_cls(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=64,
        initializer_range=init,
        tie_word_embeddings=False,
        attn_implementation=attn,
    )
    torch.manual_seed(seed)
    return model_cls(config).to(dtype).to(DEVICE).eval()


def family_model(
    model_type: str, *, layers: int = 2, dtype: torch.dtype = torch.float64, attn: str = "sdpa", seed: int = 0,
    init: float = 0.2,
) -> torch.nn.Module:
    """A random-weight model of ``model_type`` from the installed transformers' own config class, on DEVICE."""
    settings = {
        "vocab_size": VOCAB, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": layers,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "max_position_embeddings": 64,
        "initializer_range": init, "tie_word_embeddings": False, **FAMILY_CONFIGS[model_type],
    }
    if "linear_num_key_heads" in FAMILY_CONFIGS[model_type]:
        settings["num_hidden_layers"] = 2 * layers  # a hybrid: a linear-attention layer before each attention one
        settings["layer_types"] = ["linear_attention", "full_attention"] * layers
    config = transformers.AutoConfig.for_model(model_type, **settings)
    config._attn_implementation = EAGER_ONLY.get(model_type, attn)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config)
    return model.to(dtype).to(DEVICE).eval()


def random_pairs(
    batch: int = 3, length: int = 8, seed: int = 1, ragged: bool = True, changed: int = 2
) -> PairBatch:
    """Random prompts on DEVICE; the corrupted prompt differs from the clean one at ``changed`` positions."""
    generator = torch.Generator().manual_seed(seed)
    clean, corrupted = [], []
    for index in range(batch):
        size = length - (index % 3 if ragged else 0)
        ids = torch.randint(1, VOCAB, (size,), generator=generator)
        other = ids.clone()
        where = torch.randperm(size, generator=generator)[:changed]
        other[where] = torch.randint(1, VOCAB, (changed,), generator=generator)
        clean.append(ids.tolist())
        corrupted.append(other.tolist())
    answers = torch.randint(1, VOCAB, (2, batch), generator=generator)
    batch = pad_pairs(clean, corrupted, pad_id=0, clean_answers=answers[0].tolist(), corrupted_answers=answers[1].tolist())
    return batch.to(DEVICE)


def lora(model: torch.nn.Module, init_b_zero: bool = True, seed: int = 0) -> torch.nn.Module:
    """``model`` wrapped in a LoRA adapter on q/k/v/o; B random instead of zero unless ``init_b_zero``."""
    import peft

    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], lora_dropout=0.1)
    wrapped = peft.get_peft_model(model, config)
    if not init_b_zero:
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, param in wrapped.named_parameters():
                if "lora_B" in name:
                    param.copy_(0.1 * torch.randn(param.shape, generator=generator, dtype=param.dtype))
    return wrapped


_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_pre_hooks_with_kwargs",
    "_state_dict_hooks",
    "_load_state_dict_pre_hooks",
)


def snapshot(model: torch.nn.Module) -> dict:
    """Everything scoring must leave as it found: parameters, grads, modes, hooks, RNG, grad mode."""
    return {
        "params": {name: p.detach().clone() for name, p in model.named_parameters()},
        "requires_grad": {name: p.requires_grad for name, p in model.named_parameters()},
        "grads": {name: (p.grad, None if p.grad is None else p.grad.clone()) for name, p in model.named_parameters()},
        "training": {name: m.training for name, m in model.named_modules()},
        "hooks": {name: [len(getattr(m, d, {})) for d in _HOOK_DICTS] for name, m in model.named_modules()},
        "tensor_hooks": {name: p._backward_hooks for name, p in model.named_parameters()},
        "rng": torch.get_rng_state(),
        "grad_enabled": torch.is_grad_enabled(),
    }


def assert_unchanged(model: torch.nn.Module, before: dict) -> None:
    after = snapshot(model)
    for name, value in before["params"].items():
        assert torch.equal(after["params"][name], value), f"parameter {name} changed"
    assert after["requires_grad"] == before["requires_grad"]
    for name, (grad, copy) in before["grads"].items():
        now = dict(model.named_parameters())[name].grad
        assert now is grad, f"{name}.grad was replaced"
        if copy is not None:
            assert torch.equal(now, copy), f"{name}.grad changed"
    assert after["training"] == before["training"]
    assert after["hooks"] == before["hooks"]
    assert after["tensor_hooks"] == before["tensor_hooks"]
    assert torch.equal(after["rng"], before["rng"])
    assert after["grad_enabled"] == before["grad_enabled"]


def recorded_run(model: torch.nn.Module, batch: PairBatch, ids: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits at the targets, and each layer's o_proj input (``z{l}``) and MLP output (``m{l}``), by the test's own hooks."""
    seen, handles = {}, []
    for layer, block in enumerate(model.model.layers):
        handles.append(block.self_attn.o_proj.register_forward_pre_hook(lambda m, a, at=layer: seen.__setitem__(f"z{at}", a[0])))
        handles.append(block.mlp.register_forward_hook(lambda m, a, out, at=layer: seen.__setitem__(f"m{at}", out)))
    try:
        with torch.no_grad():
            logits = target_logits(resolve(model), batch.attention_mask, batch.target_positions, input_ids=ids)
    finally:
        for handle in handles:
            handle.remove()
    return logits, seen
