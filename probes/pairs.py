"""Clean/corrupted prompt pairs as tensors: left-padded ids, one mask, target positions, answers.

Clean and corrupted prompts of a pair must have the same token length (the paper aligns the two
answer styles to equal length), so one attention mask serves both. Target positions index the
position whose next-token logits are scored; with left padding the last position (T - 1) is every
example's final token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch
from torch import Tensor


@dataclass(frozen=True)
class PairBatch:
    """A batch of pairs. ids and mask are [B, T]; targets and answers are [B] or [B, P]."""

    clean_ids: Tensor
    corrupted_ids: Tensor
    attention_mask: Tensor
    target_positions: Tensor
    clean_answer_ids: Tensor | None = None
    corrupted_answer_ids: Tensor | None = None

    def __post_init__(self) -> None:
        for name in ("target_positions", "clean_answer_ids", "corrupted_answer_ids"):
            value = getattr(self, name)
            if value is not None and value.dim() == 1:
                object.__setattr__(self, name, value.unsqueeze(1))
        self._validate()

    def _validate(self) -> None:
        if self.clean_ids.dim() != 2:
            raise ValueError(f"clean_ids must be [B, T], got shape {tuple(self.clean_ids.shape)}")
        batch, length = self.clean_ids.shape
        if batch == 0 or length == 0:
            raise ValueError(f"empty PairBatch: clean_ids has shape {tuple(self.clean_ids.shape)}")
        for name in ("corrupted_ids", "attention_mask"):
            shape = tuple(getattr(self, name).shape)
            if shape != (batch, length):
                raise ValueError(f"{name} has shape {shape}, clean_ids has {(batch, length)}")
        mask = self.attention_mask
        if ((mask != 0) & (mask != 1)).any():
            raise ValueError("attention_mask must hold only 0 and 1")
        if (mask[:, 1:] < mask[:, :-1]).any() or (mask[:, -1] == 0).any():
            raise ValueError("attention_mask must be left-padded (zeros, then ones to the end)")
        targets = self.target_positions
        if targets.dim() != 2 or targets.shape[0] != batch or targets.shape[1] == 0:
            raise ValueError(f"target_positions must be [B] or [B, P] with B={batch}, got {tuple(targets.shape)}")
        if ((targets < 0) | (targets >= length)).any():
            raise ValueError(f"target_positions must lie in [0, {length})")
        if (mask.gather(1, targets) == 0).any():
            raise ValueError("a target position points at padding")
        for name in ("clean_answer_ids", "corrupted_answer_ids"):
            value = getattr(self, name)
            if value is not None and value.shape != targets.shape:
                raise ValueError(f"{name} has shape {tuple(value.shape)}, target_positions has {tuple(targets.shape)}")

    @property
    def batch_size(self) -> int:
        return self.clean_ids.shape[0]

    def to(self, device: torch.device | str) -> PairBatch:
        """The same batch on ``device``."""
        moved = {field.name: getattr(self, field.name) for field in fields(self)}
        return PairBatch(**{name: None if value is None else value.to(device) for name, value in moved.items()})


def pad_pairs(
    clean: Sequence[Sequence[int]],
    corrupted: Sequence[Sequence[int]],
    pad_id: int,
    clean_answers: Sequence[int] | None = None,
    corrupted_answers: Sequence[int] | None = None,
) -> PairBatch:
    """Left-pad token-id lists into a PairBatch scored at each example's last position."""
    if len(clean) == 0:
        raise ValueError("no pairs given")
    if len(clean) != len(corrupted):
        raise ValueError(f"{len(clean)} clean prompts but {len(corrupted)} corrupted prompts")
    for index, (a, b) in enumerate(zip(clean, corrupted)):
        if len(a) != len(b):
            raise ValueError(f"pair {index}: clean has {len(a)} tokens, corrupted has {len(b)}; they must match")
        if len(a) == 0:
            raise ValueError(f"pair {index} is empty")
    for name, answers in (("clean_answers", clean_answers), ("corrupted_answers", corrupted_answers)):
        if answers is not None and len(answers) != len(clean):
            raise ValueError(f"{len(answers)} {name} for {len(clean)} pairs")
    length = max(len(ids) for ids in clean)

    def pad(rows: Sequence[Sequence[int]]) -> Tensor:
        return torch.tensor([[pad_id] * (length - len(row)) + list(row) for row in rows], dtype=torch.long)

    mask = torch.tensor([[0] * (length - len(row)) + [1] * len(row) for row in clean], dtype=torch.long)

    def answers(values: Sequence[int] | None) -> Tensor | None:
        return None if values is None else torch.tensor(list(values), dtype=torch.long)

    return PairBatch(
        clean_ids=pad(clean),
        corrupted_ids=pad(corrupted),
        attention_mask=mask,
        target_positions=torch.full((len(clean),), length - 1, dtype=torch.long),
        clean_answer_ids=answers(clean_answers),
        corrupted_answer_ids=answers(corrupted_answers),
    )
