"""Are the tracker's head events real? Raw against confident events under a null, a planted change and real training.

    .venv/bin/python bench/event_reliability.py null --problems 32 64 128 256 --draws 10 --snapshots 10
    .venv/bin/python bench/event_reliability.py real --draws 3

``null``: from the trained tiny base model, a chain of ``--snapshots`` models, each the previous one
plus Gaussian noise of the size of one demo GRPO update (measured: one step of the demo recipe at its
peak learning rate, per parameter tensor the same Frobenius norm; ``--noise-scale`` times that for a
harsher null), so nothing is learned. Each chain
is scored exactly as the tracker scores a snapshot (callbacks.snapshot.score_snapshot), on
``--draws`` independent probe draws (probe seeds 0, 1, ...), and fed to a HeadLineage: raw events
(births + prunings, today's rule) and confident events per snapshot are counted, next to the null
churn and the stability the snapshot reports. Power, at the first ``--problems`` value: at the
middle snapshot one head is changed surgically, the top base-circuit head zeroed (its o_proj input
columns) or a head outside the base circuit scaled by 3 (see ``power``); reported is the share of
draws in which that head's event (a pruning, a birth) is raw and confident.

``real``: the demo's GRPO run and a tracked SFT run, from the same base, saving a checkpoint at
every snapshot, then every checkpoint re-scored on ``--draws`` probe draws; reported is the mean
Jaccard similarity over pairs of draws of the raw event sets and of the confident event sets.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import statistics
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from sparks.callbacks.config import TrackerConfig
from sparks.callbacks.snapshot import score_snapshot
from sparks.callbacks.tracker import probe_pairs
from sparks.probes.scoring import graph_of
from sparks.probes.sites import resolve
from sparks.runs.lineage import HeadLineage

REPO = Path(__file__).resolve().parents[1]
BASE = REPO / "outputs" / "tiny-base"


def train(kind: str, output_dir: Path, *overrides: str) -> None:
    """One untracked training run of a tiny recipe (no dashboard) into ``output_dir``."""
    command = [sys.executable, str(REPO / f"train/{kind}.py"), "--config", str(REPO / f"configs/tiny/{kind}.yaml"),
               "--output_dir", str(output_dir), "--tracker", "off", "--report_to", "none", *overrides]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if result.returncode != 0:
        raise SystemExit(f"{kind} run failed:\n{result.stderr[-3000:]}")


def update_sizes(out: Path) -> dict[str, float]:
    """Per parameter tensor, the Frobenius norm of one demo GRPO update at the recipe's peak learning rate."""
    one_step = out / "one-step"
    if not (one_step / "model.safetensors").exists():
        train("grpo", one_step, "--max_steps", "1", "--warmup_steps", "0", "--lr_scheduler_type", "constant")
    before = AutoModelForCausalLM.from_pretrained(BASE).state_dict()
    after = AutoModelForCausalLM.from_pretrained(one_step).state_dict()
    return {name: float((after[name] - before[name]).norm()) for name in before}


def noise_chain(sizes: dict[str, float], length: int, scale: float = 1.0, seed: int = 0) -> list[AutoModelForCausalLM]:
    """The base model and ``length`` successors, each the previous plus noise of ``scale`` updates' size per tensor."""
    generator = torch.Generator().manual_seed(seed)
    models = [AutoModelForCausalLM.from_pretrained(BASE)]
    for _ in range(length):
        model = copy.deepcopy(models[-1])
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                noise = torch.randn(parameter.shape, generator=generator)
                parameter += noise * (scale * sizes[name] / noise.norm().clamp_min(1e-12))
        models.append(model)
    return models


def lineage_of(models: list, config: TrackerConfig, tokenizer) -> tuple[HeadLineage, list]:
    """Score each model as one tracker snapshot (steps 0, 1, ...) and build their lineage; also the statistics."""
    pairs = probe_pairs(config, tokenizer)
    lineage, snapshots = HeadLineage(config.confidence), []
    for step, model in enumerate(models):
        stats = score_snapshot(model, pairs, config, graph_of(model), tokenizer.pad_token_id, step)
        lineage.update(step, stats.importance.numpy(), stats.circuit.heads, None, stats.replicates.numpy())
        snapshots.append(stats)
    return lineage, snapshots


def events(lineage: HeadLineage, confident: bool) -> set[tuple]:
    """(step, layer, head, kind) of every birth and pruning after the base, or of the confident ones."""
    return {(e["step"], e["layer"], e["head"], e["event"]) for e in lineage.events
            if e["event"] in ("birth", "prune") and (e["confident"] or not confident)}


def null_command(args: argparse.Namespace) -> dict:
    out = args.out
    sizes = update_sizes(out)
    total = sum(size**2 for size in sizes.values()) ** 0.5
    print(f"one demo GRPO update: Frobenius norm {total:.4f} over all parameters", flush=True)
    chain = noise_chain(sizes, args.snapshots, args.noise_scale)
    tokenizer = AutoTokenizer.from_pretrained(BASE)
    results: dict = {"update_norm": total, "noise_scale": args.noise_scale, "snapshots": args.snapshots, "null": {}, "power": {}}
    for count in args.problems:
        raw, confident, null_churn, stability, confidences = [], [], [], [], []
        for draw in range(args.draws):
            config = replace(args.config, num_problems=count, seed=draw)
            lineage, snapshots = lineage_of(chain, config, tokenizer)
            confidences += [e["confidence"] for e in lineage.events if e["event"] in ("birth", "prune")]
            raw.append(len(events(lineage, False)) / args.snapshots)
            confident.append(len(events(lineage, True)) / args.snapshots)
            null_churn.append(statistics.mean(stats.null_churn for stats in snapshots))
            stability.append(statistics.mean(stats.stability for stats in snapshots))
        results["null"][count] = {"raw_per_snapshot": statistics.mean(raw), "confident_per_snapshot": statistics.mean(confident),
                                  "null_churn": statistics.mean(null_churn), "stability": statistics.mean(stability),
                                  "raw_by_draw": raw, "confident_by_draw": confident, "raw_event_confidences": confidences}
        print(f"{count} problems: raw events per snapshot {statistics.mean(raw):.2f}, confident "
              f"{statistics.mean(confident):.3f} (target <= 0.1), null churn {statistics.mean(null_churn):.2f}, "
              f"stability {statistics.mean(stability):.2f}, over {args.draws} draws", flush=True)
    results["power"] = power(chain, args, tokenizer)
    return results


def planted(model, head: tuple[int, int], factor: float):
    """A copy of ``model`` with ``head``'s o_proj input columns multiplied by ``factor``."""
    changed = copy.deepcopy(model)
    sites = resolve(changed)
    columns = slice(head[1] * sites.head_dim, (head[1] + 1) * sites.head_dim)
    with torch.no_grad():
        sites.layers[head[0]].o_proj.weight[:, columns] *= factor
    return changed


def power(chain: list, args: argparse.Namespace, tokenizer) -> dict:
    """Share of draws in which a surgically changed head's event is raw and confident.

    Changes: the top base-circuit head zeroed; the best head outside the base circuit scaled by 3;
    and the best outside head whose scaling by 3 puts it into at least 90% of the bootstrap circuits
    of a reference draw of 256 other problems (a birth the population circuit decisively makes).
    """
    config = replace(args.config, num_problems=args.problems[0])
    middle = len(chain) // 2
    reference = replace(config, num_problems=256, seed=10_000)
    reference_pairs = probe_pairs(reference, tokenizer)

    def reference_stats(model):
        return score_snapshot(model, reference_pairs, reference, graph_of(model), tokenizer.pad_token_id, 0)

    base = reference_stats(chain[0])
    circuit, importance = set(base.circuit.heads), base.importance
    outside = sorted((head for head in itertools.product(*map(range, importance.shape)) if head not in circuit),
                     key=lambda head: -float(importance[head]))
    decisive = next((head for head in outside if reference_stats(planted(chain[middle], head, 3.0)).membership[head] >= 0.9), None)
    changes = [("zeroed circuit head", max(circuit, key=lambda head: float(importance[head])), 0.0, "prune"),
               ("scaled non-circuit head x3", outside[0], 3.0, "birth")]
    if decisive is not None:
        changes.append(("scaled x3 into 90% of the reference's bootstrap circuits", decisive, 3.0, "birth"))
    results = {}
    for name, head, factor, kind in changes:
        models = chain[:middle] + [planted(chain[middle], head, factor)]
        hits, raw_hits, confidences = 0, 0, []
        for draw in range(args.draws):
            lineage, _ = lineage_of(models, replace(config, seed=draw), tokenizer)
            found = [e for e in lineage.events if e["step"] == middle and (e["layer"], e["head"]) == head and e["event"] == kind]
            raw_hits += bool(found)
            hits += bool(found and found[0]["confident"])
            confidences.append(found[0]["confidence"] if found else 0.0)
        results[name] = {"head": list(head), "event": kind, "raw_share": raw_hits / args.draws,
                         "confident_share": hits / args.draws, "mean_confidence": statistics.mean(confidences),
                         "confidences": confidences}
        print(f"power, {name} {head} at snapshot {middle}: {kind} raw in {raw_hits}/{args.draws} draws, confident in "
              f"{hits}/{args.draws} (target >= 90%), mean confidence {statistics.mean(confidences):.2f}", flush=True)
    return results


def checkpoints(run: Path) -> list[tuple[int, Path]]:
    found = sorted((int(path.name.removeprefix("checkpoint-")), path) for path in run.glob("checkpoint-*"))
    return [(0, BASE)] + found


def jaccard(a: set, b: set) -> float:
    return 1.0 if not a | b else len(a & b) / len(a | b)


def real_command(args: argparse.Namespace) -> dict:
    runs = {"grpo": args.out / "grpo", "sft": args.out / "sft"}
    saving = ("--save_strategy", "steps", "--save_steps", str(args.every), "--save_only_model", "true")
    for kind, run in runs.items():
        if not (run / "model.safetensors").exists():
            train(kind, run, *saving)
    tokenizer = AutoTokenizer.from_pretrained(BASE)
    results = {}
    for kind, run in runs.items():
        steps_models = [(step, AutoModelForCausalLM.from_pretrained(path)) for step, path in checkpoints(run)]
        by_draw, confidences = {"raw": [], "confident": []}, []
        for draw in range(args.draws):
            lineage, _ = lineage_of([model for _, model in steps_models], replace(args.config, seed=draw), tokenizer)
            by_draw["raw"].append(events(lineage, False))
            by_draw["confident"].append(events(lineage, True))
            confidences += [e["confidence"] for e in lineage.events if e["event"] in ("birth", "prune")]
        agreement = {name: statistics.mean(jaccard(a, b) for a, b in itertools.combinations(sets, 2))
                     for name, sets in by_draw.items()}
        results[kind] = {"snapshots": len(steps_models), "agreement": agreement, "raw_event_confidences": confidences,
                         "events_per_draw": {name: [len(s) for s in sets] for name, sets in by_draw.items()}}
        print(f"{kind}: {len(steps_models)} snapshots, {args.draws} probe draws; Jaccard of event sets across draws: raw "
              f"{agreement['raw']:.2f} ({results[kind]['events_per_draw']['raw']} events), confident "
              f"{agreement['confident']:.2f} ({results[kind]['events_per_draw']['confident']} events)", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench-events")
    parser.add_argument("--tracker", default="{}", help="tracker settings as JSON, over the defaults (e.g. aggregation)")
    parser.add_argument("--threads", type=int, default=2)
    commands = parser.add_subparsers(dest="command", required=True)
    null = commands.add_parser("null", help="null and power: noise-only snapshot chains")
    null.add_argument("--problems", type=int, nargs="+", default=[32])
    null.add_argument("--draws", type=int, default=10)
    null.add_argument("--snapshots", type=int, default=10)
    null.add_argument("--noise-scale", type=float, default=1.0, help="noise per snapshot in demo updates (a harsher null)")
    real = commands.add_parser("real", help="agreement of event sets across probe draws on real GRPO and SFT runs")
    real.add_argument("--draws", type=int, default=3)
    real.add_argument("--every", type=int, default=25, help="checkpoint (snapshot) interval in steps")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.config = TrackerConfig.from_recipe({"dashboards": ["none"], **json.loads(args.tracker)})
    args.out.mkdir(parents=True, exist_ok=True)
    results = null_command(args) if args.command == "null" else real_command(args)
    setting = f"x{args.noise_scale:g}" if args.command == "null" else f"{args.config.num_problems}"
    path = args.out / f"{args.command}-{args.config.method}-{args.config.aggregation}-{setting}.json"
    path.write_text(json.dumps({"tracker": args.config.as_dict(), **results}, indent=1))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
