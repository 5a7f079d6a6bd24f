"""Scoring an FSDP2-sharded model (2 CPU processes, gloo) gives the scores of the unsharded model.

Edge scoring reads the q/k/v/o weights, the norm and the embedding outside the model's forward;
probes.gather gathers them one layer at a time. Without it the reads see shards (DTensors) and fail.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

HERE = Path(__file__).resolve().parent


def test_sharded_scores_equal_the_unsharded_ones(random_model_dir, tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               str(HERE / "sharded_scoring.py"), str(random_model_dir), str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=HERE.parents[1])
    assert result.returncode == 0, result.stderr[-3000:]
    scores = load_file(str(tmp_path / "scores.safetensors"))
    names = sorted(name.removeprefix("plain/") for name in scores if name.startswith("plain/"))
    assert names == ["edge/edges", "edge/nodes", "node/heads"]
    for name in names:
        assert scores[f"plain/{name}"].abs().max() > 0
        torch.testing.assert_close(scores[f"sharded/{name}"], scores[f"plain/{name}"], rtol=1e-5, atol=1e-6)
