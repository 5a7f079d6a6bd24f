"""mypy's errors at a revision and at the working tree, side by side, and what `make lint`'s mypy costs warm
against cold.

    .venv/bin/python bench/type_errors.py --before c31d11f

Checks ``--before`` out into a temporary git worktree and runs this environment's mypy there and here,
each with its tree's ``[tool.mypy]`` (pyproject.toml) and a fresh cache, counting the errors and the
files that hold them; then runs mypy here again on the cache it just filled. A revision before
``src/sparks/`` resolves no sparks import, so its count is not comparable (the first revision laid out
as ``src/sparks/`` is c31d11f).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MYPY = Path(sys.executable).with_name("mypy")


def mypy(tree: Path, cache: Path) -> tuple[int, int, float]:
    """Errors, files holding them and seconds of one mypy run over ``tree`` with ``cache``."""
    started = time.perf_counter()
    result = subprocess.run([str(MYPY), "--cache-dir", str(cache)], cwd=tree, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    summary = re.search(r"Found (\d+) errors? in (\d+) files?", result.stdout)
    if summary:
        return int(summary[1]), int(summary[2]), seconds
    if "Success" not in result.stdout:
        raise SystemExit(f"mypy did not run in {tree}:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return 0, 0, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the revision to count against the working tree")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        old_tree = scratch / "before"
        subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(old_tree), args.before], cwd=REPO, check=True)
        try:
            before = mypy(old_tree, scratch / "cache-before")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=REPO, check=True)
        cold = mypy(REPO, scratch / "cache-after")
        warm = mypy(REPO, scratch / "cache-after")
    print("| tree | mypy errors | in files |")
    print("|---|---|---|")
    print(f"| {args.before} | {before[0]} | {before[1]} |")
    print(f"| working tree | {cold[0]} | {cold[1]} |")
    print(f"mypy here, warm cache against cold: {warm[2]:.1f} s / {cold[2]:.1f} s = {warm[2] / cold[2]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
