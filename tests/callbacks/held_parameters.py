"""How each rank holds the model's parameters at each snapshot, recorded for the tests of sharded runs.

``recording(record)`` has the tracker's ``score_snapshot`` append a line to RECORD-rank<R>.jsonl on
every rank before it scores: the step, whether the model is sharded (probes.gather.is_sharded) and
how many of its parameters this rank holds only a shard of (ZeRO-3: partitioned; FSDP2: a DTensor),
so a test can tell a sharded run from one that silently ran unsharded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch.distributed as dist
from torch import nn
from torch.distributed.tensor import DTensor

import sparks.callbacks.tracker
from sparks.probes.gather import is_sharded


def shards(model: nn.Module) -> int:
    """How many of ``model``'s parameters this rank holds only a shard of."""
    return sum(isinstance(p, DTensor) or getattr(getattr(p, "ds_status", None), "name", "") == "NOT_AVAILABLE"
               for p in model.parameters())


def recording(record: Path) -> None:
    """Have the tracker's ``score_snapshot`` append this rank's line to RECORD-rank<R>.jsonl first."""
    score_snapshot = sparks.callbacks.tracker.score_snapshot

    def recorded(model: nn.Module, pairs: Any, config: Any, graph: Any, pad_id: int, step: int) -> Any:
        line = {"step": step, "sharded": is_sharded(model), "shards": shards(model)}
        with open(f"{record}-rank{dist.get_rank()}.jsonl", "a") as file:
            file.write(json.dumps(line) + "\n")
        return score_snapshot(model, pairs, config, graph, pad_id, step)

    sparks.callbacks.tracker.score_snapshot = recorded
