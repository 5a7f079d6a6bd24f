"""The run store: everything the tracker learns, on disk under ``<output_dir>/sparks/``.

Written by the main process only, so nothing is lost when a dashboard is unreachable and a run can
be analysed later. Layout (format ``sparks-run``, version 2):

- ``run.json``: format, version, tracker config, model head layout, job type, pair count.
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
- ``events.jsonl``: append-only lineage events {step, layer, head, event, score, reward,
  confidence, confident} (callbacks.lineage).
- ``metrics.jsonl``: the trainer's logged series, one {step, ...} line per log call.
- ``failures.jsonl``: snapshots that failed: {step, error, traceback}.
- ``lineage.json``: the lineage state (callbacks.lineage.HeadLineage.state_dict), for resuming.
- ``summary.json``: run-level results (reward alignment, final counts).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from torch import Tensor

from callbacks.lineage import HeadLineage
from probes.circuit import Circuit
from probes.pairs import Pair, save_pairs

FORMAT = "sparks-run"
VERSION = 2


def _write_text(path: Path, text: str) -> None:
    """Write through a temporary file and rename, so a crash never leaves half a file."""
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def _write_json(path: Path, value: Any) -> None:
    _write_text(path, json.dumps(value, indent=1))


def snapshot_dir(root: Path, step: int) -> Path:
    return root / "snapshots" / f"step-{step:08d}"


class RunStore:
    """Reads and writes one run's ``sparks/`` directory."""

    def __init__(self, output_dir: str | Path) -> None:
        self.root = Path(output_dir) / "sparks"

    def start(self, run: dict[str, Any], pairs: Sequence[Pair]) -> None:
        """Begin a fresh run: clear what an earlier run left here, write run.json and the pairs."""
        if self.root.exists():
            shutil.rmtree(self.root)
        (self.root / "snapshots").mkdir(parents=True)
        _write_json(self.root / "run.json", {"format": FORMAT, "version": VERSION, **run})
        save_pairs(pairs, self.root / "pairs.jsonl")

    def run(self) -> dict[str, Any]:
        """run.json, checked for format and version."""
        record = json.loads((self.root / "run.json").read_text())
        if record.get("format") != FORMAT or record.get("version") != VERSION:
            raise ValueError(f"{self.root}: not a {FORMAT} v{VERSION} run store")
        return record

    def resume(self, step: int) -> HeadLineage | None:
        """Reopen the run at ``step``: drop snapshots, events, metrics and failures after it.

        Returns the lineage as it stood at ``step``, or None when there is no store to resume.
        """
        if not (self.root / "lineage.json").is_file():
            return None
        self.run()
        lineage = HeadLineage.from_state_dict(json.loads((self.root / "lineage.json").read_text())).until(step)
        for directory in (self.root / "snapshots").glob("step-*"):
            if int(directory.name.removeprefix("step-")) > step:
                shutil.rmtree(directory)
        for name in ("events.jsonl", "metrics.jsonl", "failures.jsonl"):
            self._keep_lines(name, lambda record: record["step"] <= step)
        self.save_lineage(lineage)
        return lineage

    def _keep_lines(self, name: str, keep: Callable[[dict[str, Any]], bool]) -> None:
        if (self.root / name).is_file():
            _write_text(self.root / name, "".join(json.dumps(record) + "\n" for record in self.read(name) if keep(record)))

    def append(self, name: str, records: Iterable[dict[str, Any]]) -> None:
        """Append JSON lines to ``name`` (events.jsonl, metrics.jsonl, failures.jsonl)."""
        with (self.root / name).open("a") as file:
            for record in records:
                file.write(json.dumps(record) + "\n")

    def read(self, name: str) -> list[dict[str, Any]]:
        """The JSON lines of ``name`` (none if it was never written)."""
        path = self.root / name
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []

    def save_snapshot(self, step: int, record: dict[str, Any], tensors: dict[str, Tensor], circuit: Circuit) -> None:
        """Write one snapshot's record, score tensors and circuit."""
        directory = snapshot_dir(self.root, step)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({name: value.detach().cpu().contiguous() for name, value in tensors.items()}, str(directory / "scores.safetensors"))
        circuit.save(directory / "circuit")
        _write_json(directory / "snapshot.json", {"step": step, **record})

    def save_lineage(self, lineage: HeadLineage) -> None:
        _write_json(self.root / "lineage.json", lineage.state_dict())

    def save_summary(self, summary: dict[str, Any]) -> None:
        _write_json(self.root / "summary.json", summary)
