"""Wall time of `sparks ablate` on the tiny models, in units of one plain pass@1 evaluation.

    .venv/bin/python bench/ablate_cost.py                       # the findings' settings
    .venv/bin/python bench/ablate_cost.py --per-level 10 --repeats 3 --threads 1 --clock cpu

One plain evaluation is `tasks.evaluation.grade` of the same problems, one sampling seed, no hooks.
`sparks ablate` runs C conditions (the model, the set, `--controls` random sets, the base circuit) x S
seeds of it, so its ideal ratio is C x S; the excess over that is what the hooks (and, for mean
ablation, the head means) cost. Both are timed in one process, alternately, `--repeats` times
(medians). Models: the trained tiny base model and the findings' strong SFT run when present.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

import torch
import transformers

from sparks.analysis.ablate import evaluate_conditions, matched_random_heads
from sparks.tasks import arith, formats
from sparks.tasks.evaluation import grade

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
HEADS = [(0, 0), (0, 1), (0, 4)]
"""The strong SFT run's emergent heads (docs/arith-world-findings.md)."""
BASE_CIRCUIT = [(0, 5), (0, 6), (0, 7), (1, 0), (1, 3), (1, 4)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["outputs/tiny-base", "outputs/findings-sft-3ep-lr2e-3"])
    parser.add_argument("--per-level", type=int, default=50)
    parser.add_argument("--controls", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clock", choices=CLOCKS, default="wall")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = CLOCKS[args.clock]
    problems = arith.problems("test", sorted(arith.LEVELS), args.per_level * len(arith.LEVELS), 0)
    print(f"{len(problems)} problems, {args.controls} controls, {args.seeds} seeds, {args.threads} threads, {args.clock} clock")
    print(f"{'model':<34}{'mode':<7}{'eval s':>8}{'ablate s':>10}{'ratio':>8}{'ideal':>7}{'excess':>8}")
    for path in args.models:
        if not Path(path, "model.safetensors").is_file():
            print(f"{path}: not built, skipped")
            continue
        model = transformers.AutoModelForCausalLM.from_pretrained(path).eval()
        tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        rng = random.Random(0)
        conditions = {"model": [], "heads": HEADS}
        conditions |= {f"random-{i + 1}": matched_random_heads(HEADS, 8, rng) for i in range(args.controls)}
        conditions["base"] = BASE_CIRCUIT
        ideal = len(conditions) * args.seeds
        for mode, factor in (("scale", 1.3), ("zero", None), ("mean", None)):
            plain, ablating = [], []
            for _ in range(args.repeats):
                start = clock()
                grade(model, tokenizer, problems, ("free",), temperature=0.7)
                plain.append(clock() - start)
                start = clock()
                evaluate_conditions(model, tokenizer, problems, conditions, mode=mode, factor=factor,
                                    seeds=range(args.seeds), temperature=0.7, style="free", system_prompt=None,
                                    max_new_tokens=96, batch_size=64, check=formats.is_correct)
                ablating.append(clock() - start)
            one, whole = statistics.median(plain), statistics.median(ablating)
            print(f"{path:<34}{mode:<7}{one:>8.1f}{whole:>10.1f}{whole / one:>8.1f}{ideal:>7}{whole / one / ideal:>8.2f}")


if __name__ == "__main__":
    main()
