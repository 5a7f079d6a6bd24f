"""Full parameters of a few modules of a sharded model, for the reads that happen outside its forward.

Scoring runs the model's own forward and backward, which gather sharded parameters themselves
(DeepSpeed ZeRO-3's module hooks, FSDP's per-unit all-gathers). Scoring also reads weights
directly (the embedding that integrated gradients start from; at edge level the q/k/v/o maps and the
norm in the vector-Jacobian product), and those reads must see whole tensors: inside
``full_parameters(...)`` they do, gathered for just those modules, and sharded again on exit. Under
FSDP that means the sharding units holding them (``sharding_units``): a decoder layer's unit for its
projections and norms, the root unit for the embedding, never the whole model. Gathering is a
collective call: every rank must enter the same ``full_parameters`` blocks in the same order.
Unsharded models pass through.

Under ZeRO-3 a block gathers only the parameters DeepSpeed holds partitioned, and partitions only
those again; one it holds whole (persistent, prefetched, or in use by a module) is left as it is.
Scoring's backward passes are ``torch.autograd.grad`` on the bare module, not ``engine.backward``,
whose epilogue releases the modules whose post-backward hook never fired (one called with keyword
arguments only, such as a decoder layer's attention, or the model itself). Their parameters, and
those DeepSpeed attached to them (a parameter read during a module's forward outside its owner's,
such as a norm's weight read in a hook on its layer's attention), stay whole and in use until the
next training backward; partitioning one fails ("Cannot free a ZeRO-3 parameter while it is still
active in submodules"). Which parameters are whole is the same on every rank at the same point, as
DeepSpeed's own gathers assume, so the ranks still gather together.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from torch.distributed.fsdp import FSDPModule, FullyShardedDataParallel


def _fsdp1_class() -> type[FullyShardedDataParallel]:
    from torch.distributed.fsdp import FullyShardedDataParallel

    return FullyShardedDataParallel


def _fsdp2_class() -> type[FSDPModule]:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # torch 2.4 and 2.5 keep FSDP2 in a private module
        from torch.distributed._composable.fsdp import FSDPModule
    return FSDPModule


def _unit_classes() -> tuple[type, ...]:
    """The module classes that are FSDP sharding units: FSDP1's wrapper and FSDP2's ``FSDPModule``."""
    return (_fsdp1_class(), _fsdp2_class())


def is_sharded(model: nn.Module) -> bool:
    """Whether ``model``'s parameters are sharded over the ranks (DeepSpeed ZeRO-3, FSDP1, FSDP2).

    Its forward and backward passes then run collectives of their own, which every rank must join.
    """
    classes = _unit_classes()
    return any(isinstance(module, classes) for module in model.modules()) or any(
        hasattr(parameter, "ds_id") for parameter in model.parameters()
    )


def sharding_units(root: nn.Module, modules: list[nn.Module]) -> list[nn.Module]:
    """The FSDP units (FSDP1 ``FullyShardedDataParallel`` or FSDP2 ``fully_shard``) that hold ``modules``' parameters.

    For each module: the innermost unit covering it (the unit its parameters belong to, a unit's own
    parameters being those not under a nested unit) and every unit nested inside it, each unit once,
    in ``root``'s module order. Empty for a model without FSDP units.
    """
    classes = _unit_classes()
    named = list(root.named_modules())
    units = [name for name, module in named if isinstance(module, classes)]
    if not units:
        return []
    by_name = dict(named)
    names = {id(module): name for name, module in named}
    chosen: set[str] = set()
    for module in modules:
        if id(module) not in names:
            raise ValueError(f"full_parameters: {type(module).__name__} is not a submodule of {type(root).__name__}")
        name = names[id(module)]
        covering = [unit for unit in units if unit == "" or name == unit or name.startswith(unit + ".")]
        if covering:
            chosen.add(max(covering, key=len))
        chosen.update(unit for unit in units if name == "" or unit.startswith(name + "."))
    return [by_name[unit] for unit in units if unit in chosen]


def _gather_fsdp1(stack: ExitStack, root: nn.Module, units: list[nn.Module]) -> None:
    """Summon each FSDP1 unit's own parameters (``recurse=False``), resharded when ``stack`` closes.

    FSDP1 sets up its units from the outermost one on first use; a unit summoned on its own before
    the model's first forward would take itself for the root and break that forward, so the outermost
    units are set up first (torch's own first step of ``summon_full_params``; no communication).
    """
    if not units:
        return
    from torch.distributed.fsdp._runtime_utils import _lazy_init

    fsdp1 = _fsdp1_class()
    for outermost in _outermost(root, fsdp1):
        _lazy_init(outermost, outermost)
    for unit in units:
        stack.enter_context(fsdp1.summon_full_params(unit, recurse=False, writeback=False))


def _outermost(root: nn.Module, kind: type) -> list[nn.Module]:
    """The ``kind`` modules under ``root`` (itself included) that no other ``kind`` module contains."""
    if isinstance(root, kind):
        return [root]
    found: list[nn.Module] = []
    for child in root.children():
        found += _outermost(child, kind)
    return found


def _zero3_parameters(modules: list[nn.Module]) -> list[Any]:
    """The ZeRO-3 parameters among ``modules``' (typed Any: DeepSpeed adds the ``ds_*`` attributes torch's type lacks)."""
    return [parameter for module in modules for parameter in module.parameters() if hasattr(parameter, "ds_id")]


def _gather_zero3(stack: ExitStack, root: nn.Module, parameters: list[Any]) -> None:
    """All-gather those of ``parameters`` that DeepSpeed holds partitioned, partitioned again when ``stack`` closes.

    The others DeepSpeed holds whole, for a module or as persistent, or is gathering (a prefetch,
    completed here through ``root``'s registry of gathers in flight, as DeepSpeed completes it).
    """
    import deepspeed
    from deepspeed.runtime.zero.partition_parameters import ZeroParamStatus

    in_flight = getattr(root, "ds_inflight_param_registry", {})
    for parameter in parameters:
        if parameter.ds_status == ZeroParamStatus.INFLIGHT:
            if parameter not in in_flight:
                raise RuntimeError(f"full_parameters: ZeRO-3 parameter {parameter.ds_id} is in flight outside "
                                   f"{type(root).__name__}'s registry of gathers")
            in_flight.pop(parameter).wait()
    partitioned = [parameter for parameter in parameters if parameter.ds_status == ZeroParamStatus.NOT_AVAILABLE]
    if partitioned:
        stack.enter_context(deepspeed.zero.GatheredParameters(partitioned, modifier_rank=None))


@contextmanager
def full_parameters(root: nn.Module, *modules: nn.Module) -> Iterator[Callable[[Tensor], Tensor]]:
    """Gather ``modules``' parameters (DeepSpeed ZeRO-3, FSDP2, FSDP1) for the block's duration.

    Yields ``keep``: a tensor derived from gathered weights must pass through it to outlive the
    block (it copies only for a sharded model, whose full storage resharding frees: on exit, or
    under ZeRO-3 whenever DeepSpeed next releases a parameter it held whole).
    """
    modules_list = list(modules)
    with ExitStack() as stack:
        zero3 = _zero3_parameters(modules_list)
        if zero3:
            _gather_zero3(stack, root, zero3)
        units = sharding_units(root, modules_list)
        fsdp1, fsdp2 = _fsdp1_class(), _fsdp2_class()
        _gather_fsdp1(stack, root, [unit for unit in units if isinstance(unit, fsdp1)])
        for unit in units:
            if isinstance(unit, fsdp2):
                unit.unshard()
                stack.callback(unit.reshard)
        gathered = bool(zero3 or units)
        yield (lambda tensor: tensor.detach().clone()) if gathered else (lambda tensor: tensor)


def token_embeddings(root: nn.Module, embed_tokens: nn.Module, *ids: Tensor) -> tuple[Tensor, ...]:
    """The embeddings of each of ``ids``, read outside the model's forward with the embedding gathered.

    Through the module's own ``forward``, not its call: DeepSpeed's module hooks would gather it a
    second time inside the block.
    """
    with torch.no_grad(), full_parameters(root, embed_tokens):
        return tuple(embed_tokens.forward(token_ids) for token_ids in ids)
