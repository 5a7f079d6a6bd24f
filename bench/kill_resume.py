"""Real kills: SIGKILL `accelerate launch` at random moments of a tracked run, relaunch the same command, compare.

    .venv/bin/python bench/kill_resume.py                 # 5 kills, 30 steps of the tiny SFT recipe from the base model
    .venv/bin/python bench/kill_resume.py --kills 10 --seed 1 --processes 2

One uninterrupted run is the reference. Each trial launches the same command, waits until its first
checkpoint exists, then SIGKILLs the launcher (only the launcher: its worker must die with it) at a
random moment of the rest of the run, checks that no worker survives, and relaunches the very same
command, which resumes from the last checkpoint by itself, until it finishes. The trial's run store
must then hold exactly the reference's contents (runs.store.RunStore.contents: snapshots,
scores, circuits, lineage, events with confidences, metrics, failures, summary). Prints one line per
trial (kill moment, what the relaunch printed about the store, equal or not) and the count of equal stores.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from sparks.runs.store import RunStore

REPO = Path(__file__).resolve().parents[1]

TRAINING = [
    "--num_train_examples", "512", "--per_device_train_batch_size", "8", "--logging_steps", "2",
    "--save_strategy", "steps", "--save_steps", "2", "--report_to", "none", "--lr_scheduler_type", "constant",
    "--warmup_steps", "0", "--tracker", json.dumps({"every": 2, "num_problems": 16, "dashboards": ["none"]}),
]


def command(output_dir: Path, processes: int, max_steps: int) -> list[str]:
    return [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(REPO / "configs/accelerate/cpu.yaml"),
        "--num_processes", str(processes), str(REPO / "train/sft.py"), "--config", str(REPO / "configs/tiny/sft.yaml"),
        "--output_dir", str(output_dir), "--max_steps", str(max_steps), *TRAINING,
    ]


def run_to_end(output_dir: Path, processes: int, max_steps: int) -> tuple[str, float]:
    """Launch until the run finishes; its output, and the seconds it ran after its first checkpoint appeared."""
    log = output_dir.with_name(output_dir.name + ".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as file:
        launcher = subprocess.Popen(command(output_dir, processes, max_steps), stdout=file, stderr=subprocess.STDOUT, cwd=REPO)
        first_checkpoint = None
        while launcher.poll() is None:
            if first_checkpoint is None and (output_dir / "checkpoint-2").is_dir():
                first_checkpoint = time.perf_counter()
            time.sleep(0.05)
    output = log.read_text()
    if launcher.returncode != 0:
        raise SystemExit(f"the run in {output_dir} failed:\n{output[-3000:]}")
    return output, time.perf_counter() - (first_checkpoint or time.perf_counter())


def workers(output_dir: Path) -> list[int]:
    """Pids of training workers writing to ``output_dir``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if entry.name.isdigit() and b"train/sft.py" in b" ".join(argv) and str(output_dir).encode() in argv \
                and not any(b"accelerate" in arg for arg in argv[:3]):
            found.append(int(entry.name))
    return found


def trial(output_dir: Path, processes: int, max_steps: int, kill_after: float) -> tuple[bool, str]:
    """One kill at ``kill_after`` seconds past the first checkpoint, then relaunches to the end."""
    launcher = subprocess.Popen(command(output_dir, processes, max_steps), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    while not (output_dir / "checkpoint-2").is_dir():
        if launcher.poll() is not None:
            raise SystemExit(f"the run in {output_dir} ended before its first checkpoint")
        time.sleep(0.05)
    time.sleep(kill_after)
    finished = launcher.poll() is not None
    launcher.send_signal(signal.SIGKILL)
    launcher.wait()
    deadline = time.monotonic() + 10
    while workers(output_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    orphans = workers(output_dir)
    for pid in orphans:
        os.kill(pid, signal.SIGKILL)
    output, _ = run_to_end(output_dir, processes, max_steps)
    said = [line.removeprefix("sparks: ") for line in output.splitlines() if "resuming" in line]
    note = "ran to the end before the kill" if finished else "; ".join(said) or "no resume line"
    return not orphans, note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--max-steps", type=int, default=30, help="SFT steps (a snapshot and a checkpoint every 2)")
    parser.add_argument("--out", default="outputs/bench-kill-resume")
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "offline")
    out = REPO / args.out
    if out.exists():
        raise SystemExit(f"{out} exists: remove it or pass --out")
    _, seconds = run_to_end(out / "reference", args.processes, args.max_steps)
    reference = RunStore(out / "reference").contents()
    print(f"reference: {len(reference['snapshots'])} snapshots, {seconds:.0f} s after its first checkpoint", flush=True)
    rng = random.Random(args.seed)
    equal = 0
    for index in range(args.kills):
        kill_after = rng.uniform(0.0, seconds)
        output_dir = out / f"trial-{index}"
        no_orphan, note = trial(output_dir, args.processes, args.max_steps, kill_after)
        same = RunStore(output_dir).contents() == reference
        equal += same
        print(f"trial {index}: SIGKILL {kill_after:.1f} s after checkpoint-2; worker died with the launcher: "
              f"{no_orphan}; store equal to the reference: {same}; {note}", flush=True)
    print(f"{equal}/{args.kills} resumed run stores equal the uninterrupted one ({args.processes} process"
          f"{'es' if args.processes > 1 else ''})")


if __name__ == "__main__":
    main()
