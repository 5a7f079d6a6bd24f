"""Faithfulness with number-swap pairs: attribution vs exact patching, on the trained tiny base model
(4 layers) and on a 2-layer model pretrained by the same recipe (fixture two_layer_model_dir).

Compared is the ranking a circuit is selected by, the dataset mean of |score| per head or edge,
against the mean |effect| of exact patching (for KL the effect is >= 0, while a linear estimate of
it carries a sign of no meaning, so signed means are printed but only asserted for logit_diff nodes).
"""

import pytest
import torch
from scipy.stats import spearmanr
from transformers import AutoModelForCausalLM, AutoTokenizer

from sparks.probes.attribution import node_scores
from sparks.probes.edges import edge_scores
from sparks.probes.pairs import batch_pairs
from sparks.probes.patching import exact_edge_effects, exact_head_effects
from sparks.probes.schemes import numbers_pairs
from sparks.tasks import arith


def _rho(a, b):
    return float(spearmanr(a.flatten().cpu(), b.flatten().cpu()).statistic)


def _probe(model_dir, device):
    model = AutoModelForCausalLM.from_pretrained(model_dir).to(device)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    pairs = numbers_pairs(tokenizer, arith.problems("probe", [1, 2, 3, 4, 5, 6], 24, seed=0))
    assert len(pairs) >= 20
    return model, batch_pairs(pairs, tokenizer.pad_token_id).to(device)


@pytest.fixture(scope="module")
def base(base_model_dir, device):
    return _probe(base_model_dir, device)


@pytest.fixture(scope="module")
def two_layer(two_layer_model_dir, device):
    return _probe(two_layer_model_dir, device)


@pytest.mark.parametrize("metric", ["kl", "logit_diff"])
def test_node_eap_ig_ranks_heads_like_exact_patching(base, metric):
    model, batch = base
    scores = node_scores(model, batch, metric, "eap-ig", steps=5)
    exact = exact_head_effects(model, batch, metric)
    magnitude = _rho(scores.abs().mean(0), exact.abs().mean(0))
    signed = _rho(scores.mean(0), exact.mean(0))
    print(f"base model, numbers pairs, node eap-ig vs exact ({metric}): mean|.| {magnitude:.3f}, signed {signed:.3f}")
    assert magnitude >= 0.8
    if metric == "logit_diff":
        assert signed >= 0.8


def _edge_rank_correlation(model, batch, metric, name):
    result = edge_scores(model, batch, metric, "eap-ig", steps=5)
    exact = exact_edge_effects(model, batch, metric)
    valid = result.graph.valid
    magnitude = _rho(result.edges.abs().mean(0)[valid], exact.abs().mean(0)[valid])
    signed = _rho(result.edges.mean(0)[valid], exact.mean(0)[valid])
    print(f"{name}, numbers pairs, edge eap-ig vs exact edge patching ({metric}, {int(valid.sum())} edges): "
          f"mean|.| {magnitude:.3f}, signed {signed:.3f}")
    if metric == "kl":
        assert torch.all(exact[:, valid] >= -1e-6)  # KL effects are never negative
    return magnitude


def test_edge_eap_ig_ranks_edges_like_exact_edge_patching(base):
    assert _edge_rank_correlation(*base, "kl", "base model") >= 0.8


@pytest.mark.parametrize("metric", ["kl", "logit_diff"])
def test_edge_eap_ig_ranks_edges_of_a_two_layer_model_like_exact_edge_patching(two_layer, metric):
    assert _edge_rank_correlation(*two_layer, metric, "2-layer model") >= 0.8
