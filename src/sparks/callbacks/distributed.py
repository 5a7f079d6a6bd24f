"""Splitting the probe pairs over the training processes and summing what each scored.

Every rank gets the same number of pairs (the last ranks repeat pairs with weight 0), so every rank
runs the same number of forward and backward passes: under DeepSpeed ZeRO-3 and FSDP each of those
passes gathers the sharded parameters layer by layer with a collective call that all ranks must
join. One all-reduce of a flat float64 buffer then gives every rank the same totals.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import Tensor


def world() -> tuple[int, int]:
    """(rank, number of processes); (0, 1) outside torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard(count: int, rank: int, size: int) -> tuple[list[int], Tensor]:
    """This rank's pair indices (a contiguous block, padded to ceil(count / size) with index 0)
    and their weights (1 for its own pairs, 0 for padding)."""
    if count < 1:
        raise ValueError("no pairs to split")
    per_rank = math.ceil(count / size)
    own = list(range(rank * per_rank, min((rank + 1) * per_rank, count)))
    weights = torch.zeros(per_rank, dtype=torch.float64)
    weights[: len(own)] = 1.0
    return own + [0] * (per_rank - len(own)), weights


def sum_over_ranks(values: Tensor) -> Tensor:
    """The element-wise sum of ``values`` over all ranks (a copy; itself outside torch.distributed).

    NCCL reduces device tensors only, so the sum runs on ``values``' device.
    """
    total = values.clone()
    if world()[1] > 1:
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total
