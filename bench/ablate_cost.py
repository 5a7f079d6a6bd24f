"""Wall time of `sparks ablate` on the tiny models, and what its hooks cost per answer.

    .venv/bin/python bench/ablate_cost.py                       # the findings' settings
    .venv/bin/python bench/ablate_cost.py --per-level 10 --repeats 3 --threads 1 --clock cpu

Hooks: the same seeded evaluation (`tasks.evaluation.grade`, one sampling seed) with and without the
set scaled by 1.0, which changes no answer (checked), timed alternately `--repeats` times in one
process; the ratio of the medians is the hooks' cost per answer. Whole run: `evaluate_conditions` with
the findings' conditions (the model, the set, `--controls` random sets, the base circuit) x `--seeds`,
against S plain seeded evaluations of the unchanged model timed just before it, times C: the ratio is 1 when every condition
costs a plain evaluation; above 1, the changed models write longer answers (or the hooks cost).
Models: the trained tiny base model and the findings' stronger SFT run when present.
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
from sparks.probes.patching import scale_heads
from sparks.tasks import arith, formats
from sparks.tasks.evaluation import grade

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
HEADS = [(0, 0), (0, 1), (0, 4)]
"""The stronger SFT run's emergent heads (docs/arith-world-findings.md, "What the heads do")."""
BASE_CIRCUIT = [(0, 5), (0, 6), (0, 7), (1, 0), (1, 3), (1, 4)]


def seeded_grade(model, tokenizer, problems, seed: int) -> list[str]:
    torch.manual_seed(seed)
    return [item.completion for item in grade(model, tokenizer, problems, ("free",), temperature=0.7)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["outputs/tiny-base", "outputs/findings-sft-3ep-lr2e-3"])
    parser.add_argument("--per-level", type=int, default=50)
    parser.add_argument("--controls", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clock", choices=CLOCKS, default="wall")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = CLOCKS[args.clock]
    problems = arith.problems("test", sorted(arith.LEVELS), args.per_level * len(arith.LEVELS), 0)
    print(f"{len(problems)} problems, {args.controls} controls, {args.seeds} seeds, {args.threads} threads, {args.clock} clock")
    for path in args.models:
        if not Path(path, "model.safetensors").is_file():
            print(f"{path}: not built, skipped")
            continue
        model = transformers.AutoModelForCausalLM.from_pretrained(path).eval()
        tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        plain, hooked = [], []
        for repeat in range(args.repeats):
            start = clock()
            reference = seeded_grade(model, tokenizer, problems, repeat)
            plain.append(clock() - start)
            start = clock()
            with scale_heads(model, HEADS, 1.0):
                same = seeded_grade(model, tokenizer, problems, repeat)
            hooked.append(clock() - start)
            assert same == reference, "scaling by 1.0 changed an answer"
        print(f"{path}: hooks cost x{statistics.median(hooked) / statistics.median(plain):.3f} per evaluation "
              f"(medians {statistics.median(hooked):.2f} s / {statistics.median(plain):.2f} s, {args.repeats} repeats)")
        rng = random.Random(0)
        conditions = {"model": [], "heads": HEADS}
        conditions |= {f"random-{i + 1}": matched_random_heads(HEADS, 8, rng) for i in range(args.controls)}
        conditions["base"] = BASE_CIRCUIT
        for mode, factor in (("scale", 1.3), ("scale", 0.5), ("zero", None), ("mean", None)):
            start = clock()
            for seed in range(args.seeds):
                seeded_grade(model, tokenizer, problems, seed)
            unchanged = clock() - start
            start = clock()
            evaluate_conditions(model, tokenizer, problems, conditions, mode=mode, factor=factor, seeds=range(args.seeds),
                                temperature=0.7, style="free", system_prompt=None, max_new_tokens=96, batch_size=64,
                                check=formats.is_correct)
            whole = clock() - start
            answers = len(conditions) * args.seeds * len(problems)
            print(f"{path}: ablate {mode}{'' if factor is None else f' x{factor}'}: {whole:.1f} s for {answers} answers "
                  f"({answers / whole:.0f}/s); x{whole / (len(conditions) * unchanged):.2f} of {len(conditions)} unchanged evaluations")


if __name__ == "__main__":
    main()
