"""The run store across crashes and relaunches: every kill point resumes to the uninterrupted run.

A kill is injected as an exception no handler catches (``Killed``) at the chosen moment; the same
command is then launched again over the same output directory, and the script resumes from the
last checkpoint by itself. The store must then equal the store of one uninterrupted run with the
same seed: snapshots, events with their confidences, failures, logged metrics and summary.
"""

from __future__ import annotations

import errno
import json
import os
import pathlib
import shutil
from pathlib import Path

import pytest
from safetensors import SafetensorError
from transformers import TrainerCallback

import sparks.callbacks.snapshot
import sparks.probes.circuit_scoring
import sparks.runs.store
import sparks.train.preparation
from sparks.analysis.compare import load_run
from sparks.callbacks.config import LINEAGE_SETTINGS
from sparks.runs.store import RunStore
from sparks.train import sft as train_sft
from sparks.train.run import resumable_checkpoint
from tests.callbacks.training_runs import history, lineage_of, run_sft

pytestmark = pytest.mark.hostile
TRACKER = {"every": 2, "num_problems": 16, "dashboards": ["none"]}
STEPS = 6
SAVING = ("--save_strategy", "steps", "--save_steps", "2", "--logging_steps", "2")
"""Checkpoints and logs at 2, 4 and 6. (With logs between checkpoints the trainer's own logged
averages restart at a resumed checkpoint, so the reward windows would differ for that reason.)"""


class Killed(BaseException):
    """A kill: nothing in the trainer or the tracker catches it, as nothing survives a SIGKILL."""


def train(model_dir: Path, output_dir: Path, tracker: dict = TRACKER, *overrides: str) -> None:
    run_sft(model_dir, output_dir, STEPS, tracker, *SAVING, *overrides)


def killed(model_dir: Path, output_dir: Path) -> None:
    with pytest.raises(Killed):
        train(model_dir, output_dir)


@pytest.fixture(scope="module")
def uninterrupted(random_model_dir, tmp_path_factory) -> dict:
    output_dir = tmp_path_factory.mktemp("uninterrupted")
    train(random_model_dir, output_dir)
    contents = RunStore(output_dir).contents()
    assert lineage_of(output_dir).steps == [0, 2, 4, 6] and contents["failures"] == []
    return contents


def kill_when(monkeypatch, target: object, name: str, when) -> None:
    """Make ``target.name`` raise Killed on the call for which ``when(*args, **kwargs)`` holds, once."""
    real = getattr(target, name)
    fired = []

    def wrapper(*args, **kwargs):
        if not fired and when(*args, **kwargs):
            fired.append(True)
            raise Killed
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, wrapper)


class KillAfterCheckpoint(TrainerCallback):
    """Dies right after the trainer wrote the checkpoint of ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise Killed


def with_callback(monkeypatch, callback: TrainerCallback) -> None:
    """Add ``callback`` after the tracker in the SFT script's next run."""
    real = train_sft.tracker_callbacks
    monkeypatch.setattr(train_sft, "tracker_callbacks", lambda *args: real(*args) + [callback])


@pytest.mark.parametrize("step", [4, STEPS])
def test_kill_after_a_checkpoint_resumes_to_the_uninterrupted_run(random_model_dir, tmp_path, monkeypatch,
                                                                  uninterrupted, step, capsys):
    with monkeypatch.context() as patch:
        with_callback(patch, KillAfterCheckpoint(step))
        killed(random_model_dir, tmp_path)
    assert lineage_of(tmp_path).steps == list(range(0, step + 1, 2))  # recorded before the checkpoint was written
    capsys.readouterr()
    train(random_model_dir, tmp_path)
    resumed_from = 4 if step == STEPS else step  # the last step's checkpoint is passed over
    assert f"sparks: resuming from {tmp_path / f'checkpoint-{resumed_from}'}" in capsys.readouterr().out
    assert RunStore(tmp_path).contents() == uninterrupted


def test_the_checkpoint_resumed_from_is_the_newest_whole_one_short_of_the_last_step(tmp_path):
    def checkpoint(step: int, state: str | None) -> None:
        (tmp_path / f"checkpoint-{step}").mkdir()
        if state is not None:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(state)

    assert resumable_checkpoint(str(tmp_path)) == (None, [])
    checkpoint(6, json.dumps({"global_step": 6, "max_steps": 6}))
    assert resumable_checkpoint(str(tmp_path)) == (str(tmp_path / "checkpoint-6"), [])  # the only one
    checkpoint(2, json.dumps({"global_step": 2, "max_steps": 6}))
    checkpoint(4, json.dumps({"global_step": 4, "max_steps": 6}))
    checkpoint(8, '{"global_st')  # a kill while it was written
    assert resumable_checkpoint(str(tmp_path)) == (str(tmp_path / "checkpoint-4"), [
        "checkpoint-8 is incomplete (no readable trainer_state.json)",
        "checkpoint-6 is the run's last step, where transformers would train one step too many; its last segment "
        "is trained again"])


def test_a_snapshot_of_a_step_that_logs_nothing_is_stored_before_its_checkpoint(random_model_dir, tmp_path,
                                                                              monkeypatch, capsys):
    sparse_logs = ("--logging_steps", "3")
    with monkeypatch.context() as patch:
        with_callback(patch, KillAfterCheckpoint(4))
        with pytest.raises(Killed):
            train(random_model_dir, tmp_path, TRACKER, *sparse_logs)
    assert lineage_of(tmp_path).steps == [0, 2, 4]
    train(random_model_dir, tmp_path, TRACKER, *sparse_logs)
    assert "scoring it again" not in capsys.readouterr().out
    assert lineage_of(tmp_path).steps == [0, 2, 4, 6] and RunStore(tmp_path).read("failures.jsonl") == []


def test_a_store_behind_its_checkpoint_scores_the_missing_snapshot_again(random_model_dir, tmp_path, monkeypatch,
                                                                        uninterrupted, capsys):
    with monkeypatch.context() as patch:
        with_callback(patch, KillAfterCheckpoint(4))
        killed(random_model_dir, tmp_path)
    store = RunStore(tmp_path)  # the store as a crash between checkpoint-4 and its snapshot leaves it
    (store.root / "lineage.json").write_text(json.dumps(lineage_of(tmp_path).until(2).state_dict()))
    train(random_model_dir, tmp_path)
    assert "the run store lacks this step's snapshot; scoring it again" in capsys.readouterr().out
    assert RunStore(tmp_path).contents() == uninterrupted


@pytest.mark.parametrize("moment", ["staging", "renaming"])
def test_kill_during_a_snapshot_write_resumes_to_the_uninterrupted_run(random_model_dir, tmp_path, monkeypatch,
                                                                       uninterrupted, moment):
    with monkeypatch.context() as patch:
        if moment == "staging":  # the snapshot's files half written
            kill_when(patch, sparks.runs.store.Circuit, "save", lambda circuit, path: "step-00000004" in str(path))
        else:  # its directory in place, the lineage not yet committed
            kill_when(patch, os, "replace", lambda source, target: str(target).endswith("sparks/events.jsonl")
                      and (Path(target).parent / "snapshots" / "step-00000004").is_dir())
        killed(random_model_dir, tmp_path)
    assert lineage_of(tmp_path).steps == [0, 2]
    train(random_model_dir, tmp_path)
    assert RunStore(tmp_path).contents() == uninterrupted


def test_kill_during_an_append_leaves_a_torn_line_that_resume_drops_and_reports(random_model_dir, tmp_path,
                                                                              monkeypatch, uninterrupted, capsys):
    real_open = pathlib.Path.open
    appends = []

    def open_then_die(path, mode="r", *args, **kwargs):
        if path.name == "metrics.jsonl" and mode == "a":
            appends.append(path)
            if len(appends) == 2:  # the log of step 4, before checkpoint-4
                with real_open(path, mode, *args, **kwargs) as file:
                    file.write('{"step": 4, "lo')
                raise Killed
        return real_open(path, mode, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(pathlib.Path, "open", open_then_die)
        killed(random_model_dir, tmp_path)
    assert (RunStore(tmp_path).root / "metrics.jsonl").read_text().endswith('\n{"step": 4, "lo')
    capsys.readouterr()
    train(random_model_dir, tmp_path)
    assert "dropped line 2 of metrics.jsonl, not a whole record" in capsys.readouterr().out
    assert RunStore(tmp_path).contents() == uninterrupted


def test_kill_during_a_resume_resumes_again(random_model_dir, tmp_path, monkeypatch, uninterrupted):
    with monkeypatch.context() as patch:
        with_callback(patch, KillAfterCheckpoint(4))
        killed(random_model_dir, tmp_path)
    with monkeypatch.context() as patch:  # metrics.jsonl rewritten, the lineage not yet
        kill_when(patch, sparks.runs.store, "_write_text", lambda path, text: path.name == "failures.jsonl")
        killed(random_model_dir, tmp_path)
    train(random_model_dir, tmp_path)
    assert RunStore(tmp_path).contents() == uninterrupted


def test_a_relaunch_without_a_checkpoint_is_refused_and_the_lineage_kept(random_model_dir, tmp_path, monkeypatch, capsys):
    run_sft(random_model_dir, tmp_path, 2, TRACKER)
    before = {path: path.read_bytes() for path in (tmp_path / "sparks").rglob("*") if path.is_file()}
    monkeypatch.setattr(sparks.train.preparation, "load_model", lambda *args: pytest.fail("the model must not load"))
    with pytest.raises(SystemExit) as stop:
        run_sft(random_model_dir, tmp_path, 2, TRACKER)
    assert stop.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == (f"sparks: error: output_dir: {tmp_path / 'sparks'} holds the head lineage of an earlier run and this "
                    f"run starts at step 0; it has no checkpoint to resume from (save_strategy steps makes them): move it "
                    f"away to start over, or set --output_dir to a new directory")
    assert {path: path.read_bytes() for path in (tmp_path / "sparks").rglob("*") if path.is_file()} == before


def test_resuming_with_other_lineage_settings_is_refused_before_the_model_loads(random_model_dir, tmp_path, monkeypatch,
                                                                                capsys):
    with monkeypatch.context() as patch:
        with_callback(patch, KillAfterCheckpoint(2))
        killed(random_model_dir, tmp_path)
    before = (tmp_path / "sparks" / "lineage.json").read_text()
    with monkeypatch.context() as patch:
        patch.setattr(sparks.train.preparation, "load_model", lambda *args: pytest.fail("the model must not load"))
        for changed, name in (({"num_problems": 12}, "num_problems"), ({"scheme": "style"}, "scheme"),
                              ({"replicates": 50}, "replicates")):
            with pytest.raises(SystemExit):
                train(random_model_dir, tmp_path, TRACKER | changed)
            line = capsys.readouterr().err.strip().splitlines()[-1]
            assert line.startswith(f"sparks: error: tracker.{name}: the run store at {tmp_path / 'sparks'} was scored with")
    assert (tmp_path / "sparks" / "lineage.json").read_text() == before
    train(random_model_dir, tmp_path, TRACKER | {"pictures_every": 3})  # a setting the lineage does not depend on
    assert RunStore(tmp_path).run()["resumes"] == [{"step": 2, "changed": {"pictures_every": [1, 3]}}]
    assert lineage_of(tmp_path).steps == [0, 2, 4, 6]


def test_other_probe_pairs_or_heads_are_refused_at_train_begin(random_model_dir, tmp_path, monkeypatch, capsys):
    with monkeypatch.context() as patch:
        with_callback(patch, KillAfterCheckpoint(2))
        killed(random_model_dir, tmp_path)
    store = RunStore(tmp_path)
    pairs = store.root / "pairs.jsonl"
    lines = pairs.read_text().splitlines()
    pairs.write_text("\n".join(lines[1:]) + "\n")  # as if another tokenizer built fewer pairs
    with pytest.raises(SystemExit) as stop:
        train(random_model_dir, tmp_path)
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("sparks: error: tracker.pairs: the probe pairs differ")
    assert lineage_of(tmp_path).steps == [0, 2]


class DiskFull:
    """Every write under the run store fails while ``full`` is set, as on a full disk: Python's writes with
    ENOSPC, safetensors' with its own error type (what it raises there; not an OSError)."""

    def __init__(self, monkeypatch, root: Path) -> None:
        self.root, self.full = str(root), False
        for owner, name in ((pathlib.Path, "open"), (pathlib.Path, "write_text")):
            monkeypatch.setattr(owner, name, self.guard(getattr(owner, name), lambda path: OSError(
                errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))))
        monkeypatch.setattr(sparks.runs.store, "save_file", self.guard(sparks.runs.store.save_file, lambda path: (
            SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"))))

    def guard(self, real, error):
        def write(*args, **kwargs):
            path = args[1] if real.__name__ == "save_file" else args[0]
            mode = args[1] if len(args) > 1 and isinstance(args[1], str) and real.__name__ == "open" else kwargs.get("mode", "w")
            if self.full and str(path).startswith(self.root) and (real.__name__ != "open" or "r" not in mode):
                if real.__name__ == "save_file":
                    with open(path, "wb") as file:  # what a write cut short leaves
                        file.write(b"\0" * 64)
                raise error(path)
            return real(*args, **kwargs)

        return write


class FillDisk(TrainerCallback):
    """Fills the disk when step ``start`` ends and frees it when step ``stop`` begins."""

    def __init__(self, disk: DiskFull, start: int, stop: int) -> None:
        self.disk, self.start, self.stop = disk, start, stop

    def on_step_end(self, args, state, control, **kwargs):
        self.disk.full = self.disk.full or state.global_step == self.start

    def on_step_begin(self, args, state, control, **kwargs):
        self.disk.full = self.disk.full and state.global_step != self.stop - 1


def test_a_full_disk_is_a_printed_recorded_failure_and_the_store_stays_whole(random_model_dir, tmp_path, monkeypatch,
                                                                              capsys, uninterrupted):
    disk = DiskFull(monkeypatch, tmp_path / "sparks")
    real = train_sft.tracker_callbacks
    monkeypatch.setattr(train_sft, "tracker_callbacks", lambda *args: [FillDisk(disk, 2, 4), *real(*args)])
    run_sft(random_model_dir, tmp_path, STEPS, TRACKER, "--logging_steps", "1")
    out = capsys.readouterr().out
    assert ("sparks: step 2: the head snapshot failed: could not write the run store (Error while serializing: I/O error: "
            "No space left on device (os error 28)); this snapshot is not in the lineage") in out
    assert "sparks: step 2: could not write failures.jsonl" in out and "could not write metrics.jsonl" in out
    store = RunStore(tmp_path)
    assert lineage_of(tmp_path).steps == [0, 4, 6]
    assert [failure["step"] for failure in store.read("failures.jsonl")] == [2]  # written once the disk had room
    assert [record["step"] for record in store.read("metrics.jsonl")] == list(range(1, STEPS + 1))
    assert sorted(path.name for path in (store.root / "snapshots").iterdir()) == [
        "step-00000000", "step-00000004", "step-00000006"]  # no temporary left behind
    assert [path.name for path in store.root.iterdir() if path.name.endswith(".tmp")] == []
    assert [event["step"] for event in store.read("events.jsonl")] == [event["step"] for event in lineage_of(tmp_path).events]
    assert store.damage() == [] and load_run(tmp_path).lineage.steps == [0, 4, 6]  # every reader reads the run


def test_a_model_that_produces_nan_gets_a_printed_recorded_failure_and_no_snapshot(random_model_dir, tmp_path,
                                                                                   monkeypatch, capsys):
    real = sparks.probes.circuit_scoring.score_pairs

    def nan_scores(*args, **kwargs):
        scores = real(*args, **kwargs)
        return {name: value.fill_(float("nan")) if name == "heads" else value for name, value in scores.items()}

    monkeypatch.setattr(sparks.probes.circuit_scoring, "score_pairs", nan_scores)
    run_sft(random_model_dir, tmp_path, 2, TRACKER)
    out = capsys.readouterr().out
    assert "sparks: step 0: the head snapshot failed: " in out and "non-finite head scores" in out
    store = RunStore(tmp_path)
    assert [failure["step"] for failure in store.read("failures.jsonl")] == [0, 2]
    assert all("non-finite" in failure["error"] for failure in store.read("failures.jsonl"))
    assert not store.holds_lineage() and list((store.root / "snapshots").iterdir()) == []


def test_resume_reads_torn_lines_keeps_whole_records_and_writes_nothing_before_it_has_read(tmp_path):
    store = RunStore(tmp_path)
    store.root.mkdir()
    (store.root / "failures.jsonl").write_text('{"step": 1, "error": "x", "traceback": "x"}\n{"step": 2, "err')
    records, notes = store._records("failures.jsonl")
    assert records == [{"step": 1, "error": "x", "traceback": "x"}]
    assert notes == ["dropped line 2 of failures.jsonl, not a whole record (16 characters: a torn write)"]
    (store.root / "lineage.json").write_text('{"version": 2, "level": 0.9, "snaps')
    (store.root / "run.json").write_text(json.dumps({"format": "sparks-run", "version": 2, "config": {}}))
    with pytest.raises(sparks.runs.store.RunStoreError, match=r"lineage.json: unreadable .*set --output_dir"):
        store.resume(3, [])
    assert (store.root / "failures.jsonl").read_text().endswith('{"step": 2, "err')  # untouched


def test_a_store_from_before_ig_rule_resumes_as_scored_with_the_right_rule(tmp_path):
    """Stores written before ``ig_rule`` existed were scored at k/m, k = 1..m: resuming them keeps that rule."""
    config = {name: None for name in LINEAGE_SETTINGS if name != "ig_rule"}
    store = sparks.runs.store.RunStore(tmp_path)
    store.start({"config": config}, [])
    assert store.check_settings(config | {"ig_rule": "right"}, LINEAGE_SETTINGS) == {}
    with pytest.raises(sparks.runs.store.RunStoreError, match=r"^tracker.ig_rule: .* scored with 'right', this run asks for 'midpoint'"):
        store.check_settings(config | {"ig_rule": "midpoint"}, LINEAGE_SETTINGS)


def test_a_v2_store_reads_and_a_newer_one_is_refused_in_one_line(tmp_path):
    """v3 only adds to run.json (base_model, rescore), so a v2 store still reads; a store written by a
    newer sparks says to upgrade rather than being misread."""
    store = sparks.runs.store.RunStore(tmp_path)
    store.root.mkdir(parents=True)
    for version in (2, 3):
        (store.root / "run.json").write_text(json.dumps({"format": "sparks-run", "version": version, "config": {}}))
        assert store.run()["version"] == version
    (store.root / "run.json").write_text(json.dumps({"format": "sparks-run", "version": 4, "config": {}}))
    with pytest.raises(sparks.runs.store.RunStoreError, match=r"v4 run store, written by a newer sparks; .* upgrade"):
        store.run()
    (store.root / "run.json").write_text(json.dumps({"format": "other", "version": 3}))
    with pytest.raises(sparks.runs.store.RunStoreError, match="not a sparks-run run store"):
        store.run()


# -- a store that checks itself, and where a resume starts ---------------------------------------------


def whole_run(model_dir: Path, output_dir: Path) -> None:
    """The uninterrupted run's training, kept: checkpoints at 2, 4 and 6."""
    train(model_dir, output_dir)
    assert lineage_of(output_dir).steps == [0, 2, 4, 6]


@pytest.mark.parametrize("step", [2, 4])
def test_a_snapshot_removed_by_hand_is_scored_again_on_relaunch(random_model_dir, tmp_path, uninterrupted, step, capsys):
    whole_run(random_model_dir, tmp_path)
    snapshot = tmp_path / "sparks" / "snapshots" / f"step-{step:08d}"
    shutil.rmtree(snapshot)
    capsys.readouterr()
    train(random_model_dir, tmp_path)
    out = capsys.readouterr().out
    if step == 2:  # the automatic resume (checkpoint-4) moves back to the checkpoint of the hole
        assert (f"sparks: {snapshot}: missing (the lineage names this snapshot); resuming from {tmp_path / 'checkpoint-2'} "
                f"instead, to score it again (steps 2 to 4 are trained again, to the same weights)") in out
    assert f"{snapshot}: missing (the lineage names this snapshot): dropped this snapshot and those after it" in out
    assert RunStore(tmp_path).contents() == uninterrupted


def test_a_damaged_snapshot_is_named_by_file_and_field_and_a_resume_past_it_refused(random_model_dir, tmp_path, monkeypatch,
                                                                                 capsys):
    whole_run(random_model_dir, tmp_path)
    snapshot = tmp_path / "sparks" / "snapshots" / "step-00000002"
    record = json.loads((snapshot / "snapshot.json").read_text())
    (snapshot / "snapshot.json").write_text(json.dumps({**record, "stability": "high"}))
    assert [str(found) for found in RunStore(tmp_path).damage()] == [
        f"{snapshot / 'snapshot.json'}: stability: str 'high', expected int or float"]
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    monkeypatch.setattr(sparks.train.preparation, "load_model", lambda *args: pytest.fail("the model must not load"))
    capsys.readouterr()
    with pytest.raises(SystemExit):
        train(random_model_dir, tmp_path, TRACKER, "--resume_from_checkpoint", str(tmp_path / "checkpoint-4"))
    assert capsys.readouterr().err.strip() == (
        f"sparks: error: {snapshot / 'snapshot.json'}: stability: str 'high', expected int or float; resuming at step 4 "
        f"would leave it missing: resume with --resume_from_checkpoint {tmp_path / 'checkpoint-2'} to score it again")
    (tmp_path / "sparks" / "snapshots" / "step-00000000" / "scores.safetensors").write_bytes(b"\0" * 16)
    with pytest.raises(SystemExit):
        train(random_model_dir, tmp_path)
    assert capsys.readouterr().err.strip().startswith(
        f"sparks: error: {tmp_path / 'sparks/snapshots/step-00000000/scores.safetensors'}: unreadable (")
    assert {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()} == before | {
        tmp_path / "sparks/snapshots/step-00000000/scores.safetensors": b"\0" * 16}
    with pytest.raises(sparks.runs.store.RunStoreError, match="scores.safetensors: unreadable"):
        load_run(tmp_path)


def test_a_lineage_with_a_field_of_the_wrong_type_is_refused_naming_file_and_field(random_model_dir, tmp_path, monkeypatch,
                                                                                   capsys):
    with monkeypatch.context() as patch:
        with_callback(patch, KillAfterCheckpoint(4))
        killed(random_model_dir, tmp_path)
    lineage = tmp_path / "sparks" / "lineage.json"
    state = json.loads(lineage.read_text())
    state["snapshots"][1]["step"] = "2"
    lineage.write_text(json.dumps(state))
    monkeypatch.setattr(sparks.train.preparation, "load_model", lambda *args: pytest.fail("the model must not load"))
    capsys.readouterr()
    with pytest.raises(SystemExit):
        train(random_model_dir, tmp_path)
    assert capsys.readouterr().err.strip() == (
        f"sparks: error: {lineage}: snapshots[1].step: must be a whole number above the previous snapshot's 0, got '2'")


def test_resume_from_checkpoint_true_is_the_last_checkpoint(random_model_dir, tmp_path, monkeypatch, uninterrupted, capsys):
    monkeypatch.setattr(sparks.train.preparation, "load_model", lambda *args: pytest.fail("the model must not load"))
    for asked, line in (("true", f"resume_from_checkpoint: true resumes from the last checkpoint in {tmp_path}, which holds none"),
                        (str(tmp_path / "checkpoint-9"), f"resume_from_checkpoint: {tmp_path / 'checkpoint-9'} is not a "
                                                         f"checkpoint (no trainer_state.json there)")):
        with pytest.raises(SystemExit):
            train(random_model_dir, tmp_path, TRACKER, "--resume_from_checkpoint", asked)
        assert capsys.readouterr().err.strip() == f"sparks: error: {line}"
    monkeypatch.undo()
    with monkeypatch.context() as patch:
        with_callback(patch, KillAfterCheckpoint(4))
        killed(random_model_dir, tmp_path)
    capsys.readouterr()
    train(random_model_dir, tmp_path, TRACKER, "--resume_from_checkpoint", "True")
    assert f"sparks: resuming from {tmp_path / 'checkpoint-4'}" in capsys.readouterr().out
    assert RunStore(tmp_path).contents() == uninterrupted


def test_logs_between_checkpoints_resume_to_the_uninterrupted_metrics(random_model_dir, tmp_path_factory, monkeypatch):
    """A checkpoint every 3 steps, a log every 2: a resume at 3 logs what the uninterrupted run logged."""
    misaligned = ("--save_steps", "3", "--logging_steps", "2")
    whole, resumed = tmp_path_factory.mktemp("whole"), tmp_path_factory.mktemp("resumed")
    train(random_model_dir, whole, TRACKER, *misaligned)
    with monkeypatch.context() as patch:
        with_callback(patch, KillAfterCheckpoint(3))
        with pytest.raises(Killed):
            train(random_model_dir, resumed, TRACKER, *misaligned)
    train(random_model_dir, resumed, TRACKER, *misaligned)
    assert [record["step"] for record in RunStore(whole).read("metrics.jsonl")] == [2, 3, 4, 6]  # a checkpoint step logs
    assert RunStore(resumed).contents() == RunStore(whole).contents()
    # The trainer's own log too, but for two counters transformers and TRL keep outside their checkpoints, which
    # restart at a resume: TRL SFT's num_tokens, and the run-long train_loss of the last entry (the README says so;
    # the run store keeps neither).
    def trainer_log(output_dir: Path) -> list[dict]:
        return [{key: value for key, value in entry.items() if key not in ("num_tokens", "train_loss")}
                for entry in history(output_dir)]

    assert trainer_log(resumed) == trainer_log(whole)
