"""The ``sparks`` command line: build probe pair sets, score heads and edges on a saved model.

    sparks pairs --scheme numbers --model outputs/tiny-base --split probe --levels 1 2 3 --count 64 --out pairs.jsonl
    sparks pairs --scheme style --model outputs/tiny-base --reasoning-model outputs/tiny-grpo --baseline-model outputs/tiny-base --out style.jsonl
    sparks score --model outputs/tiny-base --pairs pairs.jsonl --method eap-ig --level edge --metric kl --out scores/
    sparks compare outputs/tiny-grpo outputs/tiny-sft --out compare/ --wandb
    sparks rescore outputs/tiny-grpo-saved --base outputs/tiny-base --method eap --metric logit_diff

Bad input (a pair file that is missing, empty, mistyped or made with another tokenizer, a head out of
range, a model without the expected modules, a model whose scores are NaN or inf) ends with one
``sparks: error: ...`` line and exit status 2, before anything is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from sparks.callbacks.plots import head_heatmap, save_png
from sparks.probes.bootstrap import poisson_weights
from sparks.probes.faithfulness import pair_effects
from sparks.probes.ig import IG_RULE, IG_RULES
from sparks.probes.scoring import LEVELS, METHODS, graph_of, score_pairs
from sparks.probes.statistics import AGGREGATIONS, NonFiniteScores, ScoreSums, Selection, SnapshotStats
from sparks.probes.metrics import METRICS
from sparks.probes.openings import sample_openings
from sparks.probes.pairs import load_pairs_for_model, save_pairs
from sparks.probes.schemes import (
    BASELINE_OPENING,
    REASONING_OPENING,
    ROLES,
    SCHEMES,
    arith_style_pairs,
    numbers_pairs,
    problem_meta,
    read_questions,
    style_pairs,
)
from sparks.tasks import arith
from sparks.tasks.data import HUB_SOURCES, probe_questions


def _model_dir(path: str) -> str:
    if not Path(path).is_dir():
        raise FileNotFoundError(f"model directory {path} does not exist")
    return path


def _heads(text: str | None) -> list[tuple[int, int]] | None:
    """``"0.1,2.3"`` -> [(0, 1), (2, 3)]."""
    if text is None:
        return None
    heads = []
    for item in text.split(","):
        parts = item.strip().split(".")
        if len(parts) != 2 or not all(part.isdigit() for part in parts):
            raise ValueError(f"--heads takes LAYER.HEAD items separated by commas, not {item!r}")
        heads.append((int(parts[0]), int(parts[1])))
    return heads


def _sampled_openings(args: argparse.Namespace, tokenizer, questions: list[str]) -> tuple[list[str], list[str]]:
    """Each question's opening written by the reasoning model and by the baseline model."""
    from transformers import AutoModelForCausalLM

    openings = []
    for path in (args.reasoning_model, args.baseline_model):
        model = AutoModelForCausalLM.from_pretrained(_model_dir(path)).to(args.device)
        openings.append(
            sample_openings(
                model, tokenizer, questions, tokens=args.sample_tokens, seed=args.sample_seed, system_prompt=args.system_prompt
            )
        )
        del model
    return openings[0], openings[1]


def pairs_command(args: argparse.Namespace) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(_model_dir(args.model))
    sampled = args.reasoning_model is not None or args.baseline_model is not None
    if sampled and (args.reasoning_model is None or args.baseline_model is None):
        raise ValueError("--reasoning-model and --baseline-model are given together")
    if args.questions and args.dataset:
        raise ValueError("--questions and --dataset are two sources of questions: give one")
    if (args.questions or args.dataset) and args.scheme != "style":
        raise ValueError("--questions and --dataset work with --scheme style: a number swap needs the arithmetic world's answers")
    if args.dataset_path and not args.dataset:
        raise ValueError("--dataset-path is a local copy of a --dataset: name the data set")
    if sampled and args.scheme != "style":
        raise ValueError("--reasoning-model and --baseline-model work with --scheme style: they write answer openings")
    questions_given = bool(args.questions or args.dataset)
    if questions_given:
        meta = read_questions(args.questions) if args.questions else probe_questions(
            args.dataset, args.count, args.seed, args.dataset_path)
        questions = [row["question"] for row in meta]
    else:
        problems = arith.problems(args.split, args.levels, args.count, args.seed)
        questions, meta = [problem.question for problem in problems], [problem_meta(problem) for problem in problems]
    if args.scheme == "numbers":
        pairs = numbers_pairs(tokenizer, problems, seed=args.seed, system_prompt=args.system_prompt)
    elif not sampled and not questions_given:
        pairs = arith_style_pairs(
            tokenizer, problems, role=args.role, opening_tokens=args.opening_tokens, system_prompt=args.system_prompt
        )
    else:
        if sampled:
            reasoning, baseline = _sampled_openings(args, tokenizer, questions)
            meta = [{**row, "reasoning_model": args.reasoning_model, "baseline_model": args.baseline_model} for row in meta]
        else:
            reasoning, baseline = [args.reasoning_opening] * len(questions), [args.baseline_opening] * len(questions)
        pairs = style_pairs(
            tokenizer,
            questions,
            reasoning,
            baseline,
            role=args.role,
            opening_tokens=args.opening_tokens,
            system_prompt=args.system_prompt,
            meta=meta,
        )
    if not pairs:
        raise ValueError("no pair could be built from these questions")
    save_pairs(pairs, args.out)
    print(f"wrote {len(pairs)} {args.scheme} pairs to {args.out}")


def score_command(args: argparse.Namespace) -> None:
    """Score heads or edges; every check (pair file, heads, finite scores) passes before ``--out`` is written."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if args.method == "eap" and args.metric == "kl":
        raise ValueError("--method eap with --metric kl scores exactly zero (the KL gradient vanishes at the clean input)")
    if args.replicates < 2:
        raise ValueError(f"--replicates needs at least 2 bootstrap replicates, got {args.replicates}")
    selection = Selection(args.level, args.aggregation, args.mass, args.top_n, args.tau)
    heads = _heads(args.heads)
    model_dir = _model_dir(args.model)
    # A weights-only directory has no tokenizer to check the ids against (transformers would make an empty one).
    has_tokenizer = any((Path(model_dir) / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json"))
    tokenizer = AutoTokenizer.from_pretrained(model_dir) if has_tokenizer else None
    pairs = load_pairs_for_model(args.pairs, model_dir, tokenizer)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, args.dtype))
    model.to(args.device)
    pad_id = model.config.pad_token_id or 0
    scores = score_pairs(
        model,
        pairs,
        method=args.method,
        level=args.level,
        metric=args.metric,
        steps=args.ig_steps,
        ig_rule=args.ig_rule,
        batch_size=args.batch_size,
        chunk_size=args.chunk_size,
        heads=heads,
        pad_id=pad_id,
    )
    graph = graph_of(model)
    scored = None
    if heads is not None:
        scored = torch.zeros(graph.num_layers, graph.num_heads, dtype=torch.bool)
        for layer, head in heads:
            scored[layer, head] = True
    weights = torch.ones(len(pairs), dtype=torch.float64)
    replicate_weights = poisson_weights(range(len(pairs)), args.replicates, args.seed)
    try:
        stats = SnapshotStats.of(ScoreSums.of(scores, graph, selection, weights, replicate_weights), graph, selection, scored)
        effects = pair_effects(model, pairs, stats.circuit, metric=args.metric, batch_size=args.batch_size, pad_id=pad_id)
        stats = stats.with_faithfulness(torch.cat([weights[None], replicate_weights]) @ effects.double())
    except NonFiniteScores as error:
        raise ValueError(f"{args.model}: {error}") from None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({name: value.contiguous() for name, value in scores.items()}, str(out / "scores.safetensors"))
    stats.circuit.save(out / "circuit")

    def plain(values: torch.Tensor) -> list:
        return [[None if value != value else value for value in row] for row in values.tolist()]

    summary = {
        "model": args.model,
        "pairs": args.pairs,
        "num_pairs": len(pairs),
        "method": args.method,
        "level": args.level,
        "metric": args.metric,
        "ig_steps": args.ig_steps,
        "ig_rule": args.ig_rule,
        "aggregation": args.aggregation,
        "importance": plain(stats.importance),
        "importance_low": plain(stats.importance_interval[0]),
        "importance_high": plain(stats.importance_interval[1]),
        "circuit_heads": [list(head) for head in stats.circuit.heads],
        "replicates": args.replicates,
        "membership": plain(stats.membership),
        "stability": stats.stability,
        "null_churn": stats.null_churn,
        "faithfulness": plain(torch.tensor([[stats.faithfulness]]))[0][0],
        "faithfulness_interval": plain(torch.tensor([stats.faithfulness_interval]))[0],
    }
    (out / "scores.json").write_text(json.dumps(summary, indent=1))
    title = f"{Path(args.model).name}: {args.method} {args.level} {args.metric}, {len(pairs)} pairs"
    save_png(head_heatmap(stats.importance.float().numpy(), title, marked=stats.circuit.heads), out / "heatmap.png")
    print(f"scored {len(pairs)} pairs; {len(stats.circuit.heads)} heads in the circuit (stability {stats.stability:.2f}, "
          f"faithfulness {stats.faithfulness:.2f} [{stats.faithfulness_interval[0]:.2f}, {stats.faithfulness_interval[1]:.2f}], null churn {stats.null_churn:.1f} heads); wrote {out}")


def rescore_command(args: argparse.Namespace) -> None:
    from sparks.analysis.rescore import SETTINGS, rescore

    changes = {setting: value for setting in SETTINGS if (value := getattr(args, setting)) is not None}
    out = rescore(args.run_dir, changes, pairs=args.pairs, name=args.name, base=args.base, force=args.force,
                  dtype=args.dtype, device=args.device)
    print(f"wrote {out}")


def compare_command(args: argparse.Namespace) -> None:
    """Runs side by side: one self-contained HTML report and a PNG per figure (analysis.compare_report); with
    ``--wandb`` also one W&B run of job type compare (analysis.compare_wandb), its target checked before the report is drawn."""
    from sparks.analysis.compare_report import write_report

    if not args.wandb and (args.project or args.group):
        raise ValueError(f"{'--project' if args.project else '--group'} names where --wandb logs the comparison: add --wandb")
    if args.wandb:
        from sparks.analysis.compare_wandb import log_comparison, wandb_identity

        identity = wandb_identity(args.run_dirs, args.project, args.group)
    report = write_report(args.run_dirs, args.out)
    for warning in report.warnings:
        print(f"sparks: warning: {warning}", file=sys.stderr)
    print(f"compared {', '.join(report.compared)}; wrote {report.path}")
    if args.wandb:
        print(log_comparison(report, identity))


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="sparks", description=__doc__.splitlines()[0])
    commands = root.add_subparsers(dest="command", required=True)

    pairs = commands.add_parser("pairs", help="build a clean/corrupted pair set (JSONL)")
    pairs.add_argument("--scheme", choices=SCHEMES, required=True)
    pairs.add_argument("--model", required=True, help="model directory (its tokenizer is used)")
    pairs.add_argument("--out", required=True, help="JSONL file to write")
    pairs.add_argument("--split", choices=arith.SPLITS, default="probe")
    pairs.add_argument("--levels", type=int, nargs="+", default=sorted(arith.LEVELS))
    pairs.add_argument("--count", type=int, default=64, help="problems to draw (pairs that cannot be built are left out)")
    pairs.add_argument("--seed", type=int, default=0)
    pairs.add_argument("--role", choices=ROLES, default="reasoning", help="style scheme: which style is clean")
    pairs.add_argument("--opening-tokens", type=int, help="style scheme: tokens of each opening kept (default: shortest - 1)")
    pairs.add_argument("--questions", help="a real data set's questions: JSONL rows with 'question', or one per line")
    pairs.add_argument("--dataset", choices=sorted(HUB_SOURCES),
                       help="style scheme: --count of the data set's held-out questions (never trained on), drawn "
                            "with --seed as the tracker draws them")
    pairs.add_argument("--dataset-path", help="with --dataset: a local copy read in place of the hub name")
    pairs.add_argument("--reasoning-opening", default=REASONING_OPENING, help="with questions: the reasoning template")
    pairs.add_argument("--baseline-opening", default=BASELINE_OPENING, help="with questions: the baseline template")
    pairs.add_argument("--reasoning-model", help="style scheme: sample each question's reasoning opening from this model")
    pairs.add_argument("--baseline-model", help="style scheme: sample each question's baseline opening from this model")
    pairs.add_argument("--sample-tokens", type=int, default=16, help="with the two models: new tokens per opening")
    pairs.add_argument("--sample-seed", type=int, help="with the two models: sample with this seed (default: greedy)")
    pairs.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="with the two models")
    pairs.add_argument("--system-prompt")
    pairs.set_defaults(run=pairs_command)

    score = commands.add_parser("score", help="score heads or edges on a pair set")
    score.add_argument("--model", required=True)
    score.add_argument("--pairs", required=True)
    score.add_argument("--out", required=True, help="directory for scores, circuit and heatmap")
    score.add_argument("--method", choices=METHODS, default="eap-ig")
    score.add_argument("--level", choices=LEVELS, default="node")
    score.add_argument("--metric", choices=sorted(METRICS), default="kl")
    score.add_argument("--ig-steps", type=int, default=5)
    score.add_argument("--ig-rule", choices=IG_RULES, default=IG_RULE,
                       help="where eap-ig/ceap place their points: right k/m, left (k-1)/m (hannamw/EAP-IG), midpoint (k-1/2)/m "
                            "(default: %(default)s)")
    score.add_argument("--batch-size", type=int, default=16)
    score.add_argument("--chunk-size", type=int, help="IG points per forward pass (default: all for nodes, one for edges)")
    score.add_argument("--heads", help="exact node patching of these heads only: LAYER.HEAD,...")
    score.add_argument("--top-n", type=int, default=5000, help="edge level: edges kept before pruning")
    score.add_argument("--tau", type=float, default=0.1, help="edge level: relative threshold")
    score.add_argument("--mass", type=float, default=0.5, help="node level: share of |score| the circuit's heads hold")
    score.add_argument("--aggregation", choices=AGGREGATIONS, default="mean_abs",
                       help="per-pair scores to a ranking: mean of |score| or |mean of signed score|")
    score.add_argument("--replicates", type=int, default=100, help="Poisson bootstrap replicates of the pairs")
    score.add_argument("--seed", type=int, default=0, help="seed of the bootstrap weights")
    score.add_argument("--dtype", choices=["float32", "bfloat16", "float64"], default="float32")
    score.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    score.set_defaults(run=score_command)

    compare = commands.add_parser("compare", help="compare tracked runs side by side: HTML report and PNGs")
    compare.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="a tracked run's output directory (or its sparks/)")
    compare.add_argument("--out", required=True, help="a new (or empty) directory for report.html and the PNGs")
    compare.add_argument("--wandb", action="store_true",
                         help="also log the report to W&B: one run of job type compare in the runs' group (offline with WANDB_MODE=offline)")
    compare.add_argument("--project", help="with --wandb: the W&B project (default: sparks; WANDB_PROJECT wins)")
    compare.add_argument("--group", help="with --wandb: the W&B group (default: the one group the runs' tracker configs name; "
                                         "WANDB_RUN_GROUP wins)")
    compare.set_defaults(run=compare_command)

    rescore = commands.add_parser("rescore", help="score a run's saved checkpoints again, beside its live snapshots")
    rescore.add_argument("run_dir", help="a tracked run's output directory, with checkpoint-* directories")
    rescore.add_argument("--name", help="stored as RUN_DIR/rescores/NAME (default: METHOD-LEVEL-METRIC)")
    rescore.add_argument("--force", action="store_true", help="replace an existing rescore of that name")
    rescore.add_argument("--base", help="the base model, scored as step 0 (default: the one a LoRA run's adapters name, "
                                        "else the one run.json records)")
    rescore.add_argument("--pairs", help="another pair file (default: the pairs the run scored)")
    for setting, kind, choices in (
        ("method", str, METHODS), ("level", str, LEVELS), ("metric", str, sorted(METRICS)), ("ig-steps", int, None),
        ("ig-rule", str, IG_RULES), ("num-problems", int, None), ("mass", float, None), ("top-n", int, None),
        ("tau", float, None), ("aggregation", str, AGGREGATIONS), ("replicates", int, None),
        ("confidence", float, None), ("batch-size", int, None), ("chunk-size", int, None),
    ):
        rescore.add_argument(f"--{setting}", type=kind, choices=choices, help="default: the run's tracker setting")
    rescore.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float64"], default="auto",
                         help="default: the dtype the checkpoints were saved in")
    rescore.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    rescore.set_defaults(run=rescore_command)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, IndexError, OSError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"sparks: error: {message}", file=sys.stderr)
        return 2
    return 0
