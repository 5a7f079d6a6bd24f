"""Circuit selection from edge scores (docs/method.md, "Circuit selection") and from head scores, and its storage.

Edges: keep the top n by mean |score|, drop nodes without a path input -> logits through kept
edges, then drop edges below ``tau`` times the largest kept |score| and prune again. Ties break
by position in the graph's order (earlier first), so a selection is deterministic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from sparks.probes.edges import EdgeGraph


@dataclass(frozen=True)
class Circuit:
    """Heads and MLPs on the kept paths, the kept edges, and the [U, D] mean |score| ranked."""

    heads: list[tuple[int, int]]
    mlps: list[int]
    edges: list[tuple[str, str]]
    scores: Tensor
    upstream: list[str]
    downstream: list[str]

    def save(self, directory: str | Path) -> None:
        """Write ``circuit.json`` and ``scores.safetensors`` into ``directory``."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        record = {
            "heads": [list(head) for head in self.heads],
            "mlps": self.mlps,
            "edges": [list(edge) for edge in self.edges],
            "upstream": self.upstream,
            "downstream": self.downstream,
        }
        (path / "circuit.json").write_text(json.dumps(record, indent=1))
        save_file({"scores": self.scores.detach().cpu().contiguous()}, str(path / "scores.safetensors"))

    @classmethod
    def load(cls, directory: str | Path) -> Circuit:
        path = Path(directory)
        record = json.loads((path / "circuit.json").read_text())
        return cls(
            heads=[tuple(head) for head in record["heads"]],
            mlps=record["mlps"],
            edges=[tuple(edge) for edge in record["edges"]],
            scores=load_file(str(path / "scores.safetensors"))["scores"],
            upstream=record["upstream"],
            downstream=record["downstream"],
        )


def _ranking(scores: Tensor) -> Tensor:
    """Mean |score| over examples for [B, ...] scores; |score| for already aggregated ones."""
    return scores.abs().mean(0) if scores.dim() == 3 else scores.abs()


def _on_paths(graph: EdgeGraph, kept: Tensor) -> tuple[Tensor, Tensor]:
    """Upstream nodes on a kept path input -> logits, and the kept edges between such nodes."""
    feeds = torch.zeros(len(graph.downstream), len(graph.upstream), dtype=torch.bool, device="cpu")
    for j, owners in enumerate(graph.feeds):
        feeds[j, list(owners)] = True
    sink = torch.zeros(len(graph.downstream), dtype=torch.bool, device="cpu")
    sink[-1] = True
    reached = torch.zeros(len(graph.upstream), dtype=torch.bool, device="cpu")
    reached[0] = True
    for node in range(1, len(reached)):  # upstream order is topological
        fed = (kept & reached[:, None]).any(0)
        reached[node] = (fed & feeds[:, node]).any()
    useful = torch.zeros_like(reached)
    for node in reversed(range(len(useful))):
        useful[node] = (kept[node] & (sink | (feeds & useful).any(1))).any()
    on_path = reached & useful
    into_path = sink | (feeds & on_path).any(1)
    return on_path, kept & on_path[:, None] & into_path[None, :]


def select_edges(scores: Tensor, graph: EdgeGraph, top_n: int, tau: float = 0.0) -> Circuit:
    """The circuit of the ``top_n`` edges by mean |score|, pruned to paths, thresholded by ``tau``.

    ``scores`` is per-example [B, U, D] or already aggregated [U, D]; only valid edges compete.
    """
    if top_n < 1:
        raise ValueError(f"top_n must be >= 1, got {top_n}")
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"tau is relative to the largest kept score and must lie in [0, 1], got {tau}")
    ranking = _ranking(scores).float().cpu()  # selection is bookkeeping on the CPU, with the graph's masks
    if ranking.shape != graph.valid.shape:
        raise ValueError(f"scores are {tuple(ranking.shape)} per example, the graph has {tuple(graph.valid.shape)}")
    candidates = graph.valid.flatten().nonzero().squeeze(1)
    order = torch.sort(-ranking.flatten()[candidates], stable=True).indices
    kept = torch.zeros(ranking.numel(), dtype=torch.bool, device="cpu")
    kept[candidates[order[:top_n]]] = True
    on_path, kept = _on_paths(graph, kept.view_as(ranking))
    if tau > 0 and kept.any():
        on_path, kept = _on_paths(graph, kept & (ranking >= tau * ranking[kept].max()))
    heads, mlps = [], []
    for node in on_path.nonzero().squeeze(1).tolist():
        name = graph.upstream[node]
        if name.startswith("a"):
            layer, head = name[1:].split(".h")
            heads.append((int(layer), int(head)))
        elif name.startswith("m"):
            mlps.append(int(name[1:]))
    edges = [(graph.upstream[u], graph.downstream[d]) for u, d in kept.nonzero().tolist()]
    return Circuit(heads, mlps, edges, ranking, list(graph.upstream), list(graph.downstream))


def select_heads(scores: Tensor, top_k: int | None = None, mass: float | None = None) -> list[tuple[int, int]]:
    """Heads by node score [B, L, H] or [L, H], ranked by mean |score| (ties: lower index first).

    Either the ``top_k`` best, or the fewest whose |score| reaches fraction ``mass`` of the total.
    """
    if (top_k is None) == (mass is None):
        raise ValueError("give exactly one of top_k and mass")
    ranking = _ranking(scores).float()
    num_heads = ranking.shape[1]
    values, order = torch.sort(-ranking.flatten(), stable=True)
    if top_k is not None:
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {top_k}")
        count = min(top_k, len(order))
    else:
        assert mass is not None, "exactly one of top_k and mass is given, checked above"
        if not 0.0 < mass <= 1.0:
            raise ValueError(f"mass must lie in (0, 1], got {mass}")
        cumulative = torch.cumsum(-values, 0)
        count = int((cumulative < mass * cumulative[-1]).sum()) + 1
    return [divmod(int(index), num_heads) for index in order[:count]]


def head_circuit(scores: Tensor, top_k: int | None = None, mass: float | None = None) -> Circuit:
    """A circuit of heads alone, from node scores [B, L, H] or [L, H] (see select_heads).

    It has no edges or MLPs; its ``scores`` are the [L, H] mean |score| the heads were ranked by.
    """
    heads = select_heads(scores, top_k=top_k, mass=mass)
    return Circuit(heads, [], [], _ranking(scores).float(), [], [])
