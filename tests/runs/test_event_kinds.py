"""Every entry of the event-kind table (runs.lineage.EVENT_KINDS, docs/events.md) agrees with itself and is shown."""

from pathlib import Path

import numpy as np
import pytest
import torch

from sparks.callbacks.recorder import snapshot_metrics
from sparks.probes.circuit import Circuit
from sparks.probes.statistics import SnapshotStats
from sparks.runs.lineage import EVENT_KINDS, HeadLineage

CIRCUITS = [{(0, 0), (0, 1), (1, 2)}, {(0, 1), (1, 0), (1, 1)}, {(0, 0), (1, 1), (1, 3)}, {(0, 0), (1, 1), (1, 3), (0, 2)}]
SHAPE = (2, 4)


def mirrored_lineage() -> HeadLineage:
    """A lineage whose 5 replicate circuits all equal the reported circuit at every snapshot."""
    lineage = HeadLineage(confidence_level=0.9)
    for index, circuit in enumerate(CIRCUITS):
        membership = np.zeros(SHAPE, dtype=bool)
        for head in circuit:
            membership[head] = True
        lineage.update(index * 10, np.arange(8.0).reshape(SHAPE), circuit, 0.5, np.repeat(membership[None], 5, axis=0))
    return lineage


@pytest.mark.parametrize("kind", EVENT_KINDS.values(), ids=lambda kind: kind.name)
def test_each_kind_happens_in_mirrored_replicates_exactly_where_it_holds(kind):
    lineage = mirrored_lineage()
    for index in range(len(lineage)):
        shares = lineage.confidence(index, kind.name)
        held = kind.heads(lineage, index)
        expected = np.zeros(SHAPE)
        for head in held:
            expected[head] = 1.0
        assert np.array_equal(shares, expected), (kind.name, index)
        assert kind.listed(lineage, index) <= kind.heads(lineage, index)
        listed = {(event["layer"], event["head"]) for event in lineage._events_at(index) if event["event"] == kind.name}
        assert listed == (kind.listed(lineage, index) if kind.at_base == (index == 0) else set())


@pytest.mark.parametrize("kind", [kind for kind in EVENT_KINDS.values() if kind.counted_as], ids=lambda kind: kind.name)
def test_each_counted_kind_has_its_raw_and_confident_scalars(kind):
    lineage = mirrored_lineage()
    zeros = torch.zeros(SHAPE)
    circuit = Circuit(heads=sorted(CIRCUITS[-1]), mlps=[], edges=[], scores=zeros, upstream=[], downstream=[])
    stats = SnapshotStats(pair_weight=1.0, mean=zeros, mean_abs=zeros, ranking=zeros, importance=zeros,
                          importance_interval=torch.zeros(2, *SHAPE), circuit=circuit,
                          replicates=torch.from_numpy(lineage.snapshots[-1].replicates))
    metrics = snapshot_metrics(lineage, stats, 1.0)
    held = len(kind.heads(lineage, -1))
    assert metrics[f"heads/{kind.counted_as}"] == held == metrics[f"heads/confident_{kind.counted_as}"]


def test_every_kind_is_described_in_the_docs():
    rows = (Path(__file__).resolve().parents[2] / "docs" / "events.md").read_text()
    assert [kind.name for kind in EVENT_KINDS.values() if f"| `{kind.name}` |" not in rows] == []
