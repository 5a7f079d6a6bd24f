"""``sparks rescore``: score a tracked run's saved checkpoints again, beside its live snapshots (analysis.rescore)."""

from __future__ import annotations

import argparse

from sparks.analysis.commands.common import add_device_flag
from sparks.callbacks.config import RESCORE_SETTINGS, TrackerConfig
from sparks.probes.spec import add_flags


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``sparks rescore``'s parser, added to ``subparsers``: a scoring setting left out keeps the run's."""
    rescore = subparsers.add_parser("rescore", help="score a run's saved checkpoints again, beside its live snapshots")
    rescore.add_argument("run_dir", help="a tracked run's output directory, with checkpoint-* directories")
    rescore.add_argument("--name", help="stored as RUN_DIR/rescores/NAME (default: METHOD-LEVEL-METRIC)")
    rescore.add_argument("--force", action="store_true", help="replace an existing rescore of that name")
    rescore.add_argument("--base", help="the base model, scored as step 0 (default: the one a LoRA run's adapters name, "
                                        "else the one run.json records)")
    rescore.add_argument("--pairs", help="another pair file (default: the pairs the run scored)")
    add_flags(rescore, RESCORE_SETTINGS, TrackerConfig, defaults=False,
              helps={name: "default: the run's tracker setting" for name in RESCORE_SETTINGS})
    rescore.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float64"], default="auto",
                         help="default: the dtype the checkpoints were saved in")
    add_device_flag(rescore)
    rescore.set_defaults(run=run)
    return rescore


def run(args: argparse.Namespace) -> None:
    """Rescore the run with the settings given as flags changed."""
    from sparks.analysis.rescore import rescore

    changes = {setting: value for setting in RESCORE_SETTINGS if (value := getattr(args, setting)) is not None}
    out = rescore(args.run_dir, changes, pairs=args.pairs, name=args.name, base=args.base, force=args.force,
                  dtype=args.dtype, device=args.device)
    print(f"wrote {out}")
