"""Full parameters of a few modules of a sharded model, for the reads that happen outside its forward.

Scoring runs the model's own forward and backward, which gather sharded parameters themselves
(DeepSpeed ZeRO-3's module hooks, FSDP's per-unit all-gathers). Edge scoring also reads weights
directly (the q/k/v/o maps, the norm in the vector-Jacobian product, the embedding), and those reads
must see whole tensors: inside ``full_parameters(...)`` they do, gathered for just those modules
(one decoder layer at a time), and sharded again on exit. Gathering is a collective call: every
rank must enter the same ``full_parameters`` blocks in the same order. Unsharded models pass through.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

from torch import Tensor, nn


def _fsdp2_owners(root: nn.Module, modules: list[nn.Module]) -> list[nn.Module]:
    """The FSDP2 units (``fully_shard``) whose parameter groups hold ``modules``' parameters."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:
        return []
    units = {name: module for name, module in root.named_modules() if isinstance(module, FSDPModule)}
    if not units:
        return []
    names = {id(module): name for name, module in root.named_modules()}
    owners: list[nn.Module] = []
    for module in modules:
        name = names[id(module)]
        covering = [unit for unit in units if unit == "" or name == unit or name.startswith(unit + ".")]
        owner = units[max(covering, key=len)] if covering else None
        if owner is not None and all(owner is not known for known in owners):
            owners.append(owner)
    return owners


def _zero3_parameters(modules: list[nn.Module]) -> list[nn.Parameter]:
    return [parameter for module in modules for parameter in module.parameters() if hasattr(parameter, "ds_id")]


@contextmanager
def full_parameters(root: nn.Module, *modules: nn.Module) -> Iterator[Callable[[Tensor], Tensor]]:
    """Gather ``modules``' parameters (DeepSpeed ZeRO-3, FSDP2, FSDP1) for the block's duration.

    Yields ``keep``: a tensor derived from gathered weights must pass through it to outlive the
    block (it copies only when something was gathered, since resharding frees the full storage).
    """
    modules_list = list(modules)
    with ExitStack() as stack:
        gathered = False
        zero3 = _zero3_parameters(modules_list)
        if zero3:
            import deepspeed

            stack.enter_context(deepspeed.zero.GatheredParameters(zero3, modifier_rank=None))
            gathered = True
        owners = _fsdp2_owners(root, modules_list)
        for owner in owners:
            owner.unshard()
            stack.callback(owner.reshard)
            gathered = True
        if not owners:
            from torch.distributed.fsdp import FullyShardedDataParallel

            if any(isinstance(module, FullyShardedDataParallel) for module in root.modules()):
                stack.enter_context(FullyShardedDataParallel.summon_full_params(root, writeback=False))
                gathered = True
        yield (lambda tensor: tensor.detach().clone()) if gathered else (lambda tensor: tensor)
