"""One writer per output directory (runs.lock): a second training, a second rescore of one name, or a
launch on two processes into a directory another process writes is refused before it touches anything,
naming the holder; a lock left by a killed process blocks nobody."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import sparks.train.preparation
from sparks.analysis.cli import main
from sparks.analysis.compare import load_run
from sparks.callbacks.config import TrackerConfig
from sparks.probes.pairs import Pair
from sparks.runs.lock import LOCK_FILE, DirectoryTaken, acquire, holds, release
from sparks.runs.store import RunStore
from tests.callbacks.test_tracker_distributed import last_line, launch
from tests.callbacks.training_runs import REPO, SMALL_SFT, lineage_of, run_sft

pytestmark = pytest.mark.hostile
TRACKER = {"every": 2, "num_problems": 16, "dashboards": ["none"]}
HOLD = ("import sys, time; from pathlib import Path; from sparks.runs.lock import acquire; "
        "acquire(Path(sys.argv[1]), 'held'); print('held', flush=True); time.sleep(600)")


@contextmanager
def held_elsewhere(path: Path) -> Iterator[subprocess.Popen]:
    """The lock file ``path`` held by another process, for as long as the block runs."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def tree(directory: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``directory`` with its size and modification time."""
    return {str(path.relative_to(directory)): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in sorted(directory.rglob("*")) if path.is_file()}


def test_a_training_launched_while_another_writes_its_output_dir_is_refused_and_the_first_runs_whole(
        random_model_dir, tmp_path, monkeypatch, capsys):
    """The issue's race: a resubmitted job (another seed) starts while the first scores its base snapshot."""
    output_dir, log = tmp_path / "run", tmp_path / "first.log"
    command = [sys.executable, str(REPO / "train/sft.py"), "--config", str(REPO / "configs/tiny/sft.yaml"),
               "--model_name_or_path", str(random_model_dir), "--output_dir", str(output_dir), "--max_steps", "8",
               *SMALL_SFT, "--use_cpu", "true", "--tracker", json.dumps(TRACKER)]
    with log.open("w") as output:
        first = subprocess.Popen(command, cwd=REPO, stdout=output, stderr=subprocess.STDOUT,
                                 env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        while not (output_dir / "sparks" / "run.json").is_file() and first.poll() is None:
            time.sleep(0.05)  # run.json is written at train begin, before the base snapshot is scored
        monkeypatch.setattr(sparks.train.preparation, "load_model", lambda *args: pytest.fail("the second run loaded a model"))
        with pytest.raises(SystemExit) as stopped:
            run_sft(random_model_dir, output_dir, 8, {**TRACKER, "seed": 1})
        assert stopped.value.code == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith(f"sparks: error: output_dir: {output_dir}: another process writes there: "
                                f"process {first.pid} on "), error
        assert "sft.py" in error and len(error.splitlines()) == 1
    finally:
        first.wait(timeout=600)
    assert first.returncode == 0, log.read_text()[-3000:]
    store = RunStore(output_dir)
    assert [record["step"] for record in store.read("metrics.jsonl")] == list(range(1, 9))  # one series, each step once
    assert lineage_of(output_dir).steps == [0, 2, 4, 6, 8]
    assert json.loads((store.root / "run.json").read_text())["config"]["seed"] == 0
    load_run(output_dir)
    assert not (output_dir / LOCK_FILE).exists()  # let go at the end


def test_a_held_output_dir_is_refused_on_every_rank_of_a_two_process_launch(random_model_dir, tmp_path):
    (tmp_path / "checkpoint-2").mkdir()
    (tmp_path / "checkpoint-2" / "trainer_state.json").write_text('{"global_step": 2, "max_steps": 8}')
    before = tree(tmp_path)
    with held_elsewhere(tmp_path / LOCK_FILE) as holder:
        result = launch(random_model_dir, tmp_path, 2, check=False)
        assert tree(tmp_path) == {**before, LOCK_FILE: tree(tmp_path)[LOCK_FILE]}  # nothing else touched
    assert result.returncode != 0
    assert last_line(result).startswith(f"sparks: error: output_dir: {tmp_path}: another process writes there: "
                                        f"process {holder.pid} on "), result.stdout[-3000:]
    assert len([line for line in result.stdout.splitlines() if line.startswith("sparks: error:")]) == 2  # its own, then last
    assert "sparks: resuming" not in result.stdout and not (tmp_path / "sparks").exists()


def test_a_lock_left_by_a_killed_process_blocks_no_one(tmp_path):
    path = tmp_path / LOCK_FILE
    with held_elsewhere(path) as holder:
        with pytest.raises(DirectoryTaken, match=f"^output_dir: here: another process writes there: process {holder.pid} on "):
            acquire(path, "output_dir: here")
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert path.is_file()  # what a SIGKILL leaves behind: the file, no longer locked
    lock = acquire(path, "output_dir: here")
    assert holds(path) and acquire(path, "output_dir: here") is lock  # taken again by its holder, not refused
    release(lock)
    assert path.is_file() and holds(path)
    release(lock)
    assert not path.exists() and not holds(path)


def test_a_rescore_while_another_rescore_of_that_name_runs_is_refused(tmp_path, capsys):
    run_dir = tmp_path / "run"
    RunStore(run_dir).start({"config": TrackerConfig(dashboards=("none",)).as_dict(), "job_type": "sft", "pairs": 1,
                             "model": {}}, [Pair("clean", "corrupted", [1, 2, 3], [1, 2, 4], [2])])
    (run_dir / "checkpoint-2").mkdir()
    (run_dir / "checkpoint-2" / "config.json").write_text("{}")
    before = tree(run_dir)
    with held_elsewhere(run_dir / "rescores" / ".again.lock") as holder:
        assert main(["rescore", str(run_dir), "--name", "again", "--base", str(run_dir)]) == 2
        after = tree(run_dir)
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"sparks: error: --name: the rescore {run_dir / 'rescores' / 'again'}: another process writes "
                            f"there: process {holder.pid} on ")
    assert after == {**before, "rescores/.again.lock": after["rescores/.again.lock"]}


def test_the_tracker_in_a_trainer_of_ones_own_takes_the_lock_at_train_begin(random_model_dir, tmp_path):
    """Outside the training scripts (a HeadTrackerCallback added to any Trainer), the tracker itself holds the lock."""
    from transformers import AutoModelForCausalLM, TrainerState, TrainingArguments

    from sparks.callbacks.tracker import HeadTrackerCallback
    from sparks.runs.lock import output_dir_lock

    model = AutoModelForCausalLM.from_pretrained(random_model_dir)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    tracker = HeadTrackerCallback(TrackerConfig(num_problems=8, dashboards=("none",)), pairs=[])
    with held_elsewhere(output_dir_lock(tmp_path)) as holder:
        with pytest.raises(DirectoryTaken, match=f"^output_dir: {tmp_path}: another process writes there: process {holder.pid} "):
            tracker._open(args, TrainerState(), model)
        assert not (tmp_path / "sparks").exists()
    tracker._open(args, TrainerState(), model)
    assert holds(output_dir_lock(tmp_path)) and tracker._lock is not None
    release(tracker._lock)
    assert not output_dir_lock(tmp_path).exists()
