"""Poisson bootstrap weights over probe pairs, the same on every process and at every snapshot.

Replicate b gives pair i the weight w[b, i] ~ Poisson(1), drawn from a generator seeded by
(seed, i) alone. So a rank that scores pairs 40..79 draws exactly the columns the one-process run
draws for them, with no communication, and every snapshot resamples the probe set the same way:
replicate b at one snapshot is comparable with replicate b at the next (paired events,
docs/uncertainty.md, "Confident events"). Weighted sums over pairs then add up over ranks like
the plain sums do.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


def poisson_weights(pair_indices: Sequence[int], replicates: int, seed: int) -> Tensor:
    """[replicates, len(pair_indices)] float64 weights, column j drawn from (seed, pair_indices[j])."""
    if replicates < 1:
        raise ValueError(f"replicates must be >= 1, got {replicates}")
    columns = [np.random.default_rng([seed, int(index)]).poisson(1.0, replicates) for index in pair_indices]
    if not columns:
        return torch.zeros(replicates, 0, dtype=torch.float64, device="cpu")
    return torch.from_numpy(np.stack(columns, axis=1).astype(np.float64))
