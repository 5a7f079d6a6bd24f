"""The probe pairs a run scores, from one of three sources: a pair file (``sparks pairs``), a real data
set's held-out questions made into style pairs, or problems of the arithmetic world's probe split made
into pairs of a scheme. The tracker, the training scripts and ``sparks rescore`` all build them here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sparks.probes.pairs import Pair, load_pairs
from sparks.probes.schemes import BASELINE_OPENING, REASONING_OPENING, arith_style_pairs, numbers_pairs, style_pairs
from sparks.tasks import arith


@dataclass(frozen=True)
class ProbeSet:
    """Where the probe pairs come from: the pair file ``pairs``, or ``num_problems`` problems (or held-out
    questions) drawn with ``seed``, of the arithmetic ``levels``, made into ``scheme`` pairs."""

    pairs: str | None
    scheme: str
    num_problems: int
    levels: tuple[int, ...]
    seed: int

    def build(
        self,
        tokenizer: Any,
        vocab_size: int | None = None,
        *,
        questions: Sequence[dict[str, Any]] | None = None,
        system_prompt: str | None = None,
    ) -> list[Pair]:
        """The pair file (checked against the model's vocabulary and tokenizer); style pairs of a real
        data set's held-out ``questions`` (rows with a "question", tasks.data.probe_questions) in the
        recipe's chat format: the tokenizer's chat template with ``system_prompt``, then the paper's
        reasoning opening against its baseline opening; or pairs of the arithmetic world's probe split
        in the scheme. ``tokenizer``: the model's (a trainer's processing class)."""
        if self.pairs is not None:
            return load_pairs(self.pairs, vocab_size=vocab_size, tokenizer=tokenizer)
        if questions is not None:
            if self.scheme != "style":
                raise ValueError(f"tracker.scheme: {self.scheme} pairs swap arithmetic-world operands; "
                                 "a real data set's questions make style pairs")
            texts = [row["question"] for row in questions]
            pairs = style_pairs(tokenizer, texts, [REASONING_OPENING] * len(texts), [BASELINE_OPENING] * len(texts),
                                system_prompt=system_prompt, meta=questions)
            source = f"{len(texts)} held-out questions"
        else:
            problems = arith.problems("probe", list(self.levels), self.num_problems, self.seed, fill=True)
            if self.scheme == "style":
                pairs = arith_style_pairs(tokenizer, problems)
            else:
                pairs = numbers_pairs(tokenizer, problems, seed=self.seed)
            source = f"{self.num_problems} probe problems"
        if not pairs:
            raise ValueError(f"tracker: no {self.scheme} pair could be built from {source}")
        return pairs
