"""Every tensor the probes make lives where it is meant to: on the model's device, or named on the CPU.

torch's CPU build cannot hold a CUDA tensor, so a CPU test cannot run a probe on two devices. It can
read the code: every tensor factory call in probes/ names its device (the model's, taken from a
tensor it works with, or "cpu" for what stays on the host: pair batches before they are moved,
graph masks, bootstrap statistics), or derives from a tensor (``*_like``, ``new_*``). An
accumulator made without a device lands on the CPU while the model runs on CUDA, as probes/edges.py
did before issue 10: its edge-level snapshots then failed on every GPU run.
"""

from __future__ import annotations

import ast
from pathlib import Path

PROBES = Path(__file__).resolve().parents[2] / "probes"
FACTORIES = {"zeros", "ones", "empty", "full", "tensor", "arange", "eye", "linspace", "logspace", "rand", "randn",
             "randint", "randperm", "as_tensor", "empty_strided"}


def factory_calls_without_a_device(source: str) -> list[str]:
    """``torch.<factory>(...)`` calls with no ``device=``, as "line: torch.name"."""
    return [
        f"{node.lineno}: torch.{node.func.attr}"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in FACTORIES
        and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"
        and not any(keyword.arg == "device" for keyword in node.keywords)
    ]


def test_the_check_finds_a_factory_without_a_device():
    accumulator = "edges = torch.zeros(4, 5, dtype=dtype)\nnodes = torch.zeros_like(edges)\nok = torch.ones(2, device=x.device)"
    assert factory_calls_without_a_device(accumulator) == ["1: torch.zeros"]


def test_every_tensor_factory_in_the_probes_names_its_device():
    missing = {path.name: calls for path in sorted(PROBES.glob("*.py"))
               if (calls := factory_calls_without_a_device(path.read_text()))}
    assert missing == {}, f"name the device (the model's, or 'cpu' for host-side tensors): {missing}"
