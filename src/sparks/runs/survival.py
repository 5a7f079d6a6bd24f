"""Kaplan-Meier estimate of a survival function from right-censored durations (head lifespans)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def kaplan_meier(durations: ArrayLike, observed: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """The grid t (0 and every distinct duration) and S(t) = prod over death times t_i <= t of (1 - d_i / n_i).

    ``observed[i]`` is False for a life still going on (right-censored at ``durations[i]``). d_i is
    the number of deaths at t_i and n_i the number of lives with duration >= t_i, so a life censored
    at a death time still counts as at risk there (the textbook convention).
    """
    durations = np.asarray(durations)
    observed = np.asarray(observed, dtype=bool)
    if durations.ndim != 1 or durations.shape != observed.shape:
        raise ValueError(f"durations {durations.shape} and observed {observed.shape} must be equal-length 1-D")
    if (durations < 0).any():
        raise ValueError("durations must be >= 0")
    times = np.unique(np.append(0, durations))
    at_risk = (durations[None, :] >= times[:, None]).sum(1)
    deaths = ((durations[None, :] == times[:, None]) & observed[None, :]).sum(1)
    return times, np.cumprod(1.0 - deaths / np.maximum(at_risk, 1))
