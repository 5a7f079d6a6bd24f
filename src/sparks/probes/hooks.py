"""Temporary hooks on a live model, and a guard that leaves the model exactly as it was found."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle


@contextmanager
def scoring(model: nn.Module, grad: bool) -> Iterator[None]:
    """Run scoring in eval mode with gradients on or off, even under no_grad or inference_mode.

    On exit every module's ``training`` flag and the torch (and CUDA) RNG state are put back.
    """
    modes = [(module, module.training) for module in model.modules()]
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        model.eval()
        with torch.inference_mode(False), torch.set_grad_enabled(grad):
            yield
    finally:
        for module, training in modes:
            module.training = training
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


def _first_arg(module: nn.Module, args: tuple[Any, ...]) -> Tensor:
    if not args or not isinstance(args[0], Tensor):
        raise RuntimeError(f"{type(module).__name__} was not called with its input as a positional tensor")
    return args[0]


class Hooks:
    """Hooks registered through this object are all removed when its ``with`` block exits."""

    def __init__(self) -> None:
        self._handles: list[RemovableHandle] = []

    def __enter__(self) -> Hooks:
        return self

    def __exit__(self, *exc: object) -> None:
        while self._handles:
            self._handles.pop().remove()

    def edit_input(self, module: nn.Module, edit: Callable[[Tensor], Tensor]) -> None:
        """Replace the module's (first, positional) input by ``edit(input)``."""

        def hook(mod: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
            return (edit(_first_arg(mod, args)), *args[1:])

        self._handles.append(module.register_forward_pre_hook(hook))

    def edit_output(self, module: nn.Module, edit: Callable[[Tensor], Tensor]) -> None:
        """Replace the module's output (a tensor) by ``edit(output)``."""

        def hook(mod: nn.Module, args: tuple[Any, ...], output: Tensor) -> Tensor:
            return edit(output)

        self._handles.append(module.register_forward_hook(hook))

    def read_output(self, module: nn.Module, read: Callable[[Tensor], object]) -> None:
        """Call ``read`` on the module's output (its first element if it returns a tuple)."""

        def hook(mod: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            read(output[0] if isinstance(output, tuple) else output)

        self._handles.append(module.register_forward_hook(hook))


class Recorder:
    """Records named module inputs or outputs on every forward pass.

    An input is recorded as a clone that the module then consumes, so the gradient with respect to
    it is that module's share alone (a norm's input is also the residual that bypasses it).
    """

    def __init__(self, hooks: Hooks, taps: dict[str, tuple[nn.Module, str]]) -> None:
        self.values: dict[str, Tensor] = {}
        for name, (module, where) in taps.items():
            if where == "input":
                hooks.edit_input(module, self._clone_into(name))
            elif where == "output":
                hooks.read_output(module, self._store_into(name))
            else:
                raise ValueError(f"tap {name!r}: where must be 'input' or 'output', not {where!r}")

    def _clone_into(self, name: str) -> Callable[[Tensor], Tensor]:
        def edit(x: Tensor) -> Tensor:
            self.values[name] = x = x.clone()
            return x

        return edit

    def _store_into(self, name: str) -> Callable[[Tensor], None]:
        def read(x: Tensor) -> None:
            self.values[name] = x

        return read
