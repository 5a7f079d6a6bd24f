"""What each residual structure of the architecture table costs at edge level, against Llama's block.

Edge EAP-IG (5 points, one per pass, the tracker's default) on tiny random models of each family with the
same head geometry (tests/probes/tiny_models.py: 4 layers, 4 heads of 16, 2 kv heads, hidden 64, float32),
16 random pairs of 24 tokens, timed by the process's CPU time on one thread, families interleaved and the
median of ``--repeats`` taken, as a ratio to Llama's. Attention output norms (Gemma 2, OLMo 2) carry each
head's write through the norm's Jacobian at every point and contract reads point by point.

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.structure_cost --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sparks.probes.edges import edge_scores
from sparks.probes.sites import resolve
from tests.probes.tiny_models import family_model, random_pairs

FAMILIES = ("llama", "granite", "phi3", "cohere", "gemma2", "olmo2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    models = {family: family_model(family, layers=4, dtype=torch.float32) for family in FAMILIES}
    batch = random_pairs(batch=16, length=24, seed=3, ragged=False)
    times: dict[str, list[float]] = {family: [] for family in FAMILIES}
    for _ in range(args.repeats):
        for family, model in models.items():
            start = time.process_time()
            edge_scores(model, batch, "kl", steps=5, chunk_size=1)
            times[family].append(time.process_time() - start)
    base = statistics.median(times["llama"])
    print("| family | structure | CPU s (median) | x Llama |")
    print("|---|---|---|---|")
    for family in FAMILIES:
        arch = resolve(models[family]).architecture
        structure = ", ".join(name for name, on in (("output norms", arch.attention_out_norm), ("no pre-norm", arch.attention_norm is None),
                                                    ("fused qkv", arch.qkv_proj), ("parallel", arch.parallel),
                                                    ("multipliers", arch.residual_multiplier)) if on) or "pre-norm"
        median = statistics.median(times[family])
        print(f"| {family} | {structure} | {median:.3f} | {median / base:.2f} |")


if __name__ == "__main__":
    main()
