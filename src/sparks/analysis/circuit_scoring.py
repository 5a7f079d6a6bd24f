"""One pair set scored on a saved model into a circuit with its uncertainty: what ``sparks score`` and
``sparks think`` (once per thinking mode) both run.

The chain: per-pair scores (probes.scoring.score_pairs), their sums with the Poisson bootstrap
weights of the pair indices (probes.bootstrap), the circuit, replicate circuits, membership,
importance interval, stability and null churn (probes.statistics.SnapshotStats), then the circuit's
per-pair effects and its faithfulness with its interval (probes.faithfulness).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from transformers import PreTrainedModel

from sparks.probes.bootstrap import poisson_weights
from sparks.probes.faithfulness import pair_effects, replicate_faithfulness
from sparks.probes.pairs import Pair
from sparks.probes.scoring import graph_of, score_pairs
from sparks.probes.statistics import NonFiniteScores, ScoreSums, Selection, SnapshotStats


@dataclass(frozen=True)
class ScoredCircuit:
    """Per-pair ``scores``, the statistics of their circuit, the circuit's per-pair ``effects`` [N, 2]
    (circuit run, empty run) and the bootstrap ``replicate_weights`` [B, N] the statistics used."""

    scores: dict[str, Tensor]
    stats: SnapshotStats
    effects: Tensor
    replicate_weights: Tensor

    @property
    def replicate_faithfulness(self) -> Tensor:
        """[B] the reported circuit's faithfulness under each replicate's weights (NaN where the empty
        circuit does no damage): the values ``stats.faithfulness_interval`` takes its quantiles of."""
        return replicate_faithfulness(*(self.replicate_weights @ self.effects.double()).unbind(-1))


def check_scoring(method: str, metric: str, replicates: int) -> None:
    """Refuse settings that cannot give a meaningful circuit, before anything loads."""
    if method == "eap" and metric == "kl":
        raise ValueError("--method eap with --metric kl scores exactly zero (the KL gradient vanishes at the clean input)")
    if replicates < 2:
        raise ValueError(f"--replicates needs at least 2 bootstrap replicates, got {replicates}")


def score_circuit(
    model: PreTrainedModel,
    pairs: Sequence[Pair],
    selection: Selection,
    *,
    name: str,
    method: str,
    metric: str,
    ig_steps: int,
    ig_rule: str,
    replicates: int,
    seed: int,
    batch_size: int,
    chunk_size: int | None = None,
    heads: Sequence[tuple[int, int]] | None = None,
) -> ScoredCircuit:
    """Score ``pairs`` on ``model`` and select the circuit, its replicates and its faithfulness.

    Pair i's replicate weights are drawn from (``seed``, i), so two pair sets holding the same
    questions in the same order are resampled alike: replicate b of one and of the other are paired.
    ``heads`` limits exact node patching to those heads (the others' scores are NaN by design).
    Non-finite scores or effects raise ValueError naming ``name``.
    """
    pad_id = model.config.pad_token_id or 0
    scores = score_pairs(
        model,
        pairs,
        method=method,
        level=selection.level,
        metric=metric,
        steps=ig_steps,
        ig_rule=ig_rule,
        batch_size=batch_size,
        chunk_size=chunk_size,
        heads=heads,
        pad_id=pad_id,
    )
    graph = graph_of(model)
    scored = None
    if heads is not None:
        scored = torch.zeros(graph.num_layers, graph.num_heads, dtype=torch.bool)
        for layer, head in heads:
            scored[layer, head] = True
    weights = torch.ones(len(pairs), dtype=torch.float64)
    replicate_weights = poisson_weights(range(len(pairs)), replicates, seed)
    try:
        stats = SnapshotStats.of(ScoreSums.of(scores, graph, selection, weights, replicate_weights), graph, selection, scored)
        effects = pair_effects(model, pairs, stats.circuit, metric=metric, batch_size=batch_size, pad_id=pad_id)
        stats = stats.with_faithfulness(torch.cat([weights[None], replicate_weights]) @ effects.double())
    except NonFiniteScores as error:
        raise ValueError(f"{name}: {error}") from None
    return ScoredCircuit(scores, stats, effects, replicate_weights)
