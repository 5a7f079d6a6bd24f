"""``sparks compare``: tracked runs side by side, in one HTML report and a PNG per figure, and on W&B with ``--wandb``."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``sparks compare``'s parser, added to ``subparsers``."""
    compare = subparsers.add_parser("compare", help="compare tracked runs side by side: HTML report and PNGs")
    compare.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="a tracked run's output directory (or its sparks/)")
    compare.add_argument("--out", required=True, help="a new (or empty) directory for report.html and the PNGs")
    compare.add_argument("--wandb", action="store_true",
                         help="also log the report to W&B: one run of job type compare in the runs' group (offline with WANDB_MODE=offline)")
    compare.add_argument("--project", help="with --wandb: the W&B project (default: sparks; WANDB_PROJECT wins)")
    compare.add_argument("--group", help="with --wandb: the W&B group (default: the one group the runs' tracker configs name; "
                                         "WANDB_RUN_GROUP wins)")
    compare.set_defaults(run=run)
    return compare


def run(args: argparse.Namespace) -> None:
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
