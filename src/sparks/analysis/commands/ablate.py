"""``sparks ablate``: pass@1 per level with a head set zeroed, mean-ablated or scaled, against matched controls
(analysis.ablate)."""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Any

from sparks.analysis.ablate import INTERVENTIONS, AblationOptions, format_summary, run_ablation
from sparks.analysis.commands.common import add_device_flag, check_draw, finite_float, model_directory, positive_int
from sparks.tasks.evaluation import MODES

DEFAULTS: dict[str, Any] = {field.name: field.default for field in fields(AblationOptions)}
"""The options' defaults, which the flags take (all but ``--device``: the GPU where there is one), so that the
command line and the library run the same ablation."""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``sparks ablate``'s parser, added to ``subparsers``: one flag per field of analysis.ablate.AblationOptions."""
    ablate = subparsers.add_parser("ablate", help="pass@1 per level with a head set zeroed, mean-ablated or scaled, against matched controls")
    ablate.add_argument("--model", required=True, help="the model directory to change (e.g. the base model)")
    chosen = ablate.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--heads", help="the head set: a JSON list of [layer, head] (or sparks score's scores.json), or LAYER.HEAD items")
    chosen.add_argument("--from-run", help="a tracked run's output directory: its final circuit, or see --emergent, --step")
    which = ablate.add_mutually_exclusive_group()
    which.add_argument("--emergent", action="store_true", help="with --from-run: its emergent heads at the last snapshot")
    which.add_argument("--step", type=int, help="with --from-run: its circuit at this snapshot step")
    ablate.add_argument("--base-heads", help="with --heads: the base model's circuit heads, the second control")
    ablate.add_argument("--mode", choices=INTERVENTIONS, required=True)
    ablate.add_argument("--factor", type=finite_float, help="with --mode scale: the factor (the paper: 1.3 and 0.5)")
    ablate.add_argument("--controls", type=positive_int, default=DEFAULTS["controls"], help="random head sets matched in size and layers")
    ablate.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULTS["seeds"]), help="sampling seeds")
    ablate.add_argument("--temperature", type=finite_float, default=DEFAULTS["temperature"],
                        help="sampling temperature (default: the tiny GRPO recipe's); with one seed, omit for greedy")
    ablate.add_argument("--greedy", dest="temperature", action="store_const", const=None, help="greedy decoding (one seed)")
    ablate.add_argument("--style", choices=MODES, default=DEFAULTS["style"], help="prompt style: free (the model's choice), think or direct")
    ablate.add_argument("--problems", help="a real data set's problems: JSONL with question, answer and an optional level, "
                                           "checked with math-verify as the accuracy reward does")
    ablate.add_argument("--split", choices=("test", "probe"), default=DEFAULTS["split"], help="arithmetic world split")
    ablate.add_argument("--levels", type=int, nargs="+", default=list(DEFAULTS["levels"]))
    ablate.add_argument("--per-level", type=positive_int, default=DEFAULTS["per_level"], help="arithmetic problems per level")
    ablate.add_argument("--seed", type=int, default=DEFAULTS["seed"], help="seed of the problem draw and of the random controls")
    ablate.add_argument("--system-prompt")
    ablate.add_argument("--max-new-tokens", type=positive_int, default=DEFAULTS["max_new_tokens"])
    ablate.add_argument("--batch-size", type=positive_int, default=DEFAULTS["batch_size"])
    ablate.add_argument("--out", help="a new directory for the result (default with --from-run: RUN_DIR/ablations/NAME)")
    ablate.add_argument("--name", help="with --from-run and no --out: NAME (default: HEADS-MODEFACTOR, e.g. emergent-scale1.3)")
    ablate.add_argument("--dtype", choices=["float32", "bfloat16"], default=DEFAULTS["dtype"])
    add_device_flag(ablate)
    ablate.set_defaults(run=run)
    return ablate


def options(args: argparse.Namespace) -> AblationOptions:
    """The ablation the flags ask for."""
    given = {field.name: getattr(args, field.name) for field in fields(AblationOptions)}
    return AblationOptions(**given | {"seeds": tuple(args.seeds), "levels": tuple(args.levels)})


def run(args: argparse.Namespace) -> None:
    """pass@1 with the head set changed against matched controls (analysis.ablate), checked before any generation."""
    check_draw("--per-level", args.per_level, args.split, args.levels, per_level=True)
    model_directory(args.model, tokenizer=True)
    out, result = run_ablation(options(args))
    print(format_summary(result, result["levels"]))
    print(f"wrote {out}")
