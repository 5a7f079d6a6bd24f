"""How far the model's dtype moves head scores and circuits: float32, bf16 and fp16 against float64.

    OMP_NUM_THREADS=1 .venv/bin/python bench/precision.py --threads 1              # both models, both levels: 6 min, 6 GB peak
    .venv/bin/python bench/precision.py --models base --levels node
    .venv/bin/python bench/precision.py --models wide --levels node --wide-layers 28   # full depth: 1.3 B parameters, 18 GB peak

The same probe pairs are scored with the tracker's call (probes.scoring.score_pairs with the default
TrackerConfig's method, metric, IG steps, IG rule and batch size: eap-ig, kl, 5, midpoint, 16) on
copies of one model cast with ``.to(dtype)``, at node and at edge level. Against float64, per dtype
and level:

- relative error of the mean scores over the pairs, max |mean_d - mean_64| / max |mean_64| (at edge
  level over the [U, D] edge scores) and by norm, ||mean_d - mean_64|| / ||mean_64|| (less at the
  mercy of one entry), and of the per-pair scores, max |s_d - s_64| / max |s_64| over every pair's;
- Spearman rank correlation of the mean |score| (heads; at edge level the graph's valid edges);
- the circuit, selected as the tracker selects it (``TrackerConfig(level=...).selection`` with its
  defaults, probes.statistics / probes.circuit: node level the fewest heads holding half the mean
  |score|, edge level the top 5000 edges pruned to paths and thresholded at tau = 0.1): its size
  and the Jaccard similarity of its heads with float64's (at edge level also of its edges).

A last row, "float64, bf16 points", scores the float64 model with the IG weights rounded to bf16
(0.1001, 0.3008, 0.6992, 0.8984 for the midpoints 0.1, 0.3, 0.7, 0.9), as probes.ig.integrate
cast them to a bf16 model's dtype before it interpolated in float32: the rounded points' own error,
apart from bf16 arithmetic.

Models: the trained tiny base (``--base``, 4 layers, 8 query / 2 kv heads) on the tracker's own probe
pairs (the default TrackerConfig's draw, callbacks.config.TrackerConfig.probe_set: 64 numbers pairs), and a
randomly initialised Qwen2 with Qwen2.5-Math-1.5B's head geometry (12 query heads, 2 kv heads,
head_dim 128, hidden 1536, MLP 8960; bench/random_models.py) at ``--wide-layers`` layers of its 28
(8: 380 M parameters) on the first ``--wide-pairs`` (4) of the same pairs, to keep a CPU run to
minutes and its memory to 6 GB. Each dtype's copy is built afresh in float32 and cast.

On a CPU, bf16 and fp16 run the CPU's kernels (oneDNN/AMX or upcasting fallbacks), which need not
round as a GPU's do; the figures are for this machine's kernels.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

import torch
import transformers
from random_models import wide_model
from scipy.stats import spearmanr
from torch import Tensor

from sparks.callbacks.config import TrackerConfig
from sparks.probes.circuit import Circuit
from sparks.probes.edges import EdgeGraph
from sparks.probes.ig import ig_points
from sparks.probes.pairs import Pair
from sparks.probes.scoring import graph_of, score_pairs
from sparks.probes.statistics import Selection
from sparks.tasks.tokenizer import build_tokenizer

DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
LEVELS = ("node", "edge")
ROUNDED = "float64, bf16 points"
"""The float64 model with the IG weights rounded to bf16, as probes.ig.integrate cast them before it
interpolated in float32: the error of the rounded points alone, without bf16 arithmetic."""
POINT_USERS = ("sparks.probes.attribution", "sparks.probes.edges")
"""The modules whose ``ig_points`` the ROUNDED row replaces (node and edge scoring)."""


@contextlib.contextmanager
def rounded_points(dtype: torch.dtype) -> Iterator[None]:
    """Scoring inside this block takes the IG points rounded to ``dtype`` (and back to float64)."""
    def rounded(*args, **kwargs) -> Tensor:
        return ig_points(*args, **kwargs).to(dtype).double()

    with contextlib.ExitStack() as stack:
        for module in POINT_USERS:
            stack.enter_context(mock.patch(f"{module}.ig_points", rounded))
        yield


def scores_of(model: torch.nn.Module, pairs: list[Pair], level: str, pad_id: int, config: TrackerConfig) -> Tensor:
    """Per-pair scores as the tracker computes them ([N, L, H] node, [N, U, D] edge), in float64."""
    scores = score_pairs(model, pairs, method=config.method, level=level, metric=config.metric, steps=config.ig_steps,
                         ig_rule=config.ig_rule, batch_size=config.batch_size, pad_id=pad_id, progress=False)
    return scores["heads" if level == "node" else "edges"].double()


def relative_error(value: Tensor, reference: Tensor) -> float:
    """max |value - reference| / max |reference|."""
    return float((value - reference).abs().max() / reference.abs().max())


def relative_norm_error(value: Tensor, reference: Tensor) -> float:
    """||value - reference|| / ||reference||."""
    return float((value - reference).norm() / reference.norm())


def jaccard(a: set, b: set) -> float:
    """|a & b| / |a | b|; 1 for two empty sets."""
    return len(a & b) / len(a | b) if a | b else 1.0


class Summary:
    """One dtype's scores at one level, reduced to what is compared: means, ranking, circuit."""

    def __init__(self, scores: Tensor, selection: Selection, graph: EdgeGraph) -> None:
        if not scores.isfinite().all():
            raise SystemExit(f"non-finite scores: {int((~scores.isfinite()).sum())} of {scores.numel()}")
        self.scores = scores
        self.mean = scores.mean(0)
        self.ranking = selection.ranked(scores).mean(0)
        self.ranked = self.ranking[graph.valid] if selection.level == "edge" else self.ranking.flatten()
        self.circuit: Circuit = selection.circuit(self.ranking, graph)

    def row(self, reference: Summary, level: str) -> list[str]:
        """Table cells against float64's summary ``reference``."""
        rho = spearmanr(self.ranked.numpy(), reference.ranked.numpy()).statistic
        heads = jaccard(set(self.circuit.heads), set(reference.circuit.heads))
        edges = f"{jaccard(set(self.circuit.edges), set(reference.circuit.edges)):.3f}" if level == "edge" else "–"
        return [f"{relative_error(self.mean, reference.mean):.1e}", f"{relative_norm_error(self.mean, reference.mean):.1e}",
                f"{relative_error(self.scores, reference.scores):.1e}", f"{rho:.5f}", f"{len(self.circuit.heads)}",
                f"{heads:.3f}", edges]


def model_rows(name: str, load: Callable[[], torch.nn.Module], pairs: list[Pair], pad_id: int, args: argparse.Namespace) -> list[str]:
    """Markdown rows of one model: per level, float64's reference, then each other dtype against it.

    ``load`` gives the model afresh (float32, as stored or seeded) for each dtype, so only one cast
    copy is held at a time: the 28-layer random model is 1.3 B parameters.
    """
    rows = []
    for level in args.levels:
        selection = TrackerConfig(level=level).selection
        summaries: dict[str, Summary] = {}
        for dtype in ("float64", *args.dtypes, *([ROUNDED] if args.rounded_points else [])):
            cast = load().to(DTYPES.get(dtype, torch.float64)).to(args.device).eval()
            graph = graph_of(cast)
            begin = time.perf_counter()
            with rounded_points(torch.bfloat16) if dtype == ROUNDED else contextlib.nullcontext():
                scores = scores_of(cast, pairs, level, pad_id, TrackerConfig())
            seconds = time.perf_counter() - begin
            del cast
            summaries[dtype] = summary = Summary(scores, selection, graph)
            if dtype == "float64":
                cells = ["(reference)", "", "", "", f"{len(summary.circuit.heads)}", "", "" if level == "edge" else "–"]
            else:
                cells = summary.row(summaries["float64"], level)
            rows.append(f"| {name} | {level} | {dtype} | " + " | ".join(cells) + f" | {seconds:.1f} |")
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="outputs/tiny-base", help="trained tiny base model directory")
    parser.add_argument("--models", nargs="+", choices=["base", "wide"], default=["base", "wide"])
    parser.add_argument("--levels", nargs="+", choices=LEVELS, default=list(LEVELS))
    parser.add_argument("--dtypes", nargs="+", choices=[name for name in DTYPES if name != "float64"],
                        default=["float32", "bfloat16", "float16"], help="compared against float64")
    parser.add_argument("--wide-layers", type=int, default=8, help="layers of the Qwen2.5-Math-1.5B-geometry random model (28 in the real one)")
    parser.add_argument("--wide-pairs", type=int, default=4, help="probe pairs scored on the random model")
    parser.add_argument("--no-rounded-points", dest="rounded_points", action="store_false",
                        help=f"leave out the row {ROUNDED!r} (the float64 model with the IG weights rounded to bf16)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu", help="where to score: cuda for a GPU's bf16/fp16 kernels (bench/gpu_checks.sh)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if "base" in args.models and not Path(args.base, "model.safetensors").exists():
        raise SystemExit(f"{args.base} not found: train it with `make base-model`")
    tokenizer = build_tokenizer()  # the world's tokenizer, built in code: the one the base model was trained with
    config = TrackerConfig()
    pairs = config.probe_set.build(tokenizer)
    print(f"{args.device}, {args.threads} threads, torch {torch.__version__}; the tracker's call ({config.method}, {config.metric}, "
          f"{config.ig_steps} points, {config.ig_rule}) "
          f"on the tracker's probe pairs ({len(pairs)} numbers pairs, up to {max(len(pair.clean_ids) for pair in pairs)} tokens)\n")
    print("| model | level | dtype | rel. error, mean score (max) | rel. error, mean score (norm) | rel. error, per pair (max) "
          "| Spearman, mean \\|score\\| | circuit heads | Jaccard, heads | Jaccard, edges | seconds |")
    print("|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
    if "base" in args.models:
        def base() -> torch.nn.Module:
            return transformers.AutoModelForCausalLM.from_pretrained(args.base, dtype=torch.float32)

        model_rows(f"tiny base 4x8 (2 kv), {len(pairs)} pairs", base, pairs, tokenizer.pad_token_id, args)
    if "wide" in args.models:
        def wide() -> torch.nn.Module:
            return wide_model(len(tokenizer), head_dim=128, layers=args.wide_layers)

        name = f"random {args.wide_layers}x12 (2 kv), head_dim 128, hidden 1536, {args.wide_pairs} pairs"
        model_rows(name, wide, pairs[: args.wide_pairs], tokenizer.pad_token_id, args)


if __name__ == "__main__":
    main()
