"""The run store: everything the tracker learns, on disk under ``<output_dir>/sparks/``.

Written by the main process only, so nothing is lost when a dashboard is unreachable and a run can
be analysed later. Layout (format ``sparks-run``, version 3; version 2 lacks ``base_model``):

- ``run.json``: format, version, tracker config, model head layout, job type, pair count,
  ``base_model`` (where the trained model was loaded from), and ``resumes``: one {step, changed}
  entry per resume, naming the settings that changed there. A store written by ``sparks rescore``
  adds ``rescore``: the run, the model scored at each step, the settings changed.
- ``pairs.jsonl``: the probe pairs scored at every snapshot (probes.pairs format).
- ``snapshots/step-XXXXXXXX/snapshot.json``: step, seconds, circuit heads, windowed series (e.g.
  the reward since the previous snapshot), pairs scored, and the uncertainty (probes.statistics):
  ``stability``, ``null_churn``, ``faithfulness`` and its 95% bootstrap ``faithfulness_interval``
  (null when it could not be measured),
  ``replicates`` (bootstrap replicate count) and ``membership`` ([L][H] share of replicate circuits).
- ``snapshots/step-XXXXXXXX/scores.safetensors``: ``mean`` (signed) and ``mean_abs`` [L, H] head
  scores, ``importance`` [L, H] (share of the ranking) with its 95% bootstrap interval
  ``importance_low``/``importance_high``, ``membership`` [L, H], and ``ranking``, what the circuit
  was selected from ([L, H] at node level, [U, D] at edge level).
- ``snapshots/step-XXXXXXXX/circuit/``: the selected circuit (probes.circuit.Circuit.save).
- ``lineage.json``: the lineage state (runs.lineage.HeadLineage.state_dict), for resuming.
- ``events.jsonl``: the lineage's events {step, layer, head, event, score, reward, confidence,
  confident} (runs.lineage), one per line.
- ``metrics.jsonl``: the trainer's logged series, one {step, ...} line per log call.
- ``failures.jsonl``: snapshots that failed: {step, error, traceback}.
- ``summary.json``: run-level results (reward alignment, final counts).

Crash safety. ``lineage.json`` is the record of which snapshots exist: a snapshot is committed by
writing its directory, events.jsonl, summary.json and the new lineage.json to temporary files,
then renaming them into place, lineage.json last. A crash or a failed write at any point leaves
the previous lineage whole; a snapshot directory the lineage does not name is a leftover, removed
on resume, as is a temporary (saying so). The store checks itself (``damage``): each snapshot the
lineage names must be there and whole, and a reader or a resume is told the file and field that are
not; a resume drops a damaged snapshot of the step it resumes at, to score it again, and refuses one
before it. events.jsonl follows from the lineage and metrics.jsonl from the trainer's log history,
so a resume rewrites both; the JSON-lines files are read tolerantly (a torn last line, what a crash
or a full disk leaves, is dropped and reported). An append that fails is undone and kept in memory
until a later one succeeds. A store holding a lineage is never deleted: starting over it is refused.
One process writes a store at a time (runs.lock).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor
from transformers.trainer_utils import get_last_checkpoint

from sparks.probes.circuit import Circuit
from sparks.probes.pairs import Pair, load_pairs, save_pairs
from sparks.runs.lineage import HeadLineage

FORMAT = "sparks-run"
VERSION = 3
READABLE = (2, 3)
"""Versions this code reads: v3 adds run.json's ``base_model`` (what the run was loaded from) and its
``rescore`` record (a store written by ``sparks rescore``); a v2 store reads as it is, without them."""
SETTINGS_SINCE = {"ig_rule": "right"}
"""Lineage settings newer than some stores, with the value a store without them was scored with."""


class RunStoreError(ValueError):
    """The run store cannot be started, resumed or read as asked; the message is one line saying what to do."""


@dataclass(frozen=True)
class Damage:
    """One snapshot the lineage names that cannot be read whole: its step, the file, and what is wrong there."""

    step: int
    path: Path
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


SNAPSHOT_FIELDS: dict[str, tuple[type, ...]] = {
    "step": (int,), "seconds": (int, float), "pairs": (int,), "circuit": (list,), "windows": (dict,),
    "stability": (int, float), "null_churn": (int, float), "faithfulness": (int, float, type(None)),
    "faithfulness_interval": (list, type(None)), "replicates": (int,), "membership": (list,),
}
"""The fields of a snapshot.json, and the JSON types each may hold."""
SCORE_TENSORS = ("mean", "mean_abs", "importance", "importance_low", "importance_high", "membership", "ranking")
"""The tensors of a snapshot's scores.safetensors."""


def _snapshot_problem(directory: Path, step: int) -> tuple[Path, str] | None:
    """The first file of a snapshot directory that is missing or not what its readers expect, and why."""
    if not directory.is_dir():
        return directory, "missing (the lineage names this snapshot)"
    record_path = directory / "snapshot.json"
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError) as error:
        return record_path, f"unreadable ({first_line(error)})"
    if not isinstance(record, dict):
        return record_path, f"not a mapping but a JSON {type(record).__name__}"
    for name, kinds in SNAPSHOT_FIELDS.items():
        value = record.get(name)
        if name not in record:
            return record_path, f"{name}: missing"
        if isinstance(value, bool) or not isinstance(value, kinds):
            return record_path, f"{name}: {type(value).__name__} {value!r:.40}, expected {' or '.join(kind.__name__ for kind in kinds)}"
    if record["step"] != step:
        return record_path, f"step: {record['step']}, the lineage names this directory step {step}"
    for tensors, names in ((directory / "scores.safetensors", SCORE_TENSORS), (directory / "circuit" / "scores.safetensors", ("scores",))):
        try:
            with safe_open(str(tensors), framework="pt") as file:
                held = set(file.keys())
        except Exception as error:
            return tensors, f"unreadable ({first_line(error)})"
        absent = [name for name in names if name not in held]
        if absent:
            return tensors, f"{absent[0]}: missing"
    circuit_path = directory / "circuit" / "circuit.json"
    try:
        circuit = json.loads(circuit_path.read_text())
    except (OSError, ValueError) as error:
        return circuit_path, f"unreadable ({first_line(error)})"
    absent = [name for name in ("heads", "mlps", "edges", "upstream", "downstream") if not isinstance(circuit, dict) or name not in circuit]
    return (circuit_path, f"{absent[0]}: missing") if absent else None


def plain_number(value: float | None) -> float | None:
    """A number as strict JSON holds it: NaN (not measurable) as null."""
    return None if value is None or math.isnan(value) else float(value)


def first_line(error: BaseException) -> str:
    """An error's first line, or its type's name when it has no message."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@dataclass(frozen=True)
class Resumed:
    """A store reopened at a step: the lineage as it stood there, and one line per thing the resume dropped."""

    lineage: HeadLineage
    notes: list[str]
    dropped: int | None = None
    """The step of a damaged snapshot dropped to be scored again (the resumed step), if any."""


def _temporary(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def _write_whole(path: Path, write: Callable[[Path], object]) -> None:
    """``write`` a temporary file, renamed to ``path`` once whole, so a crash never leaves half a file."""
    temporary = _temporary(path)
    try:
        write(temporary)
    except OSError:
        temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, path)


def _write_text(path: Path, text: str) -> None:
    _write_whole(path, lambda temporary: temporary.write_text(text))


def _json_lines(records: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def snapshot_dir(root: Path, step: int) -> Path:
    return root / "snapshots" / f"step-{step:08d}"


class RunStore:
    """Reads and writes one run's ``sparks/`` directory."""

    def __init__(self, output_dir: str | Path) -> None:
        self.root = Path(output_dir) / "sparks"
        self.backlog: dict[str, list[dict[str, Any]]] = {}

    # -- opening ---------------------------------------------------------------------------------

    def holds_lineage(self) -> bool:
        """Whether a snapshot was ever committed here."""
        return (self.root / "lineage.json").is_file()

    def _taken(self) -> RunStoreError:
        checkpoint = get_last_checkpoint(str(self.root.parent))
        how = (f"resume it with --resume_from_checkpoint {checkpoint}" if checkpoint else
               "it has no checkpoint to resume from (save_strategy steps makes them): move it away to start over")
        return RunStoreError(f"output_dir: {self.root} holds the head lineage of an earlier run and this run starts "
                             f"at step 0; {how}, or set --output_dir to a new directory")

    def check_relaunch(self, config: dict[str, Any], lineage: Sequence[str], resuming: bool) -> None:
        """Before a model loads: a relaunch over this store must resume it, with the settings it was scored with."""
        if not self.holds_lineage():
            return
        if not resuming:
            raise self._taken()
        self.check_settings(config, lineage)

    def check_settings(
        self, config: dict[str, Any], lineage: Sequence[str], pairs: Sequence[Pair] | None = None,
        layout: dict[str, Any] | None = None,
    ) -> dict[str, list[Any]]:
        """Refuse to resume with other settings among ``lineage`` (those that define what it measures), probe
        pairs or head layout; return the other settings that changed."""
        run = self.run()
        stored = SETTINGS_SINCE | run["config"]
        for name in lineage:
            if stored.get(name) != config.get(name):
                raise RunStoreError(
                    f"tracker.{name}: the run store at {self.root} was scored with {stored.get(name)!r}, this run asks "
                    f"for {config.get(name)!r}; resume with the same setting, or set --output_dir to a new directory"
                )
        if layout is not None and run.get("model") != layout:
            raise RunStoreError(f"model_name_or_path: the run store at {self.root} holds heads of {run.get('model')}, "
                                f"this model has {layout}; set --output_dir to a new directory")
        try:
            stored_pairs = None if pairs is None else load_pairs(self.root / "pairs.jsonl")
        except (OSError, ValueError) as error:
            raise RunStoreError(f"{self.root / 'pairs.jsonl'}: unreadable ({error}); set --output_dir to a new directory") from None
        if pairs is not None and stored_pairs != list(pairs):
            raise RunStoreError(f"tracker.pairs: the probe pairs differ from the {run.get('pairs')} the run store at "
                                f"{self.root} was scored on (another tokenizer or pair file?); set --output_dir to a new directory")
        return {name: [stored.get(name), value] for name, value in config.items() if stored.get(name) != value}

    def start(self, run: dict[str, Any], pairs: Sequence[Pair]) -> None:
        """Begin a fresh run: write run.json and the pairs. Refused over a store that holds a lineage."""
        if self.holds_lineage():
            raise self._taken()
        if self.root.exists():
            shutil.rmtree(self.root)  # leftovers of a run that crashed before its first snapshot
        (self.root / "snapshots").mkdir(parents=True)
        _write_whole(self.root / "pairs.jsonl", lambda temporary: save_pairs(pairs, temporary))
        _write_text(self.root / "run.json", json.dumps({"format": FORMAT, "version": VERSION, **run, "resumes": []}, indent=1))

    def run(self) -> dict[str, Any]:
        """run.json, checked for format and version."""
        try:
            record = json.loads((self.root / "run.json").read_text())
        except (OSError, ValueError) as error:
            raise RunStoreError(f"{self.root / 'run.json'}: unreadable ({error})") from None
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            raise RunStoreError(f"{self.root}: not a {FORMAT} run store")
        version = record.get("version")
        if isinstance(version, int) and version > VERSION:
            raise RunStoreError(f"{self.root}: a {FORMAT} v{version} run store, written by a newer sparks; this one "
                                f"reads v{READABLE[0]} to v{VERSION}: upgrade sparks to read it")
        if version not in READABLE:
            raise RunStoreError(f"{self.root}: a {FORMAT} store of version {version!r}, which this sparks cannot read "
                                f"(it reads v{READABLE[0]} to v{VERSION})")
        return record

    def lineage(self) -> HeadLineage:
        """The committed lineage (lineage.json); RunStoreError naming the file, and the field, when it cannot be read."""
        path = self.root / "lineage.json"
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise RunStoreError(f"{path}: unreadable ({error})") from None
        try:
            return HeadLineage.from_state_dict(state)
        except ValueError as error:
            raise RunStoreError(f"{path}: {error}") from None

    def damage(self) -> list[Damage]:
        """What the committed lineage names that is missing or of the wrong type, snapshot by snapshot in step order.

        run.json and lineage.json themselves must be whole (RunStoreError otherwise: nothing names what to restore).
        Reads each snapshot's record and its tensor file's header, not the tensors.
        """
        self.run()
        return self._damage(self.lineage())

    def _damage(self, lineage: HeadLineage) -> list[Damage]:
        """``damage`` of the snapshots ``lineage`` names."""
        found = []
        for step in lineage.steps:
            problem = _snapshot_problem(snapshot_dir(self.root, step), step)
            if problem is not None:
                found.append(Damage(step, *problem))
        return found

    def check(self) -> None:
        """Refuse (RunStoreError, one line) a store whose lineage names a snapshot that is missing or damaged."""
        found = self.damage()
        if found:
            more = f" (and {len(found) - 1} more snapshot{'s' * (len(found) > 2)})" if len(found) > 1 else ""
            raise RunStoreError(f"{found[0]}{more}")

    def resume(self, step: int, series: Sequence[dict[str, Any]]) -> Resumed | None:
        """Reopen the run at ``step`` (None when no lineage was committed here).

        Keeps the whole snapshots up to ``step``, the failures up to it and ``series`` (the trainer's
        logged series up to it, {step, ...} each) as metrics.jsonl; removes leftover snapshot
        directories and unfinished writes, saying so, and rewrites events.jsonl from the lineage. A
        snapshot of ``step`` that is missing or damaged is dropped, to be scored again; one before
        ``step`` cannot be, and is refused (RunStoreError). Reads everything before it writes anything.
        """
        if not self.holds_lineage():
            return None
        self.run()
        try:
            lineage = self.lineage()
        except RunStoreError as error:
            raise RunStoreError(f"{error}; the lineage cannot be resumed: set --output_dir to a new directory") from None
        damage = self._damage(lineage)
        if damage and damage[0].step < step:
            raise RunStoreError(f"{damage[0]}; training resumes at step {step}, after it, so it cannot be scored "
                                f"again: resume from a checkpoint at or before step {damage[0].step}")
        dropped = damage[0] if damage and damage[0].step == step else None  # later damage goes with the later snapshots
        notes = [] if dropped is None else [
            f"{dropped}: dropped this snapshot and those after it; training from the checkpoint scores them again"]
        kept = lineage.until(step if dropped is None else step - 1)
        later = [later_step for later_step in lineage.steps if later_step > step]
        if later:
            notes.append(f"dropped the snapshots after step {step} (steps {', '.join(map(str, later))}); "
                         f"training from the checkpoint scores them again")
        failures, torn = self._records("failures.jsonl")
        for name in ("events.jsonl", "metrics.jsonl"):
            torn += self._records(name)[1]
        notes += torn
        for directory in (self.root / "snapshots").glob("step-*"):
            name = directory.name.removesuffix(".tmp").removeprefix("step-")
            if directory.name.endswith(".tmp"):
                notes.append(f"removed {directory.name}, the unfinished write of a snapshot that was never committed")
            if directory.name.endswith(".tmp") or not name.isdigit() or int(name) not in kept.steps:
                shutil.rmtree(directory)
        for temporary in self.root.glob("*.tmp"):
            notes.append(f"removed {temporary.name}, the unfinished write of a file that was never committed")
            temporary.unlink()
        _write_text(self.root / "metrics.jsonl", _json_lines(record for record in series if record["step"] <= step))
        _write_text(self.root / "failures.jsonl", _json_lines(record for record in failures if record["step"] <= step))
        _write_text(self.root / "events.jsonl", _json_lines(kept.events))
        _write_text(self.root / "lineage.json", json.dumps(kept.state_dict()))
        self.backlog.clear()
        return Resumed(kept, notes, None if dropped is None else dropped.step)

    def record_resume(self, step: int, changed: dict[str, list[Any]]) -> None:
        """Note in run.json that the run resumed at ``step``, and which settings (old, new) changed there."""
        run = self.run()
        run["resumes"] = [*run.get("resumes", []), {"step": step, "changed": changed}]
        run["config"] = {**run["config"], **{name: new for name, (_, new) in changed.items()}}
        _write_text(self.root / "run.json", json.dumps(run, indent=1))

    # -- writing ---------------------------------------------------------------------------------

    def commit(
        self,
        lineage: HeadLineage,
        events: Sequence[dict[str, Any]],
        record: dict[str, Any],
        tensors: dict[str, Tensor],
        circuit: Circuit,
        summary: dict[str, Any],
    ) -> None:
        """Write the lineage's last snapshot (its record, score tensors and circuit), all its ``events`` and the summary, all or nothing.

        A failed write (a full disk, permissions, any error of any library) is raised and leaves the store as
        it was, with no temporary behind.
        """
        step = lineage.steps[-1]
        directory = snapshot_dir(self.root, step)
        staging = _temporary(directory)
        files = {
            self.root / "events.jsonl": _json_lines(events),
            self.root / "summary.json": json.dumps(summary, indent=1),
            self.root / "lineage.json": json.dumps(lineage.state_dict()),
        }
        try:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            save_file({name: value.detach().cpu().contiguous() for name, value in tensors.items()}, str(staging / "scores.safetensors"))
            circuit.save(staging / "circuit")
            (staging / "snapshot.json").write_text(json.dumps({"step": step, **record}, indent=1))
            for path, text in files.items():
                _temporary(path).write_text(text)
        except BaseException:  # any error type: safetensors, for one, does not raise OSError on a full disk
            shutil.rmtree(staging, ignore_errors=True)
            for path in files:
                _temporary(path).unlink(missing_ok=True)
            raise
        if directory.exists():
            shutil.rmtree(directory)  # a leftover of a crash between this snapshot's write and its commit
        os.replace(staging, directory)
        for path in files:  # lineage.json last: the commit
            os.replace(_temporary(path), path)

    def append(self, name: str, records: Iterable[dict[str, Any]]) -> None:
        """Append JSON lines to ``name`` (metrics.jsonl, failures.jsonl), after any that failed to be written before.

        A failed write is undone (no torn line is left) and its records wait for the next call; the OSError is raised.
        """
        pending = self.backlog.pop(name, []) + list(records)
        if not pending:
            return
        path = self.root / name
        size = path.stat().st_size if path.is_file() else 0
        try:
            with path.open("a") as file:
                file.write(_json_lines(pending))
        except OSError:
            self.backlog[name] = pending
            try:
                os.truncate(path, size)
            except OSError:
                pass  # the reader drops a torn last line
            raise

    def read(self, name: str) -> list[dict[str, Any]]:
        """The whole JSON lines of ``name`` (none if it was never written)."""
        return self._records(name)[0]

    def _records(self, name: str) -> tuple[list[dict[str, Any]], list[str]]:
        """The whole records of a JSON-lines file, and one note per line that is not one (a torn write)."""
        path = self.root / name
        if not path.is_file():
            return [], []
        records, notes = [], []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            if isinstance(record, dict):
                records.append(record)
            else:
                notes.append(f"dropped line {number} of {name}, not a whole record ({len(line)} characters: a torn write)")
        return records, notes

    def contents(self) -> dict[str, Any]:
        """Everything the store holds but wall-clock times, as plain values: two runs of the same
        training with the same seed, one interrupted and resumed, give equal contents."""
        snapshots = {}
        for directory in sorted((self.root / "snapshots").iterdir()):
            record = json.loads((directory / "snapshot.json").read_text())
            record.pop("seconds")
            tensors = {name: value.tolist() for name, value in load_file(str(directory / "scores.safetensors")).items()}
            snapshots[directory.name] = {"record": record, "scores": tensors,
                                         "circuit": json.loads((directory / "circuit" / "circuit.json").read_text())}
        return {
            "snapshots": snapshots,
            "lineage": json.loads((self.root / "lineage.json").read_text()),
            **{name: self.read(f"{name}.jsonl") for name in ("events", "metrics", "failures")},
            "summary": json.loads((self.root / "summary.json").read_text()),
        }

    def save_summary(self, summary: dict[str, Any]) -> None:
        _write_text(self.root / "summary.json", json.dumps(summary, indent=1))
