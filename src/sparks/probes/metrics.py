"""Metrics on the logits at the target positions, one value per example.

Logits come in as [B, P, V] (P target positions per example) and answers as [B, P]; every function
averages over the P positions and returns [B], so batching and padding invariance can be checked
example by example.

The ``*_effect`` metrics are what attribution and patching differentiate and measure: each is 0 on
the clean run itself and grows with the damage a patch does, so larger = more effect for all of
them, and a node score estimates ``effect(clean run with the node patched)``.

Sign against hannamw/EAP-IG: its example ``logit_diff(..., loss=False)`` is the logit difference
itself (what ``evaluate_graph`` reports), and ``loss=True`` its negative, which is what its
notebooks pass to ``attribute``. ``logit_diff`` here is the drop ``LD(clean) - LD(run)``: it differs
from ``loss=True`` by a constant, so its scores equal EAP-IG's under ``loss=True`` and are the
negatives of those under ``loss=False`` (tests/probes/test_ig_rules.py). It is kept an effect, not
given EAP-IG's ``loss=False`` sign, because circuit selection, patching and faithfulness all read
larger = more effect.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def _wide(logits: Tensor) -> Tensor:
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def _at(logits: Tensor, token_ids: Tensor) -> Tensor:
    return logits.gather(-1, token_ids.unsqueeze(-1)).squeeze(-1)


def kl_divergence(logits: Tensor, clean_logits: Tensor) -> Tensor:
    """KL(clean || run) of the next-token distributions, the paper's metric."""
    log_p = torch.log_softmax(_wide(clean_logits), dim=-1)
    log_q = torch.log_softmax(_wide(logits), dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1).mean(-1)


def logit_diff(logits: Tensor, clean_answer: Tensor, corrupted_answer: Tensor) -> Tensor:
    """Logit of the clean answer token minus logit of the corrupted answer token."""
    wide = _wide(logits)
    return (_at(wide, clean_answer) - _at(wide, corrupted_answer)).mean(-1)


def answer_logprob(logits: Tensor, answer: Tensor) -> Tensor:
    """Log-probability of ``answer``."""
    return _at(torch.log_softmax(_wide(logits), dim=-1), answer).mean(-1)


Metric = Callable[[Tensor, Tensor, Tensor | None, Tensor | None], Tensor]
"""(run logits, clean logits, clean answer ids, corrupted answer ids) -> per-example effect [B]."""


def _answers(name: str, *answers: Tensor | None) -> tuple[Tensor, ...]:
    given = tuple(answer for answer in answers if answer is not None)
    if len(given) != len(answers):
        raise ValueError(f"metric {name!r} needs answer token ids in the PairBatch")
    return given


def kl_effect(
    logits: Tensor, clean_logits: Tensor, clean_answer: Tensor | None, corrupted_answer: Tensor | None
) -> Tensor:
    """KL(clean || run); needs no answer ids."""
    return kl_divergence(logits, clean_logits)


def logit_diff_effect(
    logits: Tensor, clean_logits: Tensor, clean_answer: Tensor | None, corrupted_answer: Tensor | None
) -> Tensor:
    """Drop of the clean-minus-corrupted answer logit difference from its clean value.

    Scores under it have the sign of hannamw/EAP-IG's under ``logit_diff(loss=True)`` (see the module docstring).
    """
    clean, corrupted = _answers("logit_diff", clean_answer, corrupted_answer)
    return logit_diff(clean_logits, clean, corrupted) - logit_diff(logits, clean, corrupted)


def logprob_effect(
    logits: Tensor, clean_logits: Tensor, clean_answer: Tensor | None, corrupted_answer: Tensor | None
) -> Tensor:
    """Drop of the clean answer's log-probability from its clean value."""
    (clean,) = _answers("logprob", clean_answer)
    return answer_logprob(clean_logits, clean) - answer_logprob(logits, clean)


METRICS: dict[str, Metric] = {"kl": kl_effect, "logit_diff": logit_diff_effect, "logprob": logprob_effect}


def get_metric(metric: str | Metric) -> Metric:
    """A metric by name (``kl``, ``logit_diff``, ``logprob``) or a callable passed through."""
    if callable(metric):
        return metric
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {sorted(METRICS)}")
    return METRICS[metric]
