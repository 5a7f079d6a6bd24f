"""What one writer per output directory and a store that checks itself cost, against a snapshot's scoring.

    .venv/bin/python bench/store_checks.py                   # the tiny SFT recipe, 36 steps, a snapshot every 3
    .venv/bin/python bench/store_checks.py --steps 72 --every 3

Trains a tracked run of the tiny SFT recipe from the base model (`make base-model`), then, on the store
it wrote and in the same process, times: taking and letting go of the output directory's writer lock
(runs.lock, once per run), the store's self-check (RunStore.damage: every snapshot the lineage
names, run at a relaunch before the model loads and by every `sparks compare` read) and `sparks
compare`'s whole read of the run (analysis.compare.load_run, the check included). Each is printed as
a share of one snapshot's scoring (the mean of the run's own snapshot ``seconds``), measured on the
same machine in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sparks.analysis.compare import load_run
from sparks.runs.lock import lock_output_dir, release
from sparks.runs.store import RunStore, snapshot_dir

REPO = Path(__file__).resolve().parents[1]


def train(output_dir: Path, steps: int, every: int) -> None:
    """A tracked run of the tiny SFT recipe (no dashboards), trained to ``steps``."""
    command = [sys.executable, str(REPO / "train/sft.py"), "--config", str(REPO / "configs/tiny/sft.yaml"),
               "--output_dir", str(output_dir), "--max_steps", str(steps), "--num_train_examples", "1024",
               "--report_to", "none", "--tracker", json.dumps({"every": every, "num_problems": 32, "dashboards": ["none"]})]
    result = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        raise SystemExit(f"the run failed:\n{result.stdout[-3000:]}")


def median_seconds(call: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=36)
    parser.add_argument("--every", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        output_dir = Path(temporary) / "run"
        train(output_dir, args.steps, args.every)
        store = RunStore(output_dir)
        steps = store.lineage().steps
        snapshot = statistics.mean(json.loads((snapshot_dir(store.root, step) / "snapshot.json").read_text())["seconds"]
                                   for step in steps)
        costs = {
            "writer lock (take and let go)": median_seconds(lambda: release(lock_output_dir(output_dir)), args.repeats * 20),
            f"store self-check ({len(steps)} snapshots)": median_seconds(store.damage, args.repeats),
            "sparks compare's read of the run (check included)": median_seconds(lambda: load_run(output_dir), args.repeats),
        }
    print(f"machine: {os.cpu_count()} cores; one snapshot scored in {snapshot:.3f} s (mean of {len(steps)})")
    for name, seconds in costs.items():
        print(f"{name}: {seconds * 1e3:.3f} ms = {seconds / snapshot:.2%} of one snapshot's scoring")


if __name__ == "__main__":
    main()
