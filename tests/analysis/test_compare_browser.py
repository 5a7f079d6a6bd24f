"""The ``sparks compare`` report opened in headless Chromium with the network off: no console errors, no
resource fetched, every figure drawn, and a screenshot whose plot areas are not blank.

A copy of the report gets one extra script at the top of its head that only listens: it records
errors (window.onerror, unhandled rejections, console.error), the resources the page fetched and,
once the page has run, each figure's box and drawn parts into a JSON element, which Chromium's
DOM dump brings back. The screenshot is taken of the same copy, at device scale 1, so those boxes are
its pixels. Needs a Chromium binary (``make install`` installs Debian's when run as root).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from matplotlib.image import imread

from sparks.analysis.compare_report import write_report
from tests.analysis.synthetic_runs import write_run

CHROMIUM = next(filter(None, map(shutil.which, ["chromium", "chromium-browser", "google-chrome", "chrome"])), None)
OFFLINE = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--force-device-scale-factor=1",
           "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
           "--disable-default-apps", "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
           "--virtual-time-budget=20000"]
WIDTH = 1400
LISTENER = """<script>
window.__errors = [];
window.addEventListener("error", event => window.__errors.push(String(event.message || event.type)));
window.addEventListener("unhandledrejection", event => window.__errors.push("rejection: " + String(event.reason)));
const __consoleError = console.error;
console.error = (...parts) => { window.__errors.push(parts.map(String).join(" ")); __consoleError(...parts); };
window.addEventListener("load", () => setTimeout(() => {
  const figures = [...document.querySelectorAll(".js-plotly-plot")].map(plot => {
    const box = plot.getBoundingClientRect();
    return {id: plot.id, x: box.left + window.scrollX, y: box.top + window.scrollY, width: box.width, height: box.height,
            svg: plot.querySelectorAll(".main-svg").length, traces: plot.querySelectorAll("g.trace, .hm image").length};
  });
  const probe = document.createElement("script");
  probe.type = "application/json";
  probe.id = "probe";
  probe.textContent = JSON.stringify({errors: window.__errors, figures: figures, height: document.body.scrollHeight,
                                      fetched: performance.getEntriesByType("resource").map(entry => entry.name)});
  document.body.appendChild(probe);
}, 1000));
</script>"""

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (make install puts Debian's chromium there as root)")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """The listened-to copy of a two-run report: its path and what the listener recorded."""
    root = tmp_path_factory.mktemp("browser")
    report = write_report([write_run(root / name, name) for name in ("cumulative", "dynamic")], root / "compare").path
    copy = root / "listened.html"
    copy.write_text(report.read_text().replace("<head>", "<head>" + LISTENER, 1))
    dom = subprocess.run([CHROMIUM, *OFFLINE, f"--window-size={WIDTH},2000", "--dump-dom", copy.as_uri()],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    probe = json.loads(re.search(r'<script type="application/json" id="probe">(.*?)</script>', dom, re.S).group(1))
    return copy, probe


def test_the_report_runs_offline_without_errors_and_draws_every_figure(page):
    _, probe = page
    assert probe["errors"] == [] and probe["fetched"] == []
    assert [figure["id"] for figure in probe["figures"]] == [
        f"chart-{name}" for name in ("emergent", "churn", "cohorts", "activation", "jaccard", "survival", "faithfulness")]
    assert all(figure["svg"] > 0 and figure["traces"] > 0 and figure["height"] > 100 for figure in probe["figures"])


def test_the_screenshot_plot_areas_are_not_blank(page, tmp_path):
    copy, probe = page
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *OFFLINE, f"--window-size={WIDTH},{probe['height']}", f"--screenshot={shot}", copy.as_uri()],
                   capture_output=True, timeout=120, check=True)
    pixels = imread(shot)[..., :3]
    assert pixels.shape[0] >= probe["height"] - 1
    for figure in probe["figures"]:
        top, left = int(figure["y"]), int(figure["x"])
        area = pixels[top : top + int(figure["height"]), left : left + int(figure["width"])]
        inked = (area < 0.9).any(axis=-1).mean()
        colours = len(np.unique((area * 255).astype(np.uint8).reshape(-1, 3), axis=0))
        assert inked > 0.01 and colours > 20, f"{figure['id']}: {inked:.3%} inked, {colours} colours"
