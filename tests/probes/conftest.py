"""Fixtures for the probes tests (factories live in tiny_models.py)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sparks.probes.pairs import PairBatch
from tests.probes import tiny_models
from tests.probes.tiny_models import random_pairs, tiny_model

REPO = Path(__file__).resolve().parents[2]
RECIPE = "configs/tiny/pretrain.yaml"
TWO_LAYER_OVERRIDES = ["--num_hidden_layers", "2", "--num_train_examples", "12800"]


@pytest.fixture
def on_device(device, monkeypatch) -> torch.device:
    """tiny_model and random_pairs build on ``device`` (each device present, conftest.DEVICES) for this test.

    A module opts in with ``pytestmark = pytest.mark.usefixtures("on_device")``; a test that makes its
    own tensors for the probes takes ``device`` too and puts them there.
    """
    monkeypatch.setattr(tiny_models, "DEVICE", device)
    return device


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


@pytest.fixture(scope="session")
def two_layer_model_dir() -> Path:
    """The tiny base model's recipe at 2 layers and 200 steps (about a minute on one CPU core).

    Built once by train/pretrain.py and kept in outputs/tiny-base-2layer; rebuilt when the recipe
    file or the overrides change (a stamp file records both).
    """
    directory = REPO / "outputs" / "tiny-base-2layer"
    stamp_file = directory / "recipe.sha256"
    stamp = hashlib.sha256(((REPO / RECIPE).read_text() + " ".join(TWO_LAYER_OVERRIDES)).encode()).hexdigest()
    if (directory / "model.safetensors").exists() and stamp_file.exists() and stamp_file.read_text() == stamp:
        return directory
    command = [sys.executable, "train/pretrain.py", "--config", RECIPE, *TWO_LAYER_OVERRIDES,
               "--output_dir", str(directory), "--disable_tqdm", "true"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if result.returncode:
        pytest.fail(f"pretraining the 2-layer model failed:\n{result.stderr[-3000:]}")
    stamp_file.write_text(stamp)
    return directory
