"""Wall time of `make demo` from a fresh clone, stage by stage, and each stage's share.

Clones the checkout's HEAD into a temporary directory and runs the demo's stages there one after
another, as `make demo` runs them: `make install`, `make base-model` (the tiny base model), `make sft`,
`make grpo`, `make compare`. Prints a Markdown table for BENCHMARKS.md.

    python bench/demo_end_to_end.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = ("install", "base-model", "sft", "grpo", "compare")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="clone into this directory and keep it (default: a temporary one, removed)")
    args = parser.parse_args()
    clone = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="sparks-demo-")) / "sparks"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    seconds: dict[str, float] = {}
    try:
        for stage in STAGES:
            start = time.perf_counter()
            with open(clone.parent / f"{clone.name}-{stage}.log", "w") as log:
                subprocess.run(["make", stage], cwd=clone, stdout=log, stderr=subprocess.STDOUT, check=True)
            seconds[stage] = time.perf_counter() - start
            print(f"{stage}: {seconds[stage]:.0f} s", flush=True)
        report = clone / "outputs/tiny-compare/report.html"
        if not report.is_file():
            raise SystemExit(f"the demo wrote no report at {report}")
    finally:
        if not args.keep:
            shutil.rmtree(clone.parent, ignore_errors=True)
    total = sum(seconds.values())
    print("\n| stage | wall time | share |\n|---|---|---|")
    for stage, value in seconds.items():
        print(f"| `make {stage}` | {value:.0f} s | {value / total:.0%} |")
    print(f"| `make demo`, from a fresh clone | {total:.0f} s ({total / 60:.1f} min) | 100% |")


if __name__ == "__main__":
    main()
