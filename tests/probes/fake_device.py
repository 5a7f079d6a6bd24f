"""A pretend accelerator for CPU tests: tensors that live "elsewhere" and refuse to mix with CPU tensors.

torch's CPU build cannot make a CUDA tensor, and the meta device holds no data, so a probe cannot run
on a second device here. ``Elsewhere`` wraps a real CPU tensor and reports the meta device (the one
non-CPU device the CPU build can name, run autograd on, and allocate nothing for), so the data stays
real while every op is checked as an accelerator would check it: an op that mixes an Elsewhere tensor
with a CPU tensor of one or more dimensions raises torch's "Expected all tensors to be on the same
device". As on CUDA, a 0-dim CPU tensor mixes freely, ``copy_`` and ``.to`` cross devices, and the
indices of advanced indexing may stay on the CPU. Results of ops on Elsewhere tensors are Elsewhere
tensors; ``.cpu()`` and ``.to("cpu")`` give plain ones back.

Inside ``elsewhere()`` (a dispatch mode and a function mode), what code does to reach a model's device
works unchanged: ``device = next(model.parameters()).device`` is the meta device, ``x.to(device)``,
``torch.zeros(..., device=device)``, ``torch.tensor(data, device=device)`` and ``x.new_tensor(data)``
make Elsewhere tensors with real data. A path of torch's C++ that makes a tensor on the device
without dispatching would leave a meta tensor without data; the check raises on one rather than let
it pass. The one such path the probes take, an index given as a Python list, is turned into a CPU
index tensor first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode, autograd_would_have_decomposed, return_and_correct_aliasing
from torch.utils._pytree import tree_leaves, tree_map

ELSEWHERE = torch.device("meta")
CPU = torch.device("cpu")
aten = torch.ops.aten
CROSSING = {aten.copy_.default, aten._to_copy.default}  # ops that move data between devices
INDEXING = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default, aten._index_put_impl_.default}
FROM_DATA = {torch.tensor, torch.as_tensor, torch.asarray, Tensor.new_tensor}


class DeviceMismatch(RuntimeError):
    """An op mixed tensors of the pretend device with tensors of the CPU, as CUDA would refuse."""


class Elsewhere(Tensor):
    """A CPU tensor ``elem`` that reports the pretend device, and whose ops check their operands' devices."""

    elem: Tensor
    __slots__ = ["elem"]

    @staticmethod
    def __new__(cls, elem: Tensor, requires_grad: bool = False) -> Elsewhere:
        if type(elem) is not Tensor or elem.device != CPU:
            raise TypeError(f"Elsewhere wraps a plain CPU tensor, got {type(elem).__name__} on {elem.device}")
        wrapper = Tensor._make_wrapper_subclass(
            cls, elem.size(), strides=elem.stride(), storage_offset=elem.storage_offset(), dtype=elem.dtype,
            layout=elem.layout, device=ELSEWHERE, requires_grad=requires_grad,
        )
        wrapper.elem = elem
        return wrapper

    def __repr__(self) -> str:
        return f"Elsewhere({self.elem!r})"

    @classmethod
    def __torch_dispatch__(cls, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        return _run(func, args, kwargs or {})


def _check_devices(func: Any, args: tuple, kwargs: dict) -> None:
    """DeviceMismatch if ``func`` mixes Elsewhere tensors with CPU tensors that have dimensions, as CUDA would."""
    tensors = [leaf for leaf in tree_leaves((args, kwargs)) if isinstance(leaf, Tensor)]
    if any(type(t) is not Elsewhere and t.device == ELSEWHERE for t in tensors):
        raise RuntimeError(f"{func}: a tensor reached the pretend device without passing the dispatch mode "
                           "(it holds no data); tests/probes/fake_device.py must convert the call that made it")
    if func in CROSSING:
        return
    if func in INDEXING:  # indices may be on the CPU or on the indexed tensor's device
        if type(args[0]) is not Elsewhere and any(type(t) is Elsewhere for t in tree_leaves(args[1])):
            raise DeviceMismatch(f"indices should be either on cpu or on the same device as the indexed tensor "
                                 f"(cpu), not {ELSEWHERE} (pretend) ({func})")
        tensors = [leaf for leaf in tree_leaves((args[0], *args[2:], kwargs)) if isinstance(leaf, Tensor)]
    if any(type(t) is Elsewhere for t in tensors):
        host = [t for t in tensors if type(t) is not Elsewhere and t.dim() > 0]
        if host:
            raise DeviceMismatch(
                f"Expected all tensors to be on the same device, but found at least two devices, {ELSEWHERE} "
                f"(pretend) and {host[0].device}! ({func} with a CPU tensor of shape {tuple(host[0].shape)})"
            )


def _unwrap(value: Any) -> Any:
    return value.elem if type(value) is Elsewhere else value


def _wrap(value: Any) -> Any:
    return Elsewhere(value) if type(value) is Tensor else value


def _run(func: Any, args: tuple, kwargs: dict) -> Any:
    """Run ``func`` on the CPU tensors inside; its results are Elsewhere when an operand was, or when asked for."""
    _check_devices(func, args, kwargs)
    marked = any(type(leaf) is Elsewhere for leaf in tree_leaves((args, kwargs)))
    device = kwargs.get("device")
    there = device is not None and torch.device(device) == ELSEWHERE
    if there:
        kwargs = {**kwargs, "device": CPU}
    out = func(*tree_map(_unwrap, args), **tree_map(_unwrap, kwargs))
    if there or (marked and device is None):
        view = not func._schema.is_mutable and any(result.alias_info for result in func._schema.returns)
        # Under inference mode torch keeps a view of a normal tensor normal; a new wrapper would not be.
        with torch.inference_mode(False) if view else nullcontext():
            out = tree_map(_wrap, out)
    return return_and_correct_aliasing(func, args, kwargs, out) if marked else out  # in-place ops return their input


class _Dispatch(TorchDispatchMode):
    """Sees every op, those of plain tensors too: factories and ``.to`` that name the pretend device."""

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if autograd_would_have_decomposed(func, tree_leaves((args, kwargs))):
            # Only inference mode, which skips autograd, lets such an op (``to``, say) reach this far.
            with self:
                out = func.decompose(*args, **kwargs)
            if out is not NotImplemented:
                return out
        return _run(func, args, kwargs)


def _index_lists(index: Any) -> Any:
    """An indexing key with its lists of numbers as CPU index tensors (torch would make them on the device)."""
    if isinstance(index, list) and all(isinstance(leaf, (int, bool)) for leaf in tree_leaves(index)):
        return torch.tensor(index, device=CPU)
    if isinstance(index, tuple):
        return tuple(_index_lists(item) for item in index)
    return index


class _Functions(TorchFunctionMode):
    """Constructors from data that name the pretend device, indexing by lists (both skip dispatch), ``tolist``
    (the host copy CUDA makes), ``numpy`` (refused, as on CUDA)."""

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in FROM_DATA:
            device = kwargs.get("device", args[0].device if func is Tensor.new_tensor else None)
            if device is not None and torch.device(device) == ELSEWHERE:
                return func(*args, **{**kwargs, "device": CPU}).to(ELSEWHERE)
        if type(args[0] if args else None) is Elsewhere:
            if func is Tensor.tolist:  # refused for subclasses; CUDA copies to the host
                return args[0].cpu().tolist()
            if func in (Tensor.numpy, Tensor.__array__):
                raise TypeError(f"can't convert {ELSEWHERE} (pretend) device type tensor to numpy, as CUDA "
                                "refuses: use Tensor.cpu() to copy the tensor to host memory first")
            if func in (Tensor.__getitem__, Tensor.__setitem__):
                args = (args[0], _index_lists(args[1]), *args[2:])
        return func(*args, **kwargs)


@contextmanager
def elsewhere() -> Iterator[None]:
    """Inside, the pretend device behaves as a device: see the module docstring."""
    with _Functions(), _Dispatch():
        yield


def move_elsewhere(model: nn.Module) -> nn.Module:
    """``model`` with every parameter and buffer made an Elsewhere tensor, in place and tied ones kept tied,
    as ``model.to(device)`` does."""
    moved: dict[int, Tensor] = {}

    def moved_copy(tensor: Tensor) -> Tensor:
        if id(tensor) not in moved:
            wrapped = Elsewhere(tensor.detach())
            is_parameter = isinstance(tensor, nn.Parameter)
            moved[id(tensor)] = nn.Parameter(wrapped, tensor.requires_grad) if is_parameter else wrapped
        return moved[id(tensor)]

    for module in model.modules():
        for tensors in (module._parameters, module._buffers):
            for name, tensor in tensors.items():
                if tensor is not None:
                    tensors[name] = moved_copy(tensor)
    return model
