"""Small run stores with known circuits, replicate circuits, null churn, faithfulness, rewards and alignment,
written through RunStore so the format is the tracker's own (for the ``sparks compare`` tests).

Two runs on 2 layers x 4 heads, snapshots at steps 0, 10, 20, 30, 10 bootstrap replicates, confidence 0.9:

- ``cumulative``: circuits {00} -> {00, 01} -> {00, 01, 12} -> same; every replicate circuit is the
  reported one, so every event is confident.
- ``dynamic``: {00} -> {00, 10} -> {00, 11} -> {00, 13}; at step 20 replicates 8 and 9 keep head 10,
  so its pruning there happens in 8 of 10 replicates (not confident) and those two replicates'
  lineages differ from the reported one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from sparks.callbacks.config import LINEAGE_SETTINGS
from sparks.probes.circuit import Circuit
from sparks.probes.pairs import Pair
from sparks.runs.lineage import HeadLineage
from sparks.runs.store import RunStore

STEPS = [0, 10, 20, 30]
SHAPE = (2, 4)
REPLICATES = 10
LAYOUT = {"type": "qwen2", "layers": 2, "heads": 4, "kv_heads": 2}
CONFIG = {name: None for name in LINEAGE_SETTINGS} | {"every": 10, "method": "eap-ig", "replicates": REPLICATES, "confidence": 0.9}

CIRCUITS = {
    "cumulative": [{(0, 0)}, {(0, 0), (0, 1)}, {(0, 0), (0, 1), (1, 2)}, {(0, 0), (0, 1), (1, 2)}],
    "dynamic": [{(0, 0)}, {(0, 0), (1, 0)}, {(0, 0), (1, 1)}, {(0, 0), (1, 3)}],
}
NULL_CHURN = {"cumulative": [0.5, 1.0, 1.5, 2.0], "dynamic": [0.4, 0.5, 1.0, 0.5]}
FAITHFULNESS = {"cumulative": [(0.9, 0.8, 0.95), (0.7, 0.6, 0.8), None, (0.5, 0.4, 0.6)],
                "dynamic": [(0.2, 0.1, 0.3), (0.3, 0.2, 0.4), (0.4, 0.3, 0.5), (0.6, 0.5, 0.7)]}
ALIGNMENT = {
    "cumulative": {"confident_churn/pearson": (0.8, 0.01, 1, 10), "confident_churn/spearman": (0.7, 0.04, 0, 10),
                   "confident_emergent_change/pearson": (-0.6, 0.03, -2, 10), "confident_emergent_change/spearman": None},
    "dynamic": {"confident_churn/pearson": None},
}


def reward(name: str, step: int) -> float:
    """The logged reward: rising in the cumulative run, falling in the dynamic one."""
    return step / 30 if name == "cumulative" else 1 - step / 30


def replicate_circuits(name: str, index: int) -> np.ndarray:
    """[B, L, H] replicate circuits at snapshot ``index``: the reported circuit, and head (1, 0) kept by replicates 8, 9 at step 20 in the dynamic run."""
    masks = np.zeros((REPLICATES, *SHAPE), dtype=bool)
    for head in CIRCUITS[name][index]:
        masks[(slice(None), *head)] = True
    if name == "dynamic" and STEPS[index] == 20:
        masks[8:, 1, 0] = True
    return masks


def _alignment_summary(name: str) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for test, result in ALIGNMENT[name].items():
        r, p, lag, n = result if result is not None else (None, None, None, 4)
        summary.update({f"alignment/{test}/r": r, f"alignment/{test}/p": p, f"alignment/{test}/lag": lag,
                        f"alignment/{test}/n": n, f"alignment/{test}/insufficient": result is None})
    return summary


def pairs(count: int = 3, offset: int = 0) -> list[Pair]:
    return [Pair(f"clean {i}", f"corrupted {i}", [1, 2, 3 + i + offset], [1, 2, 99], [2]) for i in range(count)]


def write_run(output_dir: Path, name: str, layout: dict[str, Any] = LAYOUT, probe_pairs: list[Pair] | None = None,
              snapshots: int = len(STEPS)) -> Path:
    """Write the named run's store under ``output_dir`` (its first ``snapshots`` snapshots) and return ``output_dir``."""
    store = RunStore(output_dir)
    probe_pairs = pairs() if probe_pairs is None else probe_pairs
    store.start({"config": CONFIG, "job_type": name, "pairs": len(probe_pairs), "model": layout}, probe_pairs)
    store.append("metrics.jsonl", [{"step": step, "reward": reward(name, step), "loss": 0.1} for step in range(1, STEPS[-1] + 1)])
    lineage = HeadLineage(0.9)
    for index, step in enumerate(STEPS[:snapshots]):
        circuit = sorted(CIRCUITS[name][index])
        scores = np.full(SHAPE, 0.01)
        for head in circuit:
            scores[head] = 1.0
        lineage.update(step, scores, circuit, reward(name, step), replicate_circuits(name, index))
        faithful = FAITHFULNESS[name][index]
        record = {"seconds": 0.1, "pairs": len(probe_pairs), "circuit": [list(head) for head in circuit],
                  "windows": {"reward": reward(name, step)}, "stability": 1.0, "null_churn": NULL_CHURN[name][index],
                  "faithfulness": None if faithful is None else faithful[0],
                  "faithfulness_interval": None if faithful is None else list(faithful[1:]),
                  "replicates": REPLICATES, "membership": replicate_circuits(name, index).mean(0).tolist()}
        importance = torch.tensor(scores / scores.sum())
        tensors = {"mean": torch.tensor(scores), "mean_abs": torch.tensor(scores), "importance": importance,
                   "importance_low": importance.clone(), "importance_high": importance.clone(),
                   "membership": torch.tensor(record["membership"]), "ranking": torch.tensor(scores)}
        store.commit(lineage, lineage.events, record, tensors,
                     Circuit(circuit, [], [], torch.zeros(1, 1), [], []), {"heads/snapshots": len(lineage)})
    store.save_summary({"heads/snapshots": snapshots, **_alignment_summary(name)})
    return output_dir
