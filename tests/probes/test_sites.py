import pytest
import torch
import transformers
from peft.tuners.lora import LoraLayer

from sparks.probes.architectures import ARCHITECTURES
from sparks.probes.hooks import Hooks
from sparks.probes.sites import resolve
from tests.probes.tiny_models import ARCHS, lora, tiny_model

pytestmark = pytest.mark.usefixtures("on_device")  # every device present (conftest.DEVICES)


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("wrapped", [False, True])
def test_sites_resolve(arch, wrapped):
    base = tiny_model(arch)
    model = lora(base) if wrapped else base
    sites = resolve(model)
    assert sites.model is base
    assert (sites.num_layers, sites.num_heads, sites.num_kv_heads, sites.head_dim) == (2, 4, 2, 16)
    layer = sites.layers[1]
    assert layer.o_proj is base.get_submodule("model.layers.1.self_attn.o_proj")
    assert layer.attention_norm is base.model.layers[1].input_layernorm
    assert layer.mlp is base.model.layers[1].mlp
    assert sites.embed_tokens is base.model.embed_tokens and sites.lm_head is base.lm_head
    assert sites.norm is base.model.norm
    assert isinstance(layer.o_proj, LoraLayer) == wrapped
    assert layer.q.proj is base.get_submodule("model.layers.1.self_attn.q_proj") and layer.q.rows == slice(0, 64)
    assert arch in ARCHITECTURES


def test_lora_o_proj_input_is_the_concatenated_heads(device):
    base = tiny_model("llama")
    model = lora(base, init_b_zero=False)
    sites = resolve(model)
    seen = []
    ids = torch.randint(0, 64, (2, 5), device=device)
    with Hooks() as hooks:
        hooks.edit_input(sites.layers[0].o_proj, lambda x: seen.append(x) or x)
        sites.model(input_ids=ids)
    assert seen[0].shape == (2, 5, 4 * 16)
    assert not sites.layers[0].o_proj._forward_pre_hooks


def test_missing_module_is_named():
    model = tiny_model("qwen2")
    del model.model.layers[1].self_attn.v_proj
    with pytest.raises(ValueError, match=r"model\.layers\.1\.self_attn\.v_proj"):
        resolve(model)


def test_unsupported_architecture():
    config = transformers.MambaConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1)
    with pytest.raises(ValueError, match=r"'mamba' is not supported"):
        resolve(transformers.MambaForCausalLM(config))


def test_head_geometry_is_checked():
    model = tiny_model("qwen2")
    model.config.num_attention_heads = 8
    with pytest.raises(ValueError, match="out_features is 32, expected 16 from 8 heads x 2 kv heads x head_dim 8"):
        resolve(model)


def test_head_index_out_of_range():
    sites = resolve(tiny_model())
    sites.check_head(1, 3)
    with pytest.raises(IndexError, match="layer 2"):
        sites.check_head(2, 0)
    with pytest.raises(IndexError, match="head 4"):
        sites.check_head(0, 4)
    with pytest.raises(IndexError, match="head -1"):
        sites.check_head(0, -1)
