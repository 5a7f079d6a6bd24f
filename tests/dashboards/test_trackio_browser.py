"""The trackio dashboard opened in headless Chromium: the heads panels render.

The test serves a trackio project fed with the hand-made snapshots and has Chromium dump the DOM
once the page has run its scripts: on the metrics page every ``heads/...`` scalar must have its
plot drawn (a canvas inside the plot), on the media page every heads picture and the event table
must be there. Needs a Chromium binary (``make install`` installs Debian's when run as root).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest

from tests.dashboards.test_trackio_dashboard import SESSION, session_env

CHROMIUM = next(filter(None, map(shutil.which, ["chromium", "chromium-browser", "google-chrome", "chrome"])), None)
SCALARS = ["heads/circuit_size", "heads/births", "heads/prunings", "heads/emergent", "heads/failed",
           "heads/confident_births", "heads/confident_prunings", "heads/null_churn", "heads/stability", "heads/faithfulness"]
PICTURES = ["heads/importance", "heads/membership", "heads/circuit", "heads/activation_frequency", "heads/survival",
            "heads/cohorts", "heads/effect"]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (make install puts Debian's chromium there as root)")


@pytest.fixture(scope="module")
def dashboard_url(tmp_path_factory):
    """The URL of a trackio dashboard serving the fed project, until this module's tests end."""
    env = session_env(tmp_path_factory.mktemp("trackio"))
    server = subprocess.Popen([sys.executable, *SESSION, "serve"], env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        lines = iter(server.stdout.readline, "")
        started = next((json.loads(line) for line in lines if line.startswith("{")), None)
        assert started is not None, f"the trackio session exited with {server.wait(timeout=10)} before serving"
        yield started["url"].rstrip("/")
    finally:
        server.stdin.close()
        server.wait(timeout=30)


def rendered_dom(url: str) -> str:
    """The page's DOM after its scripts ran, in a window tall enough that every plot is drawn (they render lazily)."""
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,8000",
               "--virtual-time-budget=20000", "--dump-dom", url]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout


def test_heads_scalar_panels_draw_their_plots(dashboard_url):
    dom = rendered_dom(f"{dashboard_url}/?project=sparks-test&x_axis=train/global_step")
    panels = {}
    for chunk in dom.split('<div class="plot-container')[1:]:
        metric = re.search(r'data-metric="([^"]+)"', chunk)
        panels[metric.group(1)] = "<canvas" in chunk
    assert {name: panels.get(name) for name in SCALARS} == dict.fromkeys(SCALARS, True)


def test_heads_pictures_and_event_table_show_on_the_media_page(dashboard_url):
    dom = rendered_dom(f"{dashboard_url}/media?project=sparks-test")
    pictures = re.findall(r'<img[^>]*src="/file\?path=[^"]+\.png"[^>]*alt="([^"]+)"', dom)
    assert sorted(set(pictures)) == sorted(PICTURES)
    assert pictures.count("heads/importance") == 4  # one per snapshot
    assert "heads/events" in dom and "emerge" in dom and "prune" in dom
