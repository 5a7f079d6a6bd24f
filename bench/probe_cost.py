"""Cost of head scoring in forward-pass equivalents, and peak memory of edge scoring vs a training step.

    .venv/bin/python bench/probe_cost.py                      # tiny base model + 28x12 (2 kv) random model
    .venv/bin/python bench/probe_cost.py --steps 5 --batch 16 --repeats 3 --threads 2
    .venv/bin/python bench/probe_cost.py --batch 8 --threads 1 --clock cpu  # on a machine shared with others

The unit is one plain forward pass (no grad, all logits) of the clean half of the same batch,
timed in the same process before each method (medians of ``--repeats``; exact patching is timed
once). ``--clock cpu`` times the process's CPU time instead of wall time: with ``--threads 1`` that
is what one free core would take, and other processes on a shared machine barely move it. The
batch is number-swap pairs of the arithmetic world (``--batch`` pairs, levels 1-6). Models: the
trained tiny base model (``--base``; skipped if absent) and a randomly initialised Qwen2 with Qwen2.5-1.5B's head layout
(28 layers, 12 query heads, 2 kv heads) at head_dim 16 (hidden 192).

Memory (CPU): the rise of the process's peak resident set (VmHWM, reset through
/proc/self/clear_refs) over the resident set just before the call. glibc is told to serve every
allocation of 64 KiB or more with mmap (MALLOC_MMAP_THRESHOLD_, set for a child process that only
measures memory), so freed tensors leave the resident set at once and every call starts from the
same floor. On CUDA, torch.cuda.max_memory_allocated over the allocation before the call is used.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import transformers
from random_models import wide_model

from sparks.probes.attribution import node_scores
from sparks.probes.edges import EdgeGraph, edge_scores
from sparks.probes.forward import position_ids
from sparks.probes.pairs import Pair, PairBatch, batch_pairs
from sparks.probes.patching import exact_edge_effects, exact_head_effects
from sparks.probes.schemes import numbers_pairs
from sparks.probes.scoring import score_pairs
from sparks.tasks import arith
from sparks.tasks.tokenizer import build_tokenizer

MMAP_THRESHOLD = "65536"
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def timed(run: Callable[[], object], device: str, clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds one call of ``run`` takes on ``clock``."""
    if device == "cuda":
        torch.cuda.synchronize()
    start = clock()
    run()
    if device == "cuda":
        torch.cuda.synchronize()
    return clock() - start


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_memory(run: Callable[[], object], device: str) -> float:
    """MiB the call adds at its peak (see the module docstring for how)."""
    if device == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    before = _rss_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    run()
    return (_rss_kib("VmHWM") - before) / 1024


def training_step(model: torch.nn.Module, batch: PairBatch) -> None:
    """One forward + backward with parameter gradients on the clean rows, as a training step does."""
    labels = batch.clean_ids.masked_fill(batch.attention_mask == 0, -100)
    loss = model(
        input_ids=batch.clean_ids,
        attention_mask=batch.attention_mask,
        position_ids=position_ids(batch.attention_mask),
        labels=labels,
        use_cache=False,
    ).loss
    loss.backward()
    for parameter in model.parameters():
        parameter.grad = None


def plain_forward(model: torch.nn.Module, batch: PairBatch) -> None:
    with torch.no_grad():
        model(
            input_ids=batch.clean_ids,
            attention_mask=batch.attention_mask,
            position_ids=position_ids(batch.attention_mask),
            use_cache=False,
        )


def time_rows(name: str, model: torch.nn.Module, pairs: list[Pair], pad_id: int, args: argparse.Namespace,
              device: str) -> list[str]:
    """Markdown rows of wall time in forward equivalents for one model."""
    batch = batch_pairs(pairs, pad_id).to(device)
    config = model.config
    graph = EdgeGraph.build(config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads)
    k = args.steps
    runs: dict[str, tuple[Callable[[], object], float | None]] = {
        f"node eap-ig k={k}, {k} points in a pass": (lambda: node_scores(model, batch, "kl", steps=k, chunk_size=None), 1.2 * (1 + 2 * k)),
        f"node eap-ig k={k}, one point per pass": (lambda: node_scores(model, batch, "kl", steps=k, chunk_size=1), 1.2 * (1 + 2 * k)),
        f"edge eap-ig k={k}, {k} points in a pass": (lambda: edge_scores(model, batch, "kl", steps=k, chunk_size=None), None),
        f"edge eap-ig k={k}, one point per pass": (lambda: edge_scores(model, batch, "kl", steps=k, chunk_size=1), None),
        "exact head patching": (lambda: exact_head_effects(model, batch, "kl"), None),
    }
    if config.num_hidden_layers <= args.exact_edge_layers:
        runs["exact edge patching"] = (lambda: exact_edge_effects(model, batch, "kl"), None)
    forward = lambda: plain_forward(model, batch)  # noqa: E731
    for method, (run, _) in runs.items():
        if not method.startswith("exact"):
            run()  # warm-up
    forwards, seconds = [], {method: [] for method in runs}
    for repeat in range(args.repeats):
        for method, (run, _) in runs.items():
            if method.startswith("exact") and repeat > 0:
                continue  # slow and only for comparison: timed once
            forwards.append(timed(forward, device, CLOCKS[args.clock]))
            seconds[method].append(timed(run, device, CLOCKS[args.clock]))
    unit = statistics.median(forwards)
    equivalents = {method: statistics.median(values) / unit for method, values in seconds.items()}
    rows = [f"| {name} | plain forward (the unit) | {unit * 1000:.1f} ms | 1.0 | |"]
    for method, (_, target) in runs.items():
        if method.startswith("edge"):
            target = 2 * equivalents[method.replace("edge", "node")]
        verdict = "" if target is None else f"<= {target:.1f}: {'met' if equivalents[method] <= target else 'MISSED'}"
        rows.append(f"| {name} | {method} | {statistics.median(seconds[method]) * 1000:.1f} ms | {equivalents[method]:.1f} | {verdict} |")
    if "exact edge patching" not in runs:
        rows.append(f"| {name} | exact edge patching | not run | ~{int(graph.valid.sum()) + 2} by construction | |")
    return rows


def memory_rows(name: str, model: torch.nn.Module, pairs: list[Pair], pad_id: int, args: argparse.Namespace,
                device: str) -> list[str]:
    """Markdown rows of peak memory of edge scoring against one training step, for one model.

    The tracker's row is its own call (probes.scoring.score_pairs, as callbacks.snapshot makes it,
    with the level's default points per pass) on the whole batch; the other two call edge_scores
    with all points in a pass and with one.
    """
    k = args.steps
    batch = batch_pairs(pairs, pad_id).to(device)
    training_step(model, batch)  # warm-up: lazy allocations of the first call are not the method's
    train = peak_memory(lambda: training_step(model, batch), device)
    rows = [f"| {name} | peak memory: training forward + backward | {train:.1f} MiB | 1.00x | |"]
    runs = {
        f"edge eap-ig k={k}, the tracker's call (score_pairs, default points per pass)": lambda: score_pairs(
            model, pairs, method="eap-ig", level="edge", metric="kl", steps=k, batch_size=len(pairs), pad_id=pad_id,
            progress=False),
        f"edge eap-ig k={k}, {k} points in a pass": lambda: edge_scores(model, batch, "kl", steps=k, chunk_size=None),
        f"edge eap-ig k={k}, one point per pass": lambda: edge_scores(model, batch, "kl", steps=k, chunk_size=1),
    }
    for method, run in runs.items():
        run()
        peak = peak_memory(run, device)
        verdict = "met" if peak <= 2 * train else "MISSED"
        rows.append(f"| {name} | peak memory: {method} | {peak:.1f} MiB | {peak / train:.2f}x | <= 2x: {verdict} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="outputs/tiny-base", help="trained tiny base model directory")
    parser.add_argument("--steps", type=int, default=5, help="IG steps k")
    parser.add_argument("--batch", type=int, default=16, help="pairs in the batch")
    parser.add_argument("--head-dim", type=int, default=16, help="head_dim of the 28-layer random model")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall", help="cpu: the process's CPU time (CPU only)")
    parser.add_argument("--exact-edge-layers", type=int, default=4, help="run exact edge patching up to this depth")
    parser.add_argument("--memory", action="store_true", help="(internal) print the memory rows only")
    args = parser.parse_args()
    if args.memory and os.environ.get("MALLOC_MMAP_THRESHOLD_") != MMAP_THRESHOLD:
        raise SystemExit("--memory is run by the script itself, with MALLOC_MMAP_THRESHOLD_ set")
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.clock == "cpu" and device == "cuda":
        raise SystemExit("--clock cpu times CPU work; on CUDA use --clock wall")
    tokenizer = build_tokenizer()
    problems = arith.problems("probe", sorted(arith.LEVELS), args.batch, seed=0)
    pairs = numbers_pairs(tokenizer, problems)[: args.batch]
    models = []
    if Path(args.base, "model.safetensors").exists():
        models.append(("tiny base 4x8 (2 kv)", transformers.AutoModelForCausalLM.from_pretrained(args.base)))
    elif not args.memory:
        print(f"{args.base} not found: the tiny base model is skipped")
    models.append((f"random 28x12 (2 kv), hidden {12 * args.head_dim}", wide_model(len(tokenizer), args.head_dim)))
    rows = memory_rows if args.memory else time_rows
    if not args.memory:
        tokens = max(len(pair.clean_ids) for pair in pairs)
        print(f"{device}, {args.threads} threads, {args.clock} clock, float32, batch {len(pairs)} x {tokens} tokens, k = {args.steps}\n")
        print("| model | method | time | forward equivalents | target |")
        print("|---|---|---|---|---|", flush=True)
    for name, model in models:
        model.to(device).eval()
        for row in rows(name, model, pairs, tokenizer.pad_token_id, args, device):
            print(row, flush=True)
    if not args.memory:
        # Memory in a fresh process whose glibc returns freed tensors to the system at once; timing
        # stays out of it, since an mmap per tensor slows small models down.
        environment = {**os.environ, "MALLOC_MMAP_THRESHOLD_": MMAP_THRESHOLD}
        subprocess.run([sys.executable, __file__, *sys.argv[1:], "--memory"], env=environment, check=True)


if __name__ == "__main__":
    main()
