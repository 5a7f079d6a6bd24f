"""One forward pass of left-padded rows, returning the logits at the target positions only."""

from __future__ import annotations

from typing import overload

from torch import Tensor

from sparks.probes.hooks import Hooks, Recorder
from sparks.probes.metrics import Metric
from sparks.probes.pairs import PairBatch
from sparks.probes.sites import Sites


def position_ids(attention_mask: Tensor) -> Tensor:
    """Positions counted from each row's first real token, so left padding does not shift RoPE."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


@overload
def repeat_rows(x: Tensor, n: int) -> Tensor: ...
@overload
def repeat_rows(x: None, n: int) -> None: ...
@overload
def repeat_rows(x: Tensor | None, n: int) -> Tensor | None: ...
def repeat_rows(x: Tensor | None, n: int) -> Tensor | None:
    """``n`` copies of a batch stacked copy-major in the batch dimension (row = copy * B + b)."""
    return None if x is None else x.repeat(n, *[1] * (x.dim() - 1))


def target_logits(
    sites: Sites,
    attention_mask: Tensor,
    targets: Tensor,
    *,
    input_ids: Tensor | None = None,
    inputs_embeds: Tensor | None = None,
) -> Tensor:
    """Logits [N, P, V] at ``targets`` [N, P]; lm_head only runs from the earliest target on."""
    length = attention_mask.shape[1]
    keep = length - int(targets.min())
    logits = sites.model(
        input_ids=input_ids,
        inputs_embeds=inputs_embeds,
        attention_mask=attention_mask,
        position_ids=position_ids(attention_mask),
        use_cache=False,
        logits_to_keep=keep,
    ).logits
    index = (targets - (length - keep)).unsqueeze(-1).expand(-1, -1, logits.shape[-1])
    return logits.gather(1, index)


def copies_logits(
    sites: Sites, batch: PairBatch, n: int, *, input_ids: Tensor | None = None, inputs_embeds: Tensor | None = None
) -> Tensor:
    """Logits [n * B, P, V] at the targets of a run over ``n`` stacked copies of the batch (see repeat_rows)."""
    return target_logits(
        sites,
        repeat_rows(batch.attention_mask, n),
        repeat_rows(batch.target_positions, n),
        input_ids=input_ids,
        inputs_embeds=inputs_embeds,
    )


def copies_metric(batch: PairBatch, metric: Metric, logits: Tensor, clean_logits: Tensor, n: int) -> Tensor:
    """Effect metric [n * B] of ``logits`` from ``n`` stacked copies of the batch."""
    return metric(
        logits,
        repeat_rows(clean_logits, n),
        repeat_rows(batch.clean_answer_ids, n),
        repeat_rows(batch.corrupted_answer_ids, n),
    )


def copies_effect(
    sites: Sites,
    batch: PairBatch,
    metric: Metric,
    clean_logits: Tensor,
    n: int,
    *,
    input_ids: Tensor | None = None,
    inputs_embeds: Tensor | None = None,
) -> Tensor:
    """Effect metric [n * B] of a run over ``n`` stacked copies of the batch (see repeat_rows)."""
    logits = copies_logits(sites, batch, n, input_ids=input_ids, inputs_embeds=inputs_embeds)
    return copies_metric(batch, metric, logits, clean_logits, n)


def recorded_run(
    sites: Sites, batch: PairBatch, input_ids: Tensor, taps: dict[str, tuple]
) -> tuple[Tensor, dict[str, Tensor]]:
    """Logits at the batch's targets for ``input_ids``, and the tapped activations, detached."""
    with Hooks() as hooks:
        recorder = Recorder(hooks, taps)
        logits = target_logits(sites, batch.attention_mask, batch.target_positions, input_ids=input_ids)
    return logits.detach(), {name: value.detach() for name, value in recorder.values.items()}
