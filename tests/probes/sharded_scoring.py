"""Run under torchrun with 2 CPU processes: score heads and edges of an FSDP2-sharded model.

    torchrun --nproc_per_node 2 tests/probes/sharded_scoring.py MODEL_DIR OUT_DIR

Every rank scores the same pairs on the sharded model (each decoder layer and the root wrapped by
``fully_shard``, gloo); rank 0 also scores the unsharded model and saves both for the test to compare.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_file
from torch.distributed.fsdp import fully_shard
from transformers import AutoModelForCausalLM, AutoTokenizer

from sparks.probes.schemes import numbers_pairs
from sparks.probes.scoring import score_pairs
from sparks.tasks import arith


def main(model_dir: str, out_dir: str) -> None:
    dist.init_process_group("gloo")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    pairs = numbers_pairs(tokenizer, arith.problems("probe", [2, 3], 6, seed=0))
    sharded = AutoModelForCausalLM.from_pretrained(model_dir)
    for layer in sharded.model.layers:
        fully_shard(layer)
    fully_shard(sharded)
    results = {}
    for level in ("node", "edge"):
        for name, value in score_pairs(sharded, pairs, level=level, batch_size=4, progress=False).items():
            results[f"sharded/{level}/{name}"] = value
    if dist.get_rank() == 0:
        plain = AutoModelForCausalLM.from_pretrained(model_dir)
        for level in ("node", "edge"):
            for name, value in score_pairs(plain, pairs, level=level, batch_size=4, progress=False).items():
                results[f"plain/{level}/{name}"] = value
        save_file({name: value.contiguous() for name, value in results.items()}, str(Path(out_dir) / "scores.safetensors"))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:3])
