"""One pair set scored into a circuit with its uncertainty: what the tracker runs at every snapshot (its
share of the pairs on each process, summed over them), and ``sparks score``, ``think`` and ``rescore`` on
a saved model.

The chain: per-pair scores (probes.scoring.score_pairs), their sums with the pairs' weights and Poisson
bootstrap weights (probes.bootstrap), summed over processes (``reduce``); the circuit, replicate
circuits, membership, importance interval, stability and null churn (probes.statistics.SnapshotStats);
then the circuit's per-pair effects, summed the same way, and its faithfulness with its interval
(probes.faithfulness).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sparks.probes.bootstrap import poisson_weights
from sparks.probes.edges import EdgeGraph
from sparks.probes.faithfulness import pair_effects, replicate_faithfulness
from sparks.probes.pairs import Pair
from sparks.probes.scoring import graph_of, score_pairs
from sparks.probes.spec import ScoringSpec
from sparks.probes.statistics import NonFiniteScores, ScoreSums, SnapshotStats

Reduce = Callable[[Callable[[], Tensor], Tensor], Tensor]
"""How a vector computed on each process becomes its sum over them: ``reduce(compute, zeros)``, ``zeros`` of
the vector's length for a process that has nothing to add (the tracker's all-reduce, callbacks.snapshot)."""


def in_process(compute: Callable[[], Tensor], zeros: Tensor) -> Tensor:
    """The reduce of a single process, which holds every pair: its own vector is the sum."""
    return compute()


@dataclass(frozen=True)
class ScoredCircuit:
    """Per-pair ``scores``, the statistics of their circuit, the circuit's per-pair ``effects`` [N, 2]
    (circuit run, empty run) and the bootstrap ``replicate_weights`` [B, N] the statistics used: of this
    process's pairs."""

    scores: dict[str, Tensor]
    stats: SnapshotStats
    effects: Tensor
    replicate_weights: Tensor

    @property
    def replicate_faithfulness(self) -> Tensor:
        """[B] the reported circuit's faithfulness under each replicate's weights (NaN where the empty
        circuit does no damage): the values ``stats.faithfulness_interval`` takes its quantiles of."""
        return replicate_faithfulness(*(self.replicate_weights @ self.effects.double()).unbind(-1))


def score_circuit(
    model: nn.Module,
    pairs: Sequence[Pair],
    spec: ScoringSpec,
    *,
    pad_id: int,
    graph: EdgeGraph | None = None,
    indices: Sequence[int] | None = None,
    weights: Tensor | None = None,
    reduce: Reduce = in_process,
    heads: Sequence[tuple[int, int]] | None = None,
    name: str | None = None,
    progress: bool = True,
) -> ScoredCircuit:
    """Score ``pairs`` on ``model`` as ``spec`` says and select the circuit, its replicates and its faithfulness.

    ``indices``: the pairs' places in the whole probe set (default 0..n-1) and ``weights`` [n] their weights
    (default 1): pair i's replicate weights are drawn from (``spec.seed``, i), so two pair sets holding the
    same questions in the same order, or two processes' shares of one set, are resampled alike. ``reduce``
    sums over the processes. ``heads`` limits exact node patching to those heads (the others' scores are
    NaN by design). Non-finite scores or effects raise ValueError, naming ``name`` when given.
    """
    graph = graph_of(model) if graph is None else graph
    indices = range(len(pairs)) if indices is None else indices
    weights = torch.ones(len(pairs), dtype=torch.float64, device="cpu") if weights is None else weights
    replicate_weights = poisson_weights(indices, spec.replicates, spec.seed) * weights
    selection = spec.selection
    shapes = ScoreSums.shapes(graph, spec.level, spec.replicates)
    scores: dict[str, Tensor] = {}

    def score_sums() -> Tensor:
        scores.update(score_pairs(
            model, pairs, method=spec.method, level=spec.level, metric=spec.metric, steps=spec.ig_steps,
            ig_rule=spec.ig_rule, batch_size=spec.batch_size, chunk_size=spec.chunk_size, heads=heads, pad_id=pad_id,
            progress=progress,
        ))
        return ScoreSums.of(scores, graph, selection, weights, replicate_weights).flatten()

    all_weights = torch.cat([weights.double()[None], replicate_weights.double()])
    effects: list[Tensor] = []

    def effect_sums() -> Tensor:
        effects.append(pair_effects(model, pairs, stats.circuit, metric=spec.metric, batch_size=spec.batch_size, pad_id=pad_id))
        return all_weights @ effects[0].double()

    try:
        totals = reduce(score_sums, ScoreSums.zeros(shapes).flatten())  # score_pairs has checked ``heads``
        stats = SnapshotStats.of(ScoreSums.unflatten(totals, shapes), graph, selection, _scored(graph, heads))
        stats = stats.with_faithfulness(reduce(effect_sums, torch.zeros(len(all_weights), 2, dtype=torch.float64, device="cpu")).view(-1, 2))
    except NonFiniteScores as error:
        if name is None:
            raise
        raise ValueError(f"{name}: {error}") from None
    return ScoredCircuit(scores, stats, effects[0], replicate_weights)


def _scored(graph: EdgeGraph, heads: Sequence[tuple[int, int]] | None) -> Tensor | None:
    """[L, H] the heads that were scored when only ``heads`` were, else None."""
    if heads is None:
        return None
    scored = torch.zeros(graph.num_layers, graph.num_heads, dtype=torch.bool, device="cpu")
    for layer, head in heads:
        scored[layer, head] = True
    return scored
