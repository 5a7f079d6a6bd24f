"""full_parameters under ZeRO-3 gathers only what DeepSpeed holds partitioned (probes.gather).

Here the parameters carry DeepSpeed's status by hand, so the states a CPU run may never reach (a
prefetch still in flight) are covered too; real ZeRO-3 runs are tests/callbacks/test_tracker_sharded.py.
A parameter given to DeepSpeed's GatheredParameters would fail here, having none of its methods, so
each test also says that none was. deepspeed is part of the test environment (`make install`):
without it these fail.
"""

from __future__ import annotations

import pytest
from deepspeed.runtime.zero.partition_parameters import ZeroParamStatus
from torch import nn

from sparks.probes.gather import full_parameters

BUSY = 7
"""The ds_id of a module that holds the parameters (DeepSpeed's ds_active_sub_modules)."""


def zero3_layer(status: ZeroParamStatus) -> nn.Linear:
    """A linear layer whose parameters look like ZeRO-3 ones in ``status``, in use by module BUSY."""
    layer = nn.Linear(2, 2)
    for index, parameter in enumerate(layer.parameters()):
        parameter.ds_id, parameter.ds_status, parameter.ds_active_sub_modules = index, status, {BUSY}
    return layer


class InFlight:
    """A DeepSpeed all-gather in flight (its handle): waiting on it completes the parameter."""

    def __init__(self, parameter: nn.Parameter) -> None:
        self.parameter = parameter
        self.waited = False

    def wait(self) -> None:
        self.parameter.ds_status = ZeroParamStatus.AVAILABLE
        self.waited = True


def test_a_parameter_deepspeed_holds_whole_stays_whole_and_in_use():
    layer = zero3_layer(ZeroParamStatus.AVAILABLE)
    with full_parameters(nn.Sequential(layer), layer) as keep:
        kept = keep(layer.weight)
    assert all(p.ds_status == ZeroParamStatus.AVAILABLE and p.ds_active_sub_modules == {BUSY} for p in layer.parameters())
    assert kept.data_ptr() != layer.weight.data_ptr(), "DeepSpeed may free it later: what outlives the block is a copy"


def test_a_prefetch_in_flight_is_completed_through_the_models_registry():
    layer = zero3_layer(ZeroParamStatus.INFLIGHT)
    root = nn.Sequential(layer)
    gathers = {parameter: InFlight(parameter) for parameter in layer.parameters()}
    root.ds_inflight_param_registry = dict(gathers)
    with full_parameters(root, layer):
        assert all(p.ds_status == ZeroParamStatus.AVAILABLE for p in layer.parameters())
    assert all(gather.waited for gather in gathers.values())
    assert root.ds_inflight_param_registry == {}, "completed gathers leave DeepSpeed's registry, as its own do"
    assert all(p.ds_status == ZeroParamStatus.AVAILABLE for p in layer.parameters())


def test_a_parameter_in_flight_outside_the_registry_is_refused():
    layer = zero3_layer(ZeroParamStatus.INFLIGHT)
    with pytest.raises(RuntimeError, match="^full_parameters: ZeRO-3 parameter 0 is in flight outside Sequential's"):
        with full_parameters(nn.Sequential(layer), layer):
            pass
