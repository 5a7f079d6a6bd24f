"""How fast the three IG rules converge to the integral, and what the separate clean forward costs.

    .venv/bin/python bench/ig_rules.py                                # both models, metric kl
    .venv/bin/python bench/ig_rules.py --parts convergence --models base --metric logit_diff
    .venv/bin/python bench/ig_rules.py --parts cost --threads 1 --clock cpu   # on a shared machine
    .venv/bin/python bench/ig_rules.py --parts convergence --models base --dtype float64 --reference 200 --steps 10 20 40

Edge scores (probes.scoring.score_pairs, the tracker's call) of each rule (probes.ig: ``right``
k/m, ``left`` (k-1)/m, ``midpoint`` (k-1/2)/m) at m points, against the integral: the midpoint
rule at ``--reference`` points (100), whose own error is estimated from the midpoint rule at half
as many (about four times the error, so their difference is about three times the reference's
error). Per cell: the relative error ||s_m - s_ref|| / ||s_ref|| over every pair's edge scores,
and how many of the top 100 edges (ranked by mean |score| over the pairs, the tracker's default
aggregation) are the reference's top 100.

Models: the trained tiny base model (``--base``) on the tracker's own probe pairs (the default
TrackerConfig's draw, callbacks.tracker.probe_pairs), and a randomly initialised Qwen2 with
Qwen2.5-1.5B's head layout (28 layers, 12 query heads, 2 kv heads) at head_dim ``--head-dim`` on
the first ``--wide-pairs`` of the same pairs (edge scoring of 28 layers is slow on a CPU).

Cost: ``right`` takes its clean run from its last point; ``left`` and ``midpoint`` run a separate
no-grad clean forward. Their time against ``right``'s at the same m is measured side by side
(interleaved, medians of ``--repeats``) at node and at edge level.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import transformers
from random_models import wide_model

from sparks.callbacks.config import TrackerConfig
from sparks.callbacks.tracker import probe_pairs
from sparks.probes.ig import IG_RULES
from sparks.probes.pairs import Pair
from sparks.probes.scoring import score_pairs

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def edge_scores_of(model: torch.nn.Module, pairs: list[Pair], pad_id: int, metric: str, rule: str, steps: int) -> torch.Tensor:
    """Per-pair edge scores [N, U, D] as the tracker computes them, in float64."""
    scores = score_pairs(model, pairs, method="eap-ig", level="edge", metric=metric, steps=steps, ig_rule=rule,
                         pad_id=pad_id, progress=False)
    return scores["edges"].double()


def top(scores: torch.Tensor, count: int) -> set[int]:
    """Flat indices of the ``count`` edges with the largest mean |score| over the pairs."""
    return set(scores.abs().mean(0).flatten().topk(count).indices.tolist())


def convergence_rows(name: str, model: torch.nn.Module, pairs: list[Pair], pad_id: int, args: argparse.Namespace) -> list[str]:
    """Markdown rows: per rule and m, relative error and top-100 overlap against the 100-step integral."""
    reference = edge_scores_of(model, pairs, pad_id, args.metric, "midpoint", args.reference)
    norm, best = reference.norm(), top(reference, args.top)
    half = edge_scores_of(model, pairs, pad_id, args.metric, "midpoint", args.reference // 2)
    rows = [f"| {name} | midpoint at {args.reference // 2} vs the reference (about 3x the reference's own error) | "
            f"{(half - reference).norm() / norm:.1e} / {len(top(half, args.top) & best)} |"]
    for rule in IG_RULES:
        cells = []
        for steps in args.steps:
            scores = edge_scores_of(model, pairs, pad_id, args.metric, rule, steps)
            cells.append(f"{(scores - reference).norm() / norm:.4f} / {len(top(scores, args.top) & best)}")
        rows.append(f"| {name} | {rule} | " + " | ".join(cells) + " |")
    return rows


def timed(run: Callable[[], object], clock: Callable[[], float]) -> float:
    """Seconds one call of ``run`` takes on ``clock``."""
    begin = clock()
    run()
    return clock() - begin


def cost_rows(name: str, model: torch.nn.Module, pairs: list[Pair], pad_id: int, args: argparse.Namespace) -> list[str]:
    """Markdown rows: time of each rule at ``--cost-steps`` points relative to ``right``'s, per level."""
    rows = []
    for level in ("node", "edge"):
        def run(rule: str, level: str = level) -> None:
            score_pairs(model, pairs, method="eap-ig", level=level, metric=args.metric, steps=args.cost_steps,
                        ig_rule=rule, pad_id=pad_id, progress=False)

        for rule in IG_RULES:
            run(rule)  # warm-up
        seconds: dict[str, list[float]] = {rule: [] for rule in IG_RULES}
        for _ in range(args.repeats):
            for rule in IG_RULES:
                seconds[rule].append(timed(functools.partial(run, rule), CLOCKS[args.clock]))
        right = statistics.median(seconds["right"])
        cells = [f"{statistics.median(seconds[rule]):.2f} s ({statistics.median(seconds[rule]) / right:.2f}x)" for rule in IG_RULES]
        rows.append(f"| {name} | {level}, m = {args.cost_steps} | " + " | ".join(cells) + " |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="outputs/tiny-base", help="trained tiny base model directory")
    parser.add_argument("--models", nargs="+", choices=["base", "wide"], default=["base", "wide"])
    parser.add_argument("--metric", default="kl")
    parser.add_argument("--parts", nargs="+", choices=["convergence", "cost"], default=["convergence", "cost"])
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 3, 5, 10, 20], help="m, the points per rule")
    parser.add_argument("--reference", type=int, default=100, help="points of the midpoint rule taken as the integral")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="the models' dtype")
    parser.add_argument("--top", type=int, default=100, help="edges in the compared top")
    parser.add_argument("--head-dim", type=int, default=8, help="head_dim of the 28-layer random model")
    parser.add_argument("--wide-pairs", type=int, default=8, help="probe pairs scored on the 28-layer model")
    parser.add_argument("--cost-steps", type=int, default=5, help="m of the timed calls")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall", help="cpu: the process's CPU time")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not Path(args.base, "model.safetensors").exists():
        raise SystemExit(f"{args.base} not found: train it with `make base-model`")
    tokenizer = transformers.AutoTokenizer.from_pretrained(args.base)
    pairs = probe_pairs(TrackerConfig(), tokenizer)
    models = []
    if "base" in args.models:
        models.append(("tiny base 4x8 (2 kv)", transformers.AutoModelForCausalLM.from_pretrained(args.base), pairs))
    if "wide" in args.models:
        models.append((f"random 28x12 (2 kv), hidden {12 * args.head_dim}", wide_model(len(tokenizer), args.head_dim),
                       pairs[: args.wide_pairs]))
    print(f"cpu, {args.threads} threads, {args.dtype}, metric {args.metric}, edge level, tracker's probe pairs "
          f"({len(pairs)} numbers pairs, up to {max(len(pair.clean_ids) for pair in pairs)} tokens)\n")
    for _, model, _ in models:
        model.to(getattr(torch, args.dtype)).eval()
    if "convergence" in args.parts:
        print(f"relative error / top-{args.top} overlap with the {args.reference}-step integral\n")
        print("| model | rule | " + " | ".join(f"m = {steps}" for steps in args.steps) + " |")
        print("|---|---|" + "---|" * len(args.steps), flush=True)
        for name, model, model_pairs in models:
            for row in convergence_rows(f"{name}, {len(model_pairs)} pairs", model, model_pairs, tokenizer.pad_token_id, args):
                print(row, flush=True)
    if "cost" in args.parts:
        print(f"\ntime per call, {args.clock} clock, median of {args.repeats} (ratio to right)\n")
        print("| model | level | " + " | ".join(IG_RULES) + " |")
        print("|---|---|" + "---|" * len(IG_RULES), flush=True)
        for name, model, model_pairs in models:
            for row in cost_rows(f"{name}, {len(model_pairs)} pairs", model, model_pairs, tokenizer.pad_token_id, args):
                print(row, flush=True)


if __name__ == "__main__":
    main()
