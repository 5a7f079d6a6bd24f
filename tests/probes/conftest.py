"""Fixtures for the probes tests (factories live in tiny_models.py)."""

from __future__ import annotations

import pytest
import torch

from probes.pairs import PairBatch
from tiny_models import random_pairs, tiny_model


@pytest.fixture
def model() -> torch.nn.Module:
    return tiny_model()


@pytest.fixture
def pairs() -> PairBatch:
    return random_pairs()


@pytest.fixture(autouse=True, scope="package")
def one_thread():
    """Tiny matrices: intra-op threads only add spin-wait, badly so on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def float64_norms(monkeypatch):
    """RMSNorms that keep float64 (transformers computes them in float32), for tight checks."""
    import transformers.models as models

    def forward(self, hidden_states):
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))

    for norm in (models.qwen2.modeling_qwen2.Qwen2RMSNorm, models.qwen3.modeling_qwen3.Qwen3RMSNorm,
                 models.llama.modeling_llama.LlamaRMSNorm, models.mistral.modeling_mistral.MistralRMSNorm):
        monkeypatch.setattr(norm, "forward", forward)
