"""pass@1 of two evaluations side by side (before/after a training run), per style and level.

    python train/evaluate.py --model outputs/tiny-base --out outputs/tiny-base/eval.json
    python train/evaluate.py --model outputs/tiny-sft --out outputs/tiny-sft/eval.json
    python bench/compare_eval.py outputs/tiny-base/eval.json outputs/tiny-sft/eval.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def mean(row: dict[str, float]) -> float:
    return sum(row.values()) / len(row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path, help="eval.json written by train/evaluate.py")
    parser.add_argument("after", type=Path, help="eval.json written by train/evaluate.py")
    args = parser.parse_args()
    before, after = (json.loads(path.read_text())["pass_at_1"] for path in (args.before, args.after))
    print(f"{'style':<8}{'level':<7}{'before':<9}{'after':<9}after/before")
    for style in [style for style in before if style in after]:
        rows = [(level, before[style][level], after[style][level]) for level in before[style] if level in after[style]]
        rows.append(("mean", mean(before[style]), mean(after[style])))
        for level, old, new in rows:
            ratio = f"{new / old:.2f}" if old else "inf"
            print(f"{style:<8}{level:<7}{old:<9.2f}{new:<9.2f}{ratio}")


if __name__ == "__main__":
    main()
