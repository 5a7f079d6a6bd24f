"""``sparks score``: score heads or edges of a saved model on a pair set, and write the scores, the circuit and
a heatmap."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from sparks.analysis.ablate import parse_heads
from sparks.analysis.commands.common import add_device_flag, has_tokenizer, model_directory
from sparks.dashboards.plots import head_heatmap, save_png
from sparks.probes.architectures import check_family
from sparks.probes.circuit_scoring import score_circuit
from sparks.probes.pairs import load_pairs_for_model
from sparks.probes.spec import add_flags, from_flags

SCORE_FLAGS = ("method", "level", "metric", "ig_steps", "ig_rule", "batch_size", "chunk_size", "aggregation", "mass",
               "top_n", "tau", "replicates", "seed")
"""The scoring spec's settings ``sparks score`` takes as flags."""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``sparks score``'s parser, added to ``subparsers``."""
    score = subparsers.add_parser("score", help="score heads or edges on a pair set")
    score.add_argument("--model", required=True)
    score.add_argument("--pairs", required=True)
    score.add_argument("--out", required=True, help="directory for scores, circuit and heatmap")
    add_flags(score, SCORE_FLAGS)
    score.add_argument("--heads", help="exact node patching of these heads only: LAYER.HEAD,...")
    score.add_argument("--dtype", choices=["float32", "bfloat16", "float64"], default="float32")
    add_device_flag(score)
    score.set_defaults(run=run)
    return score


def run(args: argparse.Namespace) -> None:
    """Score heads or edges; every check (pair file, heads, finite scores) passes before ``--out`` is written."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    spec = from_flags(args, SCORE_FLAGS)
    heads = None if args.heads is None else parse_heads(args.heads, "--heads")
    model_dir = model_directory(args.model)
    # A weights-only directory is scored on the pair file's ids, with no tokenizer to check them against.
    tokenizer = AutoTokenizer.from_pretrained(model_dir) if has_tokenizer(model_dir) else None
    pairs = load_pairs_for_model(args.pairs, model_dir, tokenizer)
    check_family(AutoConfig.from_pretrained(model_dir).model_type, args.level)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, args.dtype))
    model.to(args.device)
    scored = score_circuit(model, pairs, spec, pad_id=model.config.pad_token_id or 0, heads=heads, name=args.model)
    scores, stats = scored.scores, scored.stats
    assert stats.faithfulness_interval is not None, "score_circuit measures faithfulness"
    faithfulness_interval = stats.faithfulness_interval
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
        "faithfulness_interval": plain(torch.tensor([faithfulness_interval]))[0],
    }
    (out / "scores.json").write_text(json.dumps(summary, indent=1))
    title = f"{Path(args.model).name}: {args.method} {args.level} {args.metric}, {len(pairs)} pairs"
    save_png(head_heatmap(stats.importance.float().numpy(), title, marked=stats.circuit.heads), out / "heatmap.png")
    low, high = faithfulness_interval
    print(f"scored {len(pairs)} pairs; {len(stats.circuit.heads)} heads in the circuit (stability {stats.stability:.2f}, "
          f"faithfulness {stats.faithfulness:.2f} [{low:.2f}, {high:.2f}], null churn {stats.null_churn:.1f} heads); wrote {out}")
