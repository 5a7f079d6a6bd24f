"""Choosing and building the dashboards."""

from __future__ import annotations

import subprocess
import sys

import pytest
from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

from sparks.callbacks.config import TrackerConfig
from sparks.callbacks.tracker import dashboard_names
from sparks.dashboards.registry import DASHBOARDS, default_dashboards, make_dashboards
from sparks.dashboards.report import Dashboard
from sparks.dashboards.trackio_dashboard import TrackioDashboard
from sparks.dashboards.wandb_dashboard import WandbDashboard


@pytest.fixture
def no_wandb_key(monkeypatch, tmp_path):
    """No W&B key in the environment and an empty netrc file."""
    for name in ("WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    netrc = tmp_path / "netrc"
    netrc.write_text("")
    monkeypatch.setenv("NETRC", str(netrc))
    return netrc


@pytest.mark.parametrize("kind", DASHBOARDS, ids=lambda kind: kind.name)
def test_every_dashboard_of_the_registry_is_made_chosen_and_reported_to(kind):
    dashboard = kind.make("proj", "run-1", "exp", "grpo", {"interval": 10})
    for method in (name for name in vars(Dashboard) if not name.startswith("_")):
        assert callable(getattr(dashboard, method)), method  # the Dashboard protocol, whole
    assert dashboard.run is None and dashboard.init_args["project"] == "proj"  # nothing starts before the first snapshot
    assert kind.report_to in INTEGRATION_TO_CALLBACK  # the trainer can report there too, beside the heads
    assert dashboard_names(TrackerConfig(dashboards=(kind.name,))) == [kind.name]
    assert [dashboard.__class__] == [item.__class__ for item in make_dashboards([kind.name], "proj")]


def test_make_dashboards_passes_the_run_identity_and_rejects_unknown_names():
    wandb, trackio = make_dashboards(["wandb", "trackio"], "proj", "run-1", "exp", "grpo", {"interval": 10})
    assert isinstance(wandb, WandbDashboard) and isinstance(trackio, TrackioDashboard)
    assert wandb.init_args == {"project": "proj", "name": "run-1", "group": "exp", "job_type": "grpo", "config": {"interval": 10}}
    assert trackio.init_args["config"] == {"interval": 10, "job_type": "grpo"}  # trackio has no job type of its own
    assert (trackio.init_args["project"], trackio.init_args["name"], trackio.init_args["group"]) == ("proj", "run-1", "exp")
    assert wandb.run is None and trackio.run is None  # nothing starts before the first snapshot
    with pytest.raises(ValueError, match="unknown dashboard tensorboard"):
        make_dashboards(["trackio", "tensorboard"], "proj")


def test_trackio_without_a_wandb_key(no_wandb_key):
    assert default_dashboards() == ["trackio"]
    no_wandb_key.write_text("machine example.com login me password secret\n")
    assert default_dashboards() == ["trackio"]
    no_wandb_key.write_text("machine api.wandb.ai login\n")  # malformed: no password
    assert default_dashboards() == ["trackio"]


def test_wandb_with_a_key_in_the_environment_or_netrc(no_wandb_key, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert default_dashboards() == ["wandb"]
    monkeypatch.delenv("WANDB_API_KEY")
    no_wandb_key.write_text("machine api.wandb.ai login user password " + "x" * 40 + "\n")
    assert default_dashboards() == ["wandb"]
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.com")  # a self-hosted server needs its own entry
    assert default_dashboards() == ["trackio"]
    no_wandb_key.write_text("machine wandb.example.com login user password " + "x" * 40 + "\n")
    assert default_dashboards() == ["wandb"]


def test_importing_the_dashboards_does_not_import_wandb_or_trackio():
    code = "import sys, sparks.dashboards.registry; print(sorted({'wandb', 'trackio'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"
