"""A snapshot's statistics: per-pair scores in, importance, circuit and their uncertainty out.

Scores are summed over probe pairs with weights (1 per pair; 0 for the padding pairs a process adds,
see callbacks.distributed) and, beside those plain sums, with the Poisson bootstrap weights of
probes.bootstrap: replicate b's sums. Sums add up over processes, so one all-reduce of
``ScoreSums.flatten()`` gives every rank the totals, and ``SnapshotStats.of`` turns totals into:

- the ranking the circuit is selected from (``aggregation``: ``mean_abs``, the mean over pairs of
  |score|, or ``abs_mean``, |mean of the signed score|, as hannamw/EAP-IG ranks summed scores);
- the head importance (share of the ranking per head) and its 95% bootstrap interval;
- the circuit, and one replicate circuit per bootstrap replicate, selected the same way from the
  replicate's weighted means. From those: each head's membership probability, the circuit's
  stability (mean Jaccard of replicate circuits with the reported one) and the null churn
  (expected births + prunings between two replicates of the same snapshot: what resampling the
  probe set alone produces). docs/uncertainty.md has the reasoning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

from sparks.probes.circuit import Circuit, head_circuit, select_edges
from sparks.probes.edges import EdgeGraph
from sparks.probes.faithfulness import faithfulness, faithfulness_interval

AGGREGATIONS = ("mean_abs", "abs_mean")
INTERVAL = (0.025, 0.975)


class NonFiniteScores(ValueError):
    """Summed scores or effects hold NaN or inf: the model's logits were not finite, and no circuit is meaningful."""


def _check_finite(values: list[Tensor], what: str) -> None:
    """Raise NonFiniteScores naming how many of ``values``' entries are NaN or inf.

    Called on sums after the all-reduce, so every rank sees the same totals and raises alike.
    """
    bad = sum(int((~value.isfinite()).sum()) for value in values)
    if bad:
        total = sum(value.numel() for value in values)
        raise NonFiniteScores(f"non-finite {what}: {bad} of {total} summed values are NaN or inf (does the model produce NaN/inf logits?)")


@dataclass(frozen=True)
class Selection:
    """How scores become a circuit: level, aggregation over pairs, and the level's selection rule.

    Node level: the fewest heads holding fraction ``mass`` of the total ranking. Edge level: the
    top ``top_n`` edges pruned to paths and thresholded at ``tau`` times the largest kept one.
    """

    level: str = "node"
    aggregation: str = "mean_abs"
    mass: float = 0.5
    top_n: int = 5000
    tau: float = 0.1

    def __post_init__(self) -> None:
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {self.aggregation!r}; choose from {', '.join(AGGREGATIONS)}")

    def ranked(self, scores: Tensor) -> Tensor:
        """The per-pair quantity whose weighted mean ranks heads or edges: |score| or the signed score."""
        return scores.abs() if self.aggregation == "mean_abs" else scores

    def circuit(self, ranking: Tensor, graph: EdgeGraph) -> Circuit:
        """The circuit selected from an aggregated, non-negative ranking ([L, H] or [U, D])."""
        if self.level == "edge":
            return select_edges(ranking, graph, self.top_n, self.tau)
        return head_circuit(ranking.nan_to_num(0.0), mass=self.mass)


@dataclass(frozen=True)
class ScoreSums:
    """Weighted sums over probe pairs of everything a snapshot's statistics need; ranks add them up.

    ``heads``/``heads_abs``: [L, H] signed and absolute per-head scores; ``ranked``: [L, H] (node
    level) or [U, D] (edge level) of the ranked quantity; ``replicate_*``: the same per bootstrap
    replicate, [B] and [B, ...].
    """

    count: Tensor
    heads: Tensor
    heads_abs: Tensor
    ranked: Tensor
    replicate_count: Tensor
    replicate_ranked: Tensor

    @classmethod
    def of(
        cls, scores: dict[str, Tensor], graph: EdgeGraph, selection: Selection, weights: Tensor, replicate_weights: Tensor
    ) -> ScoreSums:
        """Sums of per-pair ``scores`` (probes.scoring.score_pairs) with ``weights`` [n] and ``replicate_weights`` [B, n].

        At edge level a head's own score is its node score (or, for exact edge patching, which
        has none, the sum of its edges).
        """
        if selection.level == "edge":
            nodes = scores["nodes"] if "nodes" in scores else scores["edges"].sum(-1)
            heads, ranked = graph.per_head(nodes.double()), selection.ranked(scores["edges"].double())
        else:
            heads = scores["heads"].double()
            ranked = selection.ranked(heads)
        weights, replicate_weights = weights.double(), replicate_weights.double()
        return cls(
            count=weights.sum().reshape(1),
            heads=torch.einsum("n,n...->...", weights, heads),
            heads_abs=torch.einsum("n,n...->...", weights, heads.abs()),
            ranked=torch.einsum("n,n...->...", weights, ranked),
            replicate_count=replicate_weights.sum(1),
            replicate_ranked=torch.einsum("bn,n...->b...", replicate_weights, ranked),
        )

    @staticmethod
    def shapes(graph: EdgeGraph, level: str, replicates: int) -> dict[str, tuple[int, ...]]:
        """Each field's shape for a model's graph, level and replicate count."""
        heads = (graph.num_layers, graph.num_heads)
        ranked = tuple(graph.valid.shape) if level == "edge" else heads
        return {"count": (1,), "heads": heads, "heads_abs": heads, "ranked": ranked,
                "replicate_count": (replicates,), "replicate_ranked": (replicates, *ranked)}

    @classmethod
    def zeros(cls, shapes: dict[str, tuple[int, ...]]) -> ScoreSums:
        return cls(**{name: torch.zeros(shape, dtype=torch.float64, device="cpu") for name, shape in shapes.items()})

    def flatten(self) -> Tensor:
        """All fields in one float64 vector, in field order (for one all-reduce)."""
        return torch.cat([getattr(self, item.name).double().reshape(-1) for item in fields(self)])

    @classmethod
    def unflatten(cls, flat: Tensor, shapes: dict[str, tuple[int, ...]]) -> ScoreSums:
        expected = sum(math.prod(shape) for shape in shapes.values())
        if flat.numel() != expected:
            raise ValueError(f"{flat.numel()} values for fields of {expected}")
        values, offset = {}, 0
        for name, shape in shapes.items():
            values[name] = flat[offset : offset + math.prod(shape)].view(shape)
            offset += math.prod(shape)
        return cls(**values)


def head_importance(ranking: Tensor, graph: EdgeGraph) -> Tensor:
    """[..., L, H] share of the ranking per head: its own entry (node level) or its outgoing edges' sum.

    Normalised to sum 1 over the heads; heads that were not scored (NaN) stay NaN.
    """
    per_head = graph.per_head(ranking.sum(-1)) if ranking.shape[-2:] == graph.valid.shape else ranking
    total = per_head.nansum((-2, -1), keepdim=True)
    return per_head / total.clamp_min(torch.finfo(per_head.dtype).tiny)


def _membership(circuits: list[Circuit], shape: tuple[int, ...]) -> Tensor:
    """[B, L, H] bool: which heads each circuit holds."""
    members = torch.zeros(len(circuits), *shape, dtype=torch.bool, device="cpu")
    for index, circuit in enumerate(circuits):
        for layer, head in circuit.heads:
            members[index, layer, head] = True
    return members


@dataclass(frozen=True)
class SnapshotStats:
    """One snapshot's scores, circuit and uncertainty (see the module docstring).

    ``pair_weight``: the pairs' total weight; ``mean``/``mean_abs``: [L, H] signed and absolute mean head
    scores; ``ranking``: what the circuit is selected from; ``importance`` [L, H] and its
    ``importance_interval`` [2, L, H] (2.5% and 97.5% over replicates); ``replicates`` [B, L, H]
    bool, the heads of each replicate circuit; ``faithfulness`` of the circuit and its 95% bootstrap
    ``faithfulness_interval`` when measured (``with_faithfulness``).
    """

    pair_weight: float
    mean: Tensor
    mean_abs: Tensor
    ranking: Tensor
    importance: Tensor
    importance_interval: Tensor
    circuit: Circuit
    replicates: Tensor
    faithfulness: float | None = None
    faithfulness_interval: tuple[float, float] | None = None

    @classmethod
    def of(cls, sums: ScoreSums, graph: EdgeGraph, selection: Selection, scored: Tensor | None = None) -> SnapshotStats:
        """The statistics of summed scores; NonFiniteScores if they hold NaN or inf.

        ``scored`` [L, H] bool marks the heads that were scored when only some were (exact patching
        of chosen heads): the others hold NaN by design and are left out of the finiteness check.
        """
        count = float(sums.count)
        if count <= 0:
            raise ValueError("no probe pair was scored")
        parts = [sums.heads, sums.ranked, sums.replicate_ranked]
        if scored is not None:
            parts = [part[..., scored] if part.shape[-2:] == scored.shape else part for part in parts]
        _check_finite(parts, "head scores")
        ranking = (sums.ranked / count).abs()
        replicate_rankings = (sums.replicate_ranked / sums.replicate_count.clamp_min(1.0).view(-1, *[1] * ranking.dim())).abs()
        shape = (graph.num_layers, graph.num_heads)
        circuit = selection.circuit(ranking, graph)
        replicate_circuits = [selection.circuit(replicate, graph) for replicate in replicate_rankings]
        interval = torch.quantile(head_importance(replicate_rankings, graph).nan_to_num(0.0),
                                  replicate_rankings.new_tensor(INTERVAL), dim=0)
        return cls(
            pair_weight=count,
            mean=sums.heads / count,
            mean_abs=sums.heads_abs / count,
            ranking=ranking,
            importance=head_importance(ranking, graph),
            importance_interval=interval,
            circuit=circuit,
            replicates=_membership(replicate_circuits, shape),
        )

    def with_faithfulness(self, effect_sums: Tensor) -> SnapshotStats:
        """These statistics with the circuit's faithfulness, from effect sums [1 + B, 2]: (circuit run,
        empty circuit run) summed over the pairs with their weights, then with each replicate's weights."""
        _check_finite([effect_sums], "circuit effects")
        circuit_sums, empty_sums = effect_sums.double().unbind(-1)
        return replace(self, faithfulness=faithfulness(float(circuit_sums[0]), float(empty_sums[0])),
                       faithfulness_interval=faithfulness_interval(circuit_sums[1:], empty_sums[1:]))

    @property
    def membership(self) -> Tensor:
        """[L, H] share of replicate circuits holding each head."""
        return self.replicates.double().mean(0)

    @property
    def stability(self) -> float:
        """Mean Jaccard similarity of the replicate circuits with the reported circuit (1 when both are empty)."""
        reported = _membership([self.circuit], tuple(self.replicates.shape[1:]))
        shared = (self.replicates & reported).flatten(1).sum(1).double()
        either = (self.replicates | reported).flatten(1).sum(1).double()
        return float(torch.where(either > 0, shared / either.clamp_min(1.0), 1.0).mean())

    @property
    def null_churn(self) -> float:
        """Expected births + prunings between two distinct replicates of this snapshot.

        For a head held by k of B replicates, two distinct replicates disagree on it with
        probability 2k(B - k) / (B(B - 1)); the sum over heads is the expected churn.
        """
        replicates = self.replicates.shape[0]
        if replicates < 2:
            return float("nan")
        held = self.replicates.flatten(1).sum(0).double()
        return float((2 * held * (replicates - held)).sum() / (replicates * (replicates - 1)))
