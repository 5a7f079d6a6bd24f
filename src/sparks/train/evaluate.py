"""pass@1 per difficulty level of a model directory on held-out arithmetic problems.

    python train/evaluate.py --model outputs/tiny-base --per_level 100 --out outputs/tiny-base/eval.json
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, HfArgumentParser
from transformers.hf_argparser import DataClassType

from sparks.tasks import arith
from sparks.tasks.evaluation import MODES, grade, pass_at_1
from sparks.train.arguments import RecipeError, check_model_path, exit_with


@dataclass
class EvaluateArguments:
    """What to evaluate and on which held-out problems."""

    model: str = field(metadata={"help": "Model directory (or hub name) with its tokenizer."})
    levels: list[int] = field(default_factory=lambda: sorted(arith.LEVELS), metadata={"help": "Difficulty levels."})
    per_level: int = field(default=100, metadata={"help": "Problems per level (fewer where the split is smaller)."})
    styles: list[str] = field(
        default_factory=lambda: list(MODES), metadata={"help": "direct, think (forced) and free (the model's choice)."}
    )
    split: str = field(default="test", metadata={"help": "Problem split: test or probe (never train)."})
    seed: int = field(default=0, metadata={"help": "Seed of the problem draw."})
    system_prompt: str | None = field(default=None, metadata={"help": "System message put before each question."})
    max_new_tokens: int = field(default=96, metadata={"help": "Longest completion."})
    batch_size: int = field(default=64, metadata={"help": "Prompts per generation batch."})
    out: str | None = field(default=None, metadata={"help": "Write the per-level table and completions here (JSON)."})

    def check(self) -> None:
        check_model_path(self.model)
        if self.split not in ("test", "probe"):
            raise RecipeError(f"split: must be 'test' or 'probe', got {self.split!r}")
        unknown_styles = [style for style in self.styles if style not in MODES]
        if unknown_styles:
            raise RecipeError(f"styles: unknown style {unknown_styles[0]!r}; styles are {MODES}")
        try:
            arith.check_levels(self.levels, "levels")
        except ValueError as error:
            raise RecipeError(str(error)) from None


def format_table(table: dict[str, dict[int, float]]) -> str:
    """pass@1 as a plain-text table: one row per style, one column per level, then the mean."""
    levels = sorted({level for row in table.values() for level in row})
    lines = ["style   " + "".join(f"  L{level:<5}" for level in levels) + "  mean"]
    for style, row in table.items():
        cells = "".join(f"  {row[level]:<6.2f}" for level in levels)
        lines.append(f"{style:<8}{cells}  {sum(row.values()) / len(row):.2f}")
    return "\n".join(lines)


def main(args: EvaluateArguments) -> dict[str, dict[int, float]]:
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    problems = arith.problems(args.split, args.levels, args.per_level * len(args.levels), args.seed)
    graded = grade(model, tokenizer, problems, tuple(args.styles), args.system_prompt, args.max_new_tokens, args.batch_size)
    table = pass_at_1(graded)
    print(format_table(table))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        record = {
            "model": args.model,
            "split": args.split,
            "pass_at_1": table,
            "think_format_rate": {
                style: sum(item.formatted for item in graded if item.style == style)
                / max(1, sum(item.style == style for item in graded))
                for style in args.styles
            },
            "completions": [
                {"question": item.problem.question, "level": item.problem.level, "style": item.style,
                 "completion": item.completion, "correct": item.correct}
                for item in graded
            ],
        }
        with open(args.out, "w") as handle:
            json.dump(record, handle, indent=1)
        print(f"sparks: evaluation written to {args.out}")
    return table


if __name__ == "__main__":
    (arguments,) = HfArgumentParser(DataClassType(EvaluateArguments)).parse_args_into_dataclasses()
    try:
        arguments.check()
    except RecipeError as error:
        exit_with(error)
    main(arguments)
