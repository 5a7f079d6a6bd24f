"""A rank failing inside a sharded model's forward stops the run with one clear line instead of a hang.

The other rank waits in the model's next all-gather, where no failure flag reaches it. Before
ShardedSnapshotFailed the failing rank joined the tracker's all-reduce instead: both ranks blocked
until the process group's timeout (30 minutes by default), and then went on with a broken group.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GROUP_TIMEOUT = 90  # seconds; the run must end well before any collective times out
RUN_TIMEOUT = 75


def test_a_rank_failing_in_a_sharded_forward_stops_the_run_with_one_line(random_model_dir, tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "-m", "tests.callbacks.sharded_failure", str(random_model_dir), str(tmp_path), str(GROUP_TIMEOUT)]
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
                            timeout=RUN_TIMEOUT)
    output = result.stdout
    assert result.returncode != 0, output[-6000:]
    assert "went on" not in output, "no rank may carry on past the failed snapshot"
    line = ("sparks: error: tracker: the head snapshot at step 1 failed on rank 1 inside a sharded model's forward "
            "or backward (ZeRO-3/FSDP)")
    lines = [text for text in output.splitlines() if text.startswith(line)]
    assert lines and lines[0].endswith("RuntimeError: injected failure in the middle of a sharded forward"), output[-6000:]
    errors = [text for text in output.splitlines() if text.startswith("sparks: error:")]
    assert errors[-1].startswith(line), "the rank that failed first has the last word"
    assert not any("on rank 0 inside" in text for text in errors), "rank 0, stopped by rank 1, does not claim the failure"
    root_cause = output.split("Root Cause", 1)[-1]
    assert "rank      : 1" in root_cause and "injected failure" in root_cause, "the launcher's table names it"
    assert (tmp_path / "sparks/snapshots/step-00000000").is_dir(), "the sharded base model was scored and stored"
