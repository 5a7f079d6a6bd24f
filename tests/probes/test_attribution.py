import pytest
import torch
from scipy.stats import spearmanr

from sparks.probes.attribution import node_scores
from sparks.probes.edges import edge_scores
from sparks.probes.hooks import Hooks
from sparks.probes.pairs import pad_pairs
from sparks.probes.patching import exact_head_effects
from sparks.probes.sites import resolve
from tests.probes.tiny_models import ARCHS, assert_unchanged, lora, random_pairs, snapshot, tiny_model

pytestmark = pytest.mark.usefixtures("on_device")  # every device present (conftest.DEVICES)


def _metric_with_gate(model, batch, layer, head, gate, metric="logit_diff"):
    """Effect metric with head (layer, head) set to z + gate (z_corrupted - z): the test's own hook."""
    from sparks.probes.forward import recorded_run, target_logits
    from sparks.probes.metrics import get_metric

    sites = resolve(model)
    taps = {"z": (sites.layers[layer].o_proj, "input")}
    with torch.no_grad():
        clean_logits, clean = recorded_run(sites, batch, batch.clean_ids, taps)
        _, corrupted = recorded_run(sites, batch, batch.corrupted_ids, taps)
        span = slice(head * sites.head_dim, (head + 1) * sites.head_dim)
        delta = torch.zeros_like(clean["z"])
        delta[..., span] = corrupted["z"][..., span] - clean["z"][..., span]
        with Hooks() as hooks:
            hooks.edit_input(sites.layers[layer].o_proj, lambda x: x + gate * delta)
            logits = target_logits(sites, batch.attention_mask, batch.target_positions, input_ids=batch.clean_ids)
        return get_metric(metric)(logits, clean_logits, batch.clean_answer_ids, batch.corrupted_answer_ids)


@pytest.mark.parametrize("metric", ["logit_diff", "logprob"])
def test_eap_is_the_first_order_change_under_a_small_patch(metric, float64_norms):
    model, batch = tiny_model(layers=2), random_pairs(batch=2)
    scores = node_scores(model, batch, metric, method="eap")
    assert torch.equal(scores, node_scores(model, batch, metric, method="eap-ig", steps=1, ig_rule="right"))
    eps = 1e-5
    for layer, head in [(0, 1), (1, 0), (1, 3)]:
        central = (_metric_with_gate(model, batch, layer, head, eps, metric) - _metric_with_gate(model, batch, layer, head, -eps, metric)) / (2 * eps)
        torch.testing.assert_close(scores[:, layer, head], central, rtol=1e-6, atol=1e-9)
        assert central.abs().max() > 1e-3


def test_kl_gradient_vanishes_at_the_clean_input():
    scores = node_scores(tiny_model(), random_pairs(), "kl", method="eap")
    assert scores.abs().max() < 1e-6


@pytest.mark.parametrize(
    "metric, init, threshold",
    [("logit_diff", 0.02, 0.95), ("kl", 0.1, 0.75)],
)
def test_eap_ig_ranks_heads_like_exact_patching(metric, init, threshold):
    rhos = []
    for arch, seed in [("qwen2", 0), ("qwen3", 1), ("llama", 2)]:
        model = tiny_model(arch, layers=4, init=init, seed=seed)
        batch = random_pairs(batch=16, length=10, seed=seed + 5)
        attributed = node_scores(model, batch, metric, steps=5).mean(0)
        exact = exact_head_effects(model, batch, metric).mean(0)
        rhos.append(spearmanr(attributed.flatten().cpu(), exact.flatten().cpu()).statistic)
    print(f"Spearman eap-ig vs exact patching ({metric}, init {init}):", [round(r, 3) for r in rhos])
    assert min(rhos) > threshold


def test_chunking_does_not_change_scores():
    model, batch = tiny_model(), random_pairs()
    whole = node_scores(model, batch, steps=4)
    torch.testing.assert_close(node_scores(model, batch, steps=4, chunk_size=1), whole, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(node_scores(model, batch, steps=4, chunk_size=3), whole, rtol=1e-10, atol=1e-12)


def test_batch_size_and_padding_invariance(device):
    model = tiny_model()
    full = random_pairs(batch=4, ragged=True)
    together = node_scores(model, full, "kl", steps=3)
    rows = []
    for index in range(4):
        keep = full.attention_mask[index].bool()
        alone = pad_pairs(
            [full.clean_ids[index][keep].tolist()],
            [full.corrupted_ids[index][keep].tolist()],
            pad_id=0,
            clean_answers=full.clean_answer_ids[index].tolist(),
            corrupted_answers=full.corrupted_answer_ids[index].tolist(),
        ).to(device)
        rows.append(node_scores(model, alone, "kl", steps=3)[0])
    assert (full.attention_mask == 0).any()  # padding was exercised
    torch.testing.assert_close(together, torch.stack(rows), rtol=1e-7, atol=1e-10)


def test_attention_implementation_invariance():
    # float32: transformers' eager softmax runs in float32, where a float64 padding mask turns into
    # -inf and padded rows into NaN
    sdpa = tiny_model(attn="sdpa", dtype=torch.float32)
    eager = tiny_model(attn="eager", dtype=torch.float32)
    assert eager.config._attn_implementation == "eager" and sdpa.config._attn_implementation == "sdpa"
    batch = random_pairs()
    assert (batch.attention_mask == 0).any()
    expected = node_scores(sdpa, batch)
    torch.testing.assert_close(node_scores(eager, batch), expected, rtol=1e-4, atol=1e-6 * expected.abs().max().item())


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("caller_grad", ["enabled", "no_grad", "inference_mode"])
def test_nothing_left_behind(training, caller_grad):
    model = tiny_model(dtype=torch.float32)
    model.train(training)
    model.model.layers[0].mlp.train(not training)  # mixed modes must come back as they were
    params = list(model.parameters())
    params[0].grad = torch.randn_like(params[0])
    params[3].requires_grad_(False)
    batch = random_pairs()
    before = snapshot(model)
    context = {"enabled": torch.enable_grad, "no_grad": torch.no_grad, "inference_mode": torch.inference_mode}[caller_grad]
    with context():
        before["grad_enabled"] = torch.is_grad_enabled()
        torch.manual_seed(123)
        before["rng"] = torch.get_rng_state()
        scores = node_scores(model, batch, steps=2)
        edges = edge_scores(model, batch, steps=2)
        effects = exact_head_effects(model, batch)
        assert_unchanged(model, before)
    assert scores.abs().sum() > 0 and edges.edges.abs().sum() > 0 and effects.abs().sum() > 0


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_scores_of_a_fresh_lora_model_equal_the_base_models(arch):
    base, batch = tiny_model(arch), random_pairs()
    expected = node_scores(base, batch, steps=3)
    expected_edges = edge_scores(base, batch, steps=3)
    wrapped = lora(tiny_model(arch))
    torch.testing.assert_close(node_scores(wrapped, batch, steps=3), expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(edge_scores(wrapped, batch, steps=3).edges, expected_edges.edges, rtol=1e-10, atol=1e-12)


def test_method_and_step_errors():
    model, batch = tiny_model(), random_pairs()
    with pytest.raises(ValueError, match="unknown method"):
        node_scores(model, batch, method="ig")
    with pytest.raises(ValueError, match="steps must be"):
        node_scores(model, batch, steps=0)
    with pytest.raises(ValueError, match="chunk_size"):
        node_scores(model, batch, chunk_size=0)
