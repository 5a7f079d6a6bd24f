"""Conductance (CEAP at node level) against its identities and against exact patching."""

import pytest
import torch
from scipy.stats import spearmanr
from transformers import AutoModelForCausalLM, AutoTokenizer

from sparks.probes.attribution import node_scores
from sparks.probes.conductance import conductance_scores
from sparks.probes.pairs import batch_pairs
from sparks.probes.patching import exact_head_effects
from sparks.probes.schemes import numbers_pairs
from sparks.probes.scoring import score_pairs
from sparks.tasks import arith
from tests.probes.tiny_models import assert_unchanged, random_pairs, snapshot, tiny_model

pytestmark = pytest.mark.usefixtures("on_device")  # every device present (conftest.DEVICES)


@pytest.mark.parametrize("metric", ["logit_diff", "kl"])
def test_one_point_is_attribution_patching(metric):
    model, batch = tiny_model(), random_pairs(batch=3)
    expected = node_scores(model, batch, metric, "eap-ig", steps=1)
    torch.testing.assert_close(conductance_scores(model, batch, metric, steps=1), expected, rtol=1e-5, atol=1e-9)


def test_chunks_do_not_change_the_scores():
    model, batch = tiny_model(), random_pairs(batch=3)
    whole = conductance_scores(model, batch, "logit_diff", steps=5)
    for chunk in (1, 2, 3):
        torch.testing.assert_close(conductance_scores(model, batch, "logit_diff", steps=5, chunk_size=chunk), whole,
                                   rtol=1e-5, atol=1e-7)
    assert not torch.allclose(whole, node_scores(model, batch, "logit_diff", "eap-ig", steps=5))


def test_many_points_converge():
    model, batch = tiny_model(), random_pairs(batch=3)
    fine, finer = (conductance_scores(model, batch, "logit_diff", steps=steps) for steps in (32, 64))
    coarse = conductance_scores(model, batch, "logit_diff", steps=2)
    assert (fine - finer).abs().max() < 0.2 * (coarse - finer).abs().max()


def test_the_model_is_left_as_found():
    model, batch = tiny_model(), random_pairs(batch=2)
    before = snapshot(model)
    conductance_scores(model, batch, "kl", steps=3)
    assert_unchanged(model, before)


def test_ranks_heads_like_exact_patching_on_the_base_model(base_model_dir):
    model = AutoModelForCausalLM.from_pretrained(base_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    batch = batch_pairs(numbers_pairs(tokenizer, arith.problems("probe", [1, 2, 3, 4, 5, 6], 24, seed=0)), tokenizer.pad_token_id)
    exact = exact_head_effects(model, batch, "kl").abs().mean(0).flatten()
    scores = conductance_scores(model, batch, "kl", steps=5).abs().mean(0).flatten()
    rho = float(spearmanr(scores, exact).statistic)
    print(f"base model, numbers pairs, node ceap vs exact (kl): mean|.| {rho:.3f}")
    assert rho >= 0.8


def test_edge_level_is_refused():
    with pytest.raises(ValueError, match="node level only"):
        score_pairs(tiny_model(), [], method="ceap", level="edge")
