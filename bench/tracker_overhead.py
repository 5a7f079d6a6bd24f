"""What the head tracker costs the training it watches: the tiny GRPO demo with and without it.

    .venv/bin/python bench/tracker_overhead.py                  # the full demo, each way once
    .venv/bin/python bench/tracker_overhead.py --repeats 2 --max_steps 100
    .venv/bin/python bench/tracker_overhead.py --tracker '{"num_problems": 128}'   # over the recipe's tracker section

Runs `make demo`'s command (`accelerate launch ... train/grpo.py --config configs/tiny/grpo.yaml`)
with the recipe's tracker (its interval and dashboards, changed by ``--tracker``) and with `--tracker off`, alternating which
goes first in each repeat, each in a fresh process and output directory. Reports the wall-time ratio
(tracked / untracked, median over repeats), and the cost of one snapshot (the scoring time the run
store records per snapshot) against one training step (the untracked run's train_runtime / steps).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def demo(output_dir: Path, tracker: dict | None, max_steps: int | None) -> float:
    """Wall seconds of one demo run, with these tracker settings or without the tracker, into a fresh ``output_dir``."""
    shutil.rmtree(output_dir, ignore_errors=True)  # the scripts refuse to start over a run store, and resume checkpoints
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(REPO / "configs/accelerate/cpu.yaml"),
        str(REPO / "train/grpo.py"), "--config", str(REPO / "configs/tiny/grpo.yaml"), "--output_dir", str(output_dir),
    ]
    if max_steps is not None:
        command += ["--max_steps", str(max_steps)]
    command += ["--tracker", "off" if tracker is None else json.dumps(tracker)]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env={**os.environ, "WANDB_MODE": "offline"})
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"demo run failed:\n{result.stderr[-3000:]}")
    return seconds


def step_seconds(output_dir: Path) -> float:
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    final = next(entry for entry in history if "train_runtime" in entry)
    return final["train_runtime"] / final["step"]


def snapshot_field(output_dir: Path, name: str) -> list[float]:
    """One field of every snapshot.json the tracked run stored."""
    snapshots = sorted((output_dir / "sparks" / "snapshots").glob("step-*/snapshot.json"))
    return [json.loads(path.read_text())[name] for path in snapshots]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--max_steps", type=int, help="shorter runs than the recipe's (default: the recipe's)")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench-tracker")
    parser.add_argument("--tracker", default="{}", help="JSON settings over the recipe's tracker section")
    args = parser.parse_args()
    settings = yaml.safe_load((REPO / "configs/tiny/grpo.yaml").read_text())["tracker"] | json.loads(args.tracker)
    print(f"tracker settings: {json.dumps(settings)}", flush=True)
    walls: dict[bool, list[float]] = {True: [], False: []}
    for repeat in range(args.repeats):
        for tracker in (True, False) if repeat % 2 == 0 else (False, True):
            output_dir = args.out / f"{'tracked' if tracker else 'plain'}-{repeat}"
            walls[tracker].append(demo(output_dir, settings if tracker else None, args.max_steps))
            print(f"repeat {repeat}: {'with' if tracker else 'without'} tracker {walls[tracker][-1]:.1f} s", flush=True)
    ratios = [tracked / plain for tracked, plain in zip(walls[True], walls[False])]
    snapshots = snapshot_field(args.out / "tracked-0", "seconds")
    step = step_seconds(args.out / "plain-0")
    print(f"wall time with / without the tracker: {statistics.median(ratios):.3f} (per repeat: "
          f"{', '.join(f'{ratio:.3f}' for ratio in ratios)})")
    print(f"{len(snapshots)} snapshots, {statistics.mean(snapshots):.2f} s each to score; one training step "
          f"{step:.2f} s; one snapshot / one step: {statistics.mean(snapshots) / step:.2f}")
    floor = {name: statistics.mean(snapshot_field(args.out / "tracked-0", name)) for name in ("null_churn", "stability", "faithfulness")}
    print("mean over the snapshots: " + ", ".join(f"{name} {value:.2f}" for name, value in floor.items()))


if __name__ == "__main__":
    main()
