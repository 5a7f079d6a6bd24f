import copy

import pytest
import torch

from sparks.probes.forward import target_logits
from sparks.probes.metrics import get_metric
from sparks.probes.patching import exact_head_effects, head_means, mean_ablate, scale_heads, zero_ablate
from sparks.probes.sites import resolve
from tests.probes.tiny_models import assert_unchanged, lora, random_pairs, snapshot, tiny_model

pytestmark = pytest.mark.usefixtures("on_device")  # every device present (conftest.DEVICES)


def _logits(model, batch):
    sites = resolve(model)
    with torch.no_grad():
        return target_logits(sites, batch.attention_mask, batch.target_positions, input_ids=batch.clean_ids)


def _effect(model, batch, clean_logits, metric="kl"):
    return get_metric(metric)(_logits(model, batch), clean_logits, batch.clean_answer_ids, batch.corrupted_answer_ids)


@pytest.mark.parametrize("wrapped", [False, True])
def test_interventions_restore_the_model_exactly(wrapped):
    model = lora(tiny_model(), init_b_zero=False) if wrapped else tiny_model()
    model.eval()
    batch = random_pairs()
    clean = _logits(model, batch)
    before = snapshot(model)
    means = head_means(model, batch.clean_ids, batch.attention_mask)
    for context in (zero_ablate(model, [(0, 1), (1, 2)]), mean_ablate(model, [(1, 0)], means), scale_heads(model, [(0, 0), (1, 3)], 1.3)):
        with context:
            assert not torch.equal(_logits(model, batch), clean)
        assert_unchanged(model, before)
        assert torch.equal(_logits(model, batch), clean)


def test_hooks_are_removed_when_the_block_raises():
    model = tiny_model()
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="boom"):
        with scale_heads(model, [(0, 0)], 0.5):
            raise RuntimeError("boom")
    assert_unchanged(model, before)


def test_scale_one_is_the_identity_and_zero_is_ablation():
    model, batch = tiny_model(), random_pairs()
    clean = _logits(model, batch)
    with scale_heads(model, [(0, 0), (0, 3), (1, 1)], 1.0):
        assert torch.equal(_logits(model, batch), clean)
    with scale_heads(model, [(0, 3), (1, 1)], 0.0):
        scaled = _logits(model, batch)
    with zero_ablate(model, [(0, 3), (1, 1)]):
        assert torch.equal(_logits(model, batch), scaled)


def test_scaling_acts_on_the_head_output_only():
    model, batch = tiny_model(), random_pairs()
    sites = resolve(model)
    seen = {}
    hook = sites.layers[1].o_proj.register_forward_pre_hook(lambda m, args: seen.setdefault(len(seen), args[0].detach().clone()))
    try:
        _logits(model, batch)
        with scale_heads(model, [(1, 2)], 1.3):
            _logits(model, batch)
    finally:
        hook.remove()
    # the scaling hook was registered after ours, so ours saw the unscaled input both times
    assert torch.equal(seen[0], seen[1])


def test_zero_ablation_equals_exact_patching_with_zeros():
    model, batch = tiny_model(), random_pairs()
    sites = resolve(model)
    zeros = [torch.zeros(sites.num_heads, sites.head_dim, dtype=torch.float64)] * sites.num_layers
    effects = exact_head_effects(model, batch, "kl", replacement=zeros)
    clean = _logits(model, batch)
    for layer, head in [(0, 0), (1, 3)]:
        with zero_ablate(model, [(layer, head)]):
            torch.testing.assert_close(effects[:, layer, head], _effect(model, batch, clean), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_zero_ablation_and_scaling_equal_editing_the_o_proj_columns_by_hand(arch):
    """A head writes through its d_head columns of o_proj.weight: zeroing (scaling) them by hand in a copy of
    the model is the manual computation that zero_ablate (scale_heads) must agree with."""
    model, batch = tiny_model(arch), random_pairs()
    sites = resolve(model)
    heads = [(0, 2), (1, 0), (1, 3)]
    for factor, context in ((0.0, zero_ablate(model, heads)), (1.3, scale_heads(model, heads, 1.3))):
        edited = copy.deepcopy(model)
        with torch.no_grad():
            for layer, head in heads:
                columns = slice(head * sites.head_dim, (head + 1) * sites.head_dim)
                resolve(edited).layers[layer].o_proj.weight[:, columns] *= factor
        with context:
            hooked = _logits(model, batch)
        torch.testing.assert_close(hooked, _logits(edited, batch), rtol=1e-5, atol=1e-6)
        assert not torch.allclose(hooked, _logits(model, batch), atol=1e-4)


def test_mean_ablation_equals_exact_patching_with_means():
    model, batch = tiny_model(), random_pairs()
    means = head_means(model, batch.clean_ids, batch.attention_mask)
    assert means.shape == (2, 4, 16)
    effects = exact_head_effects(model, batch, "logit_diff", replacement=list(means))
    clean = _logits(model, batch)
    with mean_ablate(model, [(1, 2)], means):
        torch.testing.assert_close(effects[:, 1, 2], _effect(model, batch, clean, "logit_diff"), rtol=1e-10, atol=1e-12)


def test_exact_patching_matches_one_head_at_a_time_and_is_chunk_invariant():
    model, batch = tiny_model(), random_pairs()
    whole = exact_head_effects(model, batch, "logit_diff", chunk_size=8)
    torch.testing.assert_close(exact_head_effects(model, batch, "logit_diff", chunk_size=1), whole, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(exact_head_effects(model, batch, "logit_diff", chunk_size=3), whole, rtol=1e-10, atol=1e-12)
    assert whole.abs().max() > 1e-3


def test_head_errors():
    model = tiny_model()
    with pytest.raises(IndexError, match="layer 2 out of range"):
        with zero_ablate(model, [(2, 0)]):
            pass
    with pytest.raises(IndexError, match="head 7 out of range"):
        with scale_heads(model, [(0, 7)], 1.3):
            pass
    with pytest.raises(ValueError, match="means has shape"):
        mean_ablate(model, [(0, 0)], torch.zeros(4, 16))
    with pytest.raises(ValueError, match="replacement has 1 entries"):
        exact_head_effects(model, random_pairs(), replacement=[torch.zeros(4, 16)])
    assert all(not m._forward_pre_hooks for m in model.modules())
