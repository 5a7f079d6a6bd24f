"""One snapshot on every process: score this rank's share of the probe pairs, sum over ranks, select.

Every rank scores the same number of pairs (callbacks.distributed) with the live model, sums them
with their weights and their Poisson bootstrap weights (probes.bootstrap) into ScoreSums, and one
all-reduce gives every rank the totals; the statistics, the circuit included, then come out the
same on every rank. The circuit's faithfulness needs the circuit, so its effect sums (plain and per
replicate) take a second, small all-reduce. Each all-reduce also carries a failure flag, so a failure on any rank
fails the snapshot on all of them, and all ranks keep joining the same collective calls.

Not so on a sharded model (ZeRO-3, FSDP): its forward and backward passes gather parameters with
collectives of their own, and a rank that fails inside them leaves the others waiting there, where
no flag reaches them. Such a failure is fatal on the rank where it happens (ShardedSnapshotFailed,
whatever ``tracker.strict`` says); its launcher then stops the others.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from sparks.callbacks.config import TrackerConfig
from sparks.callbacks.distributed import shard, sum_over_ranks, world
from sparks.probes.circuit_scoring import score_circuit
from sparks.probes.edges import EdgeGraph
from sparks.probes.gather import is_sharded
from sparks.probes.pairs import Pair
from sparks.probes.statistics import SnapshotStats

logger = logging.getLogger(__name__)


class SnapshotFailed(RuntimeError):
    """A snapshot failed on some rank; raised on every rank, with the failing rank's traceback where known."""


class ShardedSnapshotFailed(RuntimeError):
    """Scoring a sharded model failed on this rank, whose peers may wait in the model's collectives.

    Raised on this rank only, and fatal: no all-reduce can tell the others. ``in_collective``: it was
    raised by one of the model's collectives, as when another rank failed first and left.
    """

    def __init__(self, message: str, *, in_collective: bool = False) -> None:
        super().__init__(message)
        self.in_collective = in_collective


def _raised_in_collective(error: BaseException) -> bool:
    """Whether ``error`` came out of torch.distributed (the innermost frame of its traceback is there)."""
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and f"{os.sep}torch{os.sep}distributed{os.sep}" in frames[-1].filename


@contextmanager
def _sharded_passes(model: nn.Module, step: int) -> Iterator[None]:
    """Turn a failure inside a sharded model's forward or backward passes into ShardedSnapshotFailed."""
    try:
        yield
    except Exception as error:
        if not is_sharded(model):
            raise
        rank = world()[0]
        logger.error("sparks: scoring the heads at step %d failed on rank %d:\n%s", step, rank, traceback.format_exc())
        cause = traceback.format_exception_only(error)[-1].strip()
        if _raised_in_collective(error):
            raise ShardedSnapshotFailed(
                f"tracker: the head snapshot at step {step} stopped on rank {rank}: a collective of the sharded "
                f"model's forward or backward failed, as it does when another rank fails first (that rank's line "
                f"names the cause): {cause}",
                in_collective=True,
            ) from error
        raise ShardedSnapshotFailed(
            f"tracker: the head snapshot at step {step} failed on rank {rank} inside a sharded model's forward or "
            f"backward (ZeRO-3/FSDP), where the other ranks wait in its collectives, so this rank stops whatever "
            f"tracker.strict says: {cause}"
        ) from error


def _summed(compute: Callable[[], Tensor], zeros: Tensor, device: torch.device, step: int) -> Tensor:
    """``compute()``'s float64 vector summed over ranks, or SnapshotFailed on every rank if it raised on any.

    A rank that failed joins the all-reduce with ``zeros``, a vector of the same length.
    """
    error = None
    try:
        values = compute().double().reshape(-1)
    except ShardedSnapshotFailed:
        raise
    except Exception:
        error = traceback.format_exc()
        logger.error("sparks: scoring the heads at step %d failed on rank %d:\n%s", step, world()[0], error)
        values = zeros.double()
    flagged = torch.cat([torch.tensor([float(error is not None)], dtype=torch.float64), values.cpu()])
    total = sum_over_ranks(flagged.to(device)).cpu()
    if total[0] > 0:
        raise SnapshotFailed(error or "scoring failed on another rank")
    return total[1:]


def score_snapshot(
    model: nn.Module, pairs: Sequence[Pair], config: TrackerConfig, graph: EdgeGraph, pad_id: int, step: int
) -> SnapshotStats:
    """The snapshot's statistics with faithfulness, the same on every rank; SnapshotFailed if any rank failed.

    Each rank scores its share of the pairs (probes.circuit_scoring.score_circuit); the sums meet in one
    all-reduce carrying the failure flag, with a failure inside a sharded model's passes fatal on its rank."""
    rank, size = world()
    indices, weights = shard(len(pairs), rank, size)
    device = next(model.parameters()).device

    def reduce(compute: Callable[[], Tensor], zeros: Tensor) -> Tensor:
        def guarded() -> Tensor:
            with _sharded_passes(model, step):
                return compute()

        return _summed(guarded, zeros, device, step)

    own = [pairs[index] for index in indices]
    scored = score_circuit(model, own, config, pad_id=pad_id, graph=graph, indices=indices, weights=weights,
                           reduce=reduce, progress=False)
    return scored.stats
