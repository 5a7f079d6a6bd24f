"""Run under torchrun with 2 CPU processes: score heads and edges of the model sharded three ways.

    torchrun --nproc_per_node 2 -m tests.probes.sharded_scoring MODEL_DIR OUT_DIR

Every rank scores the same pairs on the model sharded by FSDP2 (``fully_shard`` on each decoder
layer and the root) and by FSDP1 (``FullyShardedDataParallel`` wrapping each decoder layer, with the
original parameters and with flat ones, accelerate's default), all on gloo. Inside every
``full_parameters`` block that scoring enters it records which decoder layers it asked for and which
hold whole weights on this rank. Rank 0 also scores the unsharded model and saves the scores
(scores.safetensors) and the records (gathered.json) for the test to compare.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_file
from torch import Tensor, nn
from torch.distributed.fsdp import FullyShardedDataParallel, fully_shard
from torch.distributed.fsdp.wrap import ModuleWrapPolicy
from torch.distributed.tensor import DTensor
from transformers import AutoModelForCausalLM, AutoTokenizer

import sparks.probes.edges
import sparks.probes.gather
from sparks.probes.gather import full_parameters
from sparks.probes.schemes import numbers_pairs
from sparks.probes.scoring import score_pairs
from sparks.tasks import arith

LEVELS = ("edge", "node")  # edge first: its first gather (layer 0's q/k/v) comes before any forward
MODULES_READING_WEIGHTS = (sparks.probes.gather, sparks.probes.edges)  # gather: token_embeddings


def fsdp2(model: nn.Module) -> nn.Module:
    for layer in model.model.layers:
        fully_shard(layer)
    fully_shard(model)
    return model


def fsdp1(use_orig_params: bool) -> Callable[[nn.Module], nn.Module]:
    def wrap(model: nn.Module) -> nn.Module:
        policy = ModuleWrapPolicy({type(model.model.layers[0])})
        return FullyShardedDataParallel(model, auto_wrap_policy=policy, device_id=torch.device("cpu"),
                                        use_orig_params=use_orig_params)

    return wrap


SHARDINGS = {"fsdp2": fsdp2, "fsdp1": fsdp1(True), "fsdp1-flat": fsdp1(False)}


def whole_layers(layers: list[nn.Module]) -> list[int]:
    """The decoder layers holding a whole matrix on this rank: sharded, a matrix is a DTensor (FSDP2)
    or part of a 1-D shard (FSDP1)."""
    return [index for index, layer in enumerate(layers)
            if any(p.dim() >= 2 and not isinstance(p, DTensor) for p in layer.parameters())]


@contextmanager
def recording(layers: list[nn.Module], calls: list[dict[str, list[int]]]) -> Iterator[None]:
    """Have scoring's ``full_parameters`` blocks record (asked layers, whole layers) in ``calls``."""

    @contextmanager
    def recorded(root: nn.Module, *modules: nn.Module) -> Iterator[Callable[[Tensor], Tensor]]:
        asked = [index for index, layer in enumerate(layers)
                 if any(inner is module for inner in layer.modules() for module in modules)]
        with full_parameters(root, *modules) as keep:
            calls.append({"asked": asked, "whole": whole_layers(layers)})
            yield keep

    for module in MODULES_READING_WEIGHTS:
        module.full_parameters = recorded
    try:
        yield
    finally:
        for module in MODULES_READING_WEIGHTS:
            module.full_parameters = full_parameters


def main(model_dir: str, out_dir: str) -> None:
    dist.init_process_group("gloo")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    pairs = numbers_pairs(tokenizer, arith.problems("probe", [2, 3], 6, seed=0))
    results: dict[str, Tensor] = {}
    records: dict[str, list[dict[str, list[int]]]] = {}
    for sharding, wrap in SHARDINGS.items():
        model = wrap(AutoModelForCausalLM.from_pretrained(model_dir))
        calls = records.setdefault(sharding, [])
        with recording(list(model.model.layers), calls):
            for level in LEVELS:
                for name, value in score_pairs(model, pairs, level=level, batch_size=4, progress=False).items():
                    results[f"{sharding}/{level}/{name}"] = value
    if dist.get_rank() == 0:
        plain = AutoModelForCausalLM.from_pretrained(model_dir)
        for level in LEVELS:
            for name, value in score_pairs(plain, pairs, level=level, batch_size=4, progress=False).items():
                results[f"plain/{level}/{name}"] = value
        save_file({name: value.contiguous() for name, value in results.items()}, str(Path(out_dir) / "scores.safetensors"))
        (Path(out_dir) / "gathered.json").write_text(json.dumps(records))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:3])
