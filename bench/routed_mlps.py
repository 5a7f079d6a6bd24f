"""What EAP-IG measures through routed MLPs (MoE): the gap to exact patching and the completeness gap.

IG integrates the metric's gradient along the path from the corrupted to the clean input embeddings. Where a
top-k router changes a token's experts along that path, the metric jumps, and a gradient never sees a jump:
the jump's share of the total effect is attributed to no node, however many points are taken. Two figures
per family, on tiny random models of the installed transformers (tests/probes/tiny_models.py, float64,
logit_diff, 16 random pairs):

- completeness gap: |input node score - (L(corrupted) - L(clean))| / |L(corrupted) - L(clean)| (the input
  embedding is a cut of the whole graph, so for a smooth model this falls towards 0 as points grow);
- node gap: max |EAP-IG - exact head patching| / max |exact head patching|, and their Spearman rank correlation.

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.routed_mlps
"""

from __future__ import annotations

import torch
from scipy.stats import spearmanr

from sparks.probes.attribution import node_scores
from sparks.probes.edges import edge_scores
from sparks.probes.forward import target_logits
from sparks.probes.metrics import get_metric
from sparks.probes.patching import exact_head_effects
from sparks.probes.sites import resolve
from tests.probes.tiny_models import family_model, random_pairs

FAMILIES = ("llama", "qwen2", "gemma2", "qwen3_moe", "mixtral", "gpt_oss", "llama4_text")


def main() -> None:
    torch.set_num_threads(1)
    print("| family | routed | completeness gap, 16 points | 64 | 256 | node gap, 64 points | Spearman |")
    print("|---|---|---|---|---|---|---|")
    for family in FAMILIES:
        model = family_model(family, layers=3)
        batch = random_pairs(batch=16, length=10, seed=5, ragged=family != "gemma2")
        sites = resolve(model)
        metric = get_metric("logit_diff")
        with torch.no_grad():
            logits = {name: target_logits(sites, batch.attention_mask, batch.target_positions, input_ids=ids)
                      for name, ids in (("clean", batch.clean_ids), ("corrupted", batch.corrupted_ids))}
        total = metric(logits["corrupted"], logits["clean"], batch.clean_answer_ids, batch.corrupted_answer_ids).sum()
        gaps = []
        for steps in (16, 64, 256):
            nodes = edge_scores(model, batch, "logit_diff", steps=steps, chunk_size=16).nodes
            gaps.append(abs(nodes[:, 0].sum() - total).item() / abs(total).item())
        attributed = node_scores(model, batch, "logit_diff", steps=64, chunk_size=16).mean(0)
        exact = exact_head_effects(model, batch, "logit_diff").mean(0)
        node_gap = ((attributed - exact).abs().max() / exact.abs().max()).item()
        rho = spearmanr(attributed.flatten(), exact.flatten()).statistic
        routed = "yes" if sites.architecture.routed else "no"
        print(f"| {family} | {routed} | {gaps[0]:.1e} | {gaps[1]:.1e} | {gaps[2]:.1e} | {node_gap:.1%} | {rho:.3f} |", flush=True)


if __name__ == "__main__":
    main()
