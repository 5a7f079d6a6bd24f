"""Shared fixtures: a randomly initialised tiny model of the arithmetic world, saved like a hub model."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from sparks.tasks.tiny_model import TinyModelArguments, build_tiny_model
from sparks.tasks.tokenizer import build_tokenizer

REPO = Path(__file__).resolve().parents[1]
SCRATCH = Path(tempfile.mkdtemp(prefix="sparks-tests-"))
atexit.register(shutil.rmtree, SCRATCH, ignore_errors=True)
# Dashboards that training runs in the tests start (the tiny recipes track their heads) write here, not in $HOME.
os.environ["TRACKIO_DIR"] = str(SCRATCH / "trackio")
os.environ["WANDB_DIR"] = str(SCRATCH)
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
"""The devices the tests that take the ``device`` fixture run on: the CPU, and CUDA wherever there is one."""


@pytest.fixture(scope="session", params=DEVICES)
def device(request) -> torch.device:
    """Each device present in turn (session-scoped, so module fixtures that train or score can take it)."""
    return torch.device(request.param)


@pytest.fixture(scope="session")
def random_model_dir(tmp_path_factory) -> Path:
    """A 2-layer GQA Qwen2 with the world's tokenizer, random weights, saved to disk."""
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("random-tiny")
    tokenizer = build_tokenizer()
    shape = TinyModelArguments(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
    build_tiny_model(shape, tokenizer).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def sandwich_model_dir(tmp_path_factory) -> Path:
    """A 2-layer GQA Gemma 2 (its attention and MLP outputs normalised before the residual add) with the
    world's tokenizer, random weights, saved to disk: the edge maths' other structure."""
    import transformers

    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("random-gemma2")
    tokenizer = build_tokenizer()
    config = transformers.Gemma2Config(
        vocab_size=-(-len(tokenizer) // 8) * 8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, attn_implementation="eager")
    transformers.Gemma2ForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def base_model_dir() -> Path:
    """The pretrained tiny base model that `make test` builds before the suite runs."""
    directory = REPO / "outputs" / "tiny-base"
    if not (directory / "model.safetensors").exists():
        pytest.fail("outputs/tiny-base is missing: run `make base-model` (make test builds it first)")
    return directory
