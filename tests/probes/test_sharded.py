"""Scoring a sharded model (FSDP2 and FSDP1, 2 CPU processes, gloo) gives the scores of the unsharded model.

Scoring reads the embedding, and at edge level the q/k/v/o weights and the norm, outside the
model's forward; probes.gather gathers them one sharding unit at a time. Without it the reads see
shards (DTensors, FSDP1's flat shards) and fail.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

HERE = Path(__file__).resolve().parent
SHARDINGS = ("fsdp2", "fsdp1", "fsdp1-flat")


@pytest.fixture(scope="module")
def sharded_run(random_model_dir, tmp_path_factory) -> Path:
    """The output folder of sharded_scoring.py run on 2 processes."""
    out = tmp_path_factory.mktemp("sharded")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "-m", "tests.probes.sharded_scoring", str(random_model_dir), str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=HERE.parents[1])
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.mark.parametrize("sharding", SHARDINGS)
def test_sharded_scores_equal_the_unsharded_ones(sharded_run, sharding):
    scores = load_file(str(sharded_run / "scores.safetensors"))
    names = sorted(name.removeprefix("plain/") for name in scores if name.startswith("plain/"))
    assert names == ["edge/edges", "edge/nodes", "node/heads"]
    for name in names:
        assert scores[f"plain/{name}"].abs().max() > 0
        torch.testing.assert_close(scores[f"{sharding}/{name}"], scores[f"plain/{name}"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("sharding", SHARDINGS)
def test_a_gather_holds_only_the_layer_it_reads(sharded_run, sharding):
    """While a layer's weights are gathered no other decoder layer's are; the embedding's gathers none."""
    calls = json.loads((sharded_run / "gathered.json").read_text())[sharding]
    assert {call["asked"][0] for call in calls if call["asked"]} == {0, 1}
    assert any(call["asked"] == [] for call in calls)
    for call in calls:
        assert call["whole"] == call["asked"]
