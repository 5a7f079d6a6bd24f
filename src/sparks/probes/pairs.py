"""Clean/corrupted prompt pairs: one pair as a record (JSONL on disk) and batches as tensors.

Clean and corrupted prompts of a pair must have the same token length (the paper aligns the two
answer styles to equal length), so one attention mask serves both. Target positions index the
position whose next-token logits are scored; with left padding the last position (T - 1) is every
example's final token. How pairs are made lives in probes.schemes.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


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

    @property
    def changed(self) -> Tensor:
        """[B, T] True from each row's first token that differs between clean and corrupted on.

        Before it a causal model computes the same in both runs, so every clean-minus-corrupted
        difference there is zero (exactly, whatever rounding the two runs happen to do).
        """
        return (self.clean_ids != self.corrupted_ids).cumsum(-1) > 0

    @property
    def first_change(self) -> int:
        """The first position at which any row changes (T if none does)."""
        columns = self.changed.any(0).nonzero()
        return int(columns[0]) if len(columns) else self.clean_ids.shape[1]

    def to(self, device: torch.device | str) -> PairBatch:
        """The same batch on ``device``."""
        values = {field.name: getattr(self, field.name) for field in fields(self)}
        return replace(self, **{name: value.to(device) for name, value in values.items() if value is not None})


def pad_pairs(
    clean: Sequence[Sequence[int]],
    corrupted: Sequence[Sequence[int]],
    pad_id: int,
    clean_answers: Sequence[int] | Sequence[Sequence[int]] | None = None,
    corrupted_answers: Sequence[int] | Sequence[Sequence[int]] | None = None,
    targets: Sequence[Sequence[int]] | None = None,
) -> PairBatch:
    """Left-pad token-id lists into a PairBatch.

    ``targets`` gives each pair's scored positions in its own unpadded ids (default: its last
    token); answers are one id per pair, or one per target position.
    """
    if len(clean) == 0:
        raise ValueError("no pairs given")
    if len(clean) != len(corrupted):
        raise ValueError(f"{len(clean)} clean prompts but {len(corrupted)} corrupted prompts")
    for index, (a, b) in enumerate(zip(clean, corrupted)):
        if len(a) != len(b):
            raise ValueError(f"pair {index}: clean has {len(a)} tokens, corrupted has {len(b)}; they must match")
        if len(a) == 0:
            raise ValueError(f"pair {index} is empty")
    for name, values in (("clean_answers", clean_answers), ("corrupted_answers", corrupted_answers), ("targets", targets)):
        if values is not None and len(values) != len(clean):
            raise ValueError(f"{len(values)} {name} for {len(clean)} pairs")
    length = max(len(ids) for ids in clean)
    if targets is None:
        targets = [[len(row) - 1] for row in clean]
    if len({len(row) for row in targets}) != 1:
        raise ValueError("every pair of a batch must have the same number of target positions")
    for index, (row, positions) in enumerate(zip(clean, targets)):
        if any(not 0 <= position < len(row) for position in positions):
            raise ValueError(f"pair {index}: target positions {list(positions)} outside its {len(row)} tokens")

    def pad(rows: Sequence[Sequence[int]]) -> Tensor:
        return torch.tensor([[pad_id] * (length - len(row)) + list(row) for row in rows], dtype=torch.long, device="cpu")

    mask = torch.tensor([[0] * (length - len(row)) + [1] * len(row) for row in clean], dtype=torch.long, device="cpu")

    def answers(values: Sequence[int] | Sequence[Sequence[int]] | None) -> Tensor | None:
        return None if values is None else torch.tensor(list(values), dtype=torch.long, device="cpu")

    return PairBatch(
        clean_ids=pad(clean),
        corrupted_ids=pad(corrupted),
        attention_mask=mask,
        target_positions=torch.tensor(
            [[length - len(row) + position for position in positions] for row, positions in zip(clean, targets)],
            device="cpu",
        ),
        clean_answer_ids=answers(clean_answers),
        corrupted_answer_ids=answers(corrupted_answers),
    )


@dataclass(frozen=True)
class Pair:
    """One clean/corrupted pair as stored: texts, token ids, scored positions, answers, metadata.

    ``targets`` are positions in the (unpadded) ids whose next-token logits are scored; the
    answer ids, when given, are one per target (the token each run should predict there).
    """

    clean_text: str
    corrupted_text: str
    clean_ids: list[int]
    corrupted_ids: list[int]
    targets: list[int]
    clean_answer_ids: list[int] | None = None
    corrupted_answer_ids: list[int] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def batch_pairs(pairs: Sequence[Pair], pad_id: int) -> PairBatch:
    """Pairs as one left-padded PairBatch (answers only if every pair has them)."""

    def answers(name: str) -> list[list[int]] | None:
        values = [getattr(pair, name) for pair in pairs]
        return None if any(value is None for value in values) else values

    return pad_pairs(
        [pair.clean_ids for pair in pairs],
        [pair.corrupted_ids for pair in pairs],
        pad_id,
        clean_answers=answers("clean_answer_ids"),
        corrupted_answers=answers("corrupted_answer_ids"),
        targets=[pair.targets for pair in pairs],
    )


def batches(pairs: Sequence[Pair], pad_id: int, batch_size: int) -> Iterator[PairBatch]:
    """Consecutive PairBatches of at most ``batch_size`` pairs."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, len(pairs), batch_size):
        yield batch_pairs(pairs[start : start + batch_size], pad_id)


def save_pairs(pairs: Sequence[Pair], path: str | Path) -> None:
    """Write one pair per line as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as file:
        for pair in pairs:
            file.write(json.dumps(asdict(pair)) + "\n")


def read_text(path: str | Path, what: str) -> str:
    """The text of the ``what`` file at ``path`` ("pair", "heads", ...), refused in one line naming the file when it is
    missing, a directory or not UTF-8 text (Python's decoding error names neither the file nor the line)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{what} file {path} is a directory, not a file")
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    try:
        return path.read_text()
    except UnicodeDecodeError as error:
        line = error.object.count(b"\n", 0, error.start) + 1
        raise ValueError(f"{path}:{line}: not UTF-8 text; a {what} file is text") from None


def load_pairs(
    path: str | Path, *, vocab_size: int | None = None, tokenizer: PreTrainedTokenizerBase | None = None
) -> list[Pair]:
    """Read a JSONL pair file, refusing any pair that would score silently wrong or crash later.

    Every row must be a JSON object of Pair's fields with the right types (ids: lists of
    non-negative ints), equal clean and corrupted lengths, targets in range, one answer per target,
    and clean and corrupted rows that differ. With ``vocab_size`` every id must lie below it; with
    ``tokenizer`` the ids must decode to the stored texts (where given), which catches pair files
    made with another model's tokenizer. Errors are one line: ``path:line: field: why``.
    """
    rows = _parsed(str(Path(path)), read_text(path, "pair"))
    for where, pair in rows:
        if vocab_size is not None:
            _check_vocabulary(pair, where, vocab_size)
        if tokenizer is not None:
            _check_encoding(pair, tokenizer, where)
    pairs = [pair for _, pair in rows]
    if not pairs:
        raise ValueError(f"pair file {path} holds no pairs")
    return pairs


@functools.lru_cache(maxsize=4)
def _parsed(path: str, text: str) -> tuple[tuple[str, Pair], ...]:
    """The pairs of a pair file's ``text``, each with its ``path:line``, checked on their own: parsed once per
    file content, however many readers check it against a model."""
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{where}: not JSON ({error.msg})") from None
        pair = _pair(record, where)
        _check(pair, where)
        rows.append((where, pair))
    return tuple(rows)


def _check_vocabulary(pair: Pair, where: str, vocab_size: int) -> None:
    """Every id lies in the model's vocabulary."""
    for name in ("clean_ids", "corrupted_ids", "clean_answer_ids", "corrupted_answer_ids"):
        for item in getattr(pair, name) or ():
            if item >= vocab_size:
                raise ValueError(f"{where}: {name}: id {item} is outside the model's vocabulary of {vocab_size} tokens")


def load_pairs_for_model(
    path: str | Path, model_name_or_path: str, tokenizer: PreTrainedTokenizerBase | None = None, **config_options: Any
) -> list[Pair]:
    """``load_pairs`` checked against a model before its weights load: the vocabulary of its config
    (``config_options`` go to AutoConfig, e.g. revision) and, when given, its tokenizer."""
    return load_pairs(path, vocab_size=vocabulary_size(model_name_or_path, **config_options), tokenizer=tokenizer)


def vocabulary_size(model_name_or_path: str, **config_options: Any) -> int:
    """The vocabulary size of a model's config, read before its weights load."""
    from transformers import AutoConfig

    return int(AutoConfig.from_pretrained(model_name_or_path, **config_options).get_text_config().vocab_size)


def _kind(value: Any) -> str:
    """How JSON names a decoded value's type."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    names: dict[type, str] = {dict: "an object", list: "an array", str: "a string"}
    return names.get(type(value), "a number")


def _pair(record: Any, where: str) -> Pair:
    """A decoded row as a Pair, once every field has Pair's type (ids are ints: not bools, floats or strings)."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: a pair must be a JSON object, got {_kind(record)}")
    names = [f.name for f in fields(Pair)]
    for name in record:
        if name not in names:
            raise ValueError(f"{where}: {name}: unknown field; a pair holds nothing but {', '.join(names)}")
    for name in ("clean_ids", "corrupted_ids", "targets"):
        if name not in record:
            raise ValueError(f"{where}: {name}: missing; a pair needs clean_ids, corrupted_ids and targets")
    for name in ("clean_text", "corrupted_text"):
        if not isinstance(record.get(name, ""), str):
            raise ValueError(f"{where}: {name}: must be a string, got {_kind(record[name])}")
    if not isinstance(record.get("meta", {}), dict):
        raise ValueError(f"{where}: meta: must be an object, got {_kind(record['meta'])}")
    for name in ("targets", "clean_ids", "corrupted_ids", "clean_answer_ids", "corrupted_answer_ids"):
        value = record.get(name)
        if value is None and name.endswith("_answer_ids"):
            continue
        if not isinstance(value, list):
            raise ValueError(f"{where}: {name}: must be a list of integers, got {_kind(value)}")
        for index, item in enumerate(value):
            if type(item) is not int:
                raise ValueError(f"{where}: {name}: item {index} is {json.dumps(item)}, not an integer")
            if name == "targets":
                continue
            if item < 0:
                raise ValueError(f"{where}: {name}: id {item} is negative")
    given: dict[str, Any] = {"clean_text": "", "corrupted_text": "", **record}
    return Pair(**given)


def _check(pair: Pair, where: str) -> None:
    """Lengths, targets and answers agree, and there is something to patch."""
    if len(pair.clean_ids) != len(pair.corrupted_ids):
        raise ValueError(
            f"{where}: corrupted_ids: clean has {len(pair.clean_ids)} tokens, corrupted has {len(pair.corrupted_ids)}; they must match"
        )
    if not pair.clean_ids:
        raise ValueError(f"{where}: clean_ids: empty pair")
    if not pair.targets or any(not 0 <= position < len(pair.clean_ids) for position in pair.targets):
        raise ValueError(f"{where}: targets: {pair.targets} must be positions in its {len(pair.clean_ids)} tokens")
    for name in ("clean_answer_ids", "corrupted_answer_ids"):
        value = getattr(pair, name)
        if value is not None and len(value) != len(pair.targets):
            raise ValueError(f"{where}: {name}: {len(value)} {name} for {len(pair.targets)} targets")
    if pair.clean_ids == pair.corrupted_ids:
        raise ValueError(f"{where}: corrupted_ids: clean and corrupted are identical; the pair has nothing to patch")


def _check_encoding(pair: Pair, tokenizer: PreTrainedTokenizerBase, where: str) -> None:
    """The ids decode to the stored texts, as probes.schemes writes them (``tokenizer.decode(ids)``)."""
    for side in ("clean", "corrupted"):
        text = getattr(pair, f"{side}_text")
        if text and tokenizer.decode(getattr(pair, f"{side}_ids")) != text:
            raise ValueError(
                f"{where}: {side}_ids: not this tokenizer's encoding of {side}_text (made with another tokenizer?)"
            )
