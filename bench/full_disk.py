"""A real full disk during a tracked run: the store stays whole, training goes on, every reader reads the run.

    sudo mount -t tmpfs -o size=64m tmpfs /mnt/small      # a small file system of your own
    .venv/bin/python bench/full_disk.py --dir /mnt/small

Trains the tiny SFT recipe from the base model (`make base-model`) with its output_dir on ``--dir``.
Once the run store holds its second snapshot, a filler file takes every free byte of the file system
for ``--seconds`` and is then removed, as another job's output would. Then it checks what issue 19
asks of a full disk: the run exits 0; each snapshot that could not be written is listed in
failures.jsonl and absent from lineage.json, events.jsonl and snapshots/; no temporary is left; the
store checks whole (RunStore.damage) and `sparks compare`'s reader reads it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sparks.analysis.compare import load_run
from sparks.runs.store import RunStore

REPO = Path(__file__).resolve().parents[1]


def fill(directory: Path) -> Path:
    """Write a file into ``directory`` until its file system has no byte left; return it."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as file:
        for size in (1 << 20, 1 << 10, 1):
            try:
                while True:
                    file.write(b"\0" * size)
            except OSError:
                pass
    return filler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True, help="a directory on a small file system of its own")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=8.0, help="how long the disk stays full")
    args = parser.parse_args()
    output_dir = Path(args.dir) / "run"
    shutil.rmtree(output_dir, ignore_errors=True)
    command = [sys.executable, str(REPO / "train/sft.py"), "--config", str(REPO / "configs/tiny/sft.yaml"),
               "--output_dir", str(output_dir), "--max_steps", str(args.steps), "--num_train_examples", "1024",
               "--logging_steps", "1", "--report_to", "none",
               "--tracker", json.dumps({"every": 2, "num_problems": 32, "dashboards": ["none"]})]
    log = Path(tempfile.mkdtemp()) / "run.log"  # the console on another disk, as a job scheduler's log is
    with log.open("w") as output:
        run = subprocess.Popen(command, cwd=REPO, stdout=output, stderr=subprocess.STDOUT)
        while run.poll() is None and not (output_dir / "sparks" / "snapshots" / "step-00000002").is_dir():
            time.sleep(0.02)
        filler = fill(Path(args.dir))
        print(f"disk full at {time.strftime('%H:%M:%S')} ({shutil.disk_usage(args.dir).free} bytes free)", flush=True)
        time.sleep(args.seconds)
        filler.unlink()
        run.wait()
    text = log.read_text()
    store = RunStore(output_dir)
    failed = [failure["step"] for failure in store.read("failures.jsonl")]
    lineage = store.lineage().steps
    directories = sorted(int(path.name.removeprefix("step-")) for path in (store.root / "snapshots").iterdir()
                         if not path.name.endswith(".tmp"))
    temporaries = [str(path) for path in store.root.rglob("*.tmp")]
    events = sorted({event["step"] for event in store.read("events.jsonl")})
    checks = {
        "exit status 0": run.returncode == 0,
        "some snapshot failed on the full disk": bool(failed),
        "failed snapshots absent from lineage.json": not set(failed) & set(lineage),
        "snapshots/ holds exactly the lineage": directories == lineage,
        "events.jsonl names only lineage steps": set(events) <= set(lineage),
        "no temporary left": not temporaries,
        "the store checks whole": store.damage() == [],
        "sparks compare's reader reads it": load_run(output_dir).lineage.steps == lineage,
    }
    print(f"exit {run.returncode}; failed snapshots {failed}; lineage {lineage}; temporaries {temporaries}")
    print("\n".join(line for line in text.splitlines() if "snapshot failed" in line or "could not write" in line))
    for name, held in checks.items():
        print(f"{'held' if held else 'BROKEN'}: {name}")
    if not all(checks.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
