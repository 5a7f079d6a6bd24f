"""Under `accelerate launch`: a worker dies with its launcher, and a configuration error is the last line out."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sparks.train.launcher import is_launcher, is_running

pytestmark = pytest.mark.hostile
REPO = Path(__file__).resolve().parents[1]
ACCELERATE = [str(Path(sys.executable).parent / "accelerate"), "launch", "--config_file", str(REPO / "configs/accelerate/cpu.yaml")]
PR_GET_PDEATHSIG = 2
# A worker that reports its pid and parent-death signal, then sleeps as a long training run would.
SLEEPER = f"""
import ctypes, os, sys, time
from sparks.train.launcher import follow_launcher

if sys.argv[2] == "follow":
    follow_launcher()
signal = ctypes.c_int()
ctypes.CDLL(None).prctl({PR_GET_PDEATHSIG}, ctypes.byref(signal), 0, 0, 0)
with open(sys.argv[1] + ".tmp", "w") as file:
    file.write(f"{{os.getpid()}} {{signal.value}}")
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(120)
"""


def wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.parametrize("processes", ["1", "2"])
def test_config_error_is_the_last_line_under_accelerate(processes):
    command = [*ACCELERATE, "--num_processes", processes, str(REPO / "train/grpo.py"), "--config", str(REPO / "configs/tiny/grpo.yaml")]
    # communicate() returns only once every writer, the detached repeater included, has closed the pipe.
    result = subprocess.run(
        [*command, "--tracker", '{"every": 0}'], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, timeout=300
    )
    expected = "sparks: error: tracker.every: must be a whole number > 0, got 0"
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert result.returncode != 0
    assert lines[-1] == expected, result.stdout[-3000:]
    assert f"traceback : {expected}" in result.stdout  # torch elastic's failure table names it too


@pytest.mark.parametrize("follow", [True, False], ids=["follows", "control-without-follow_launcher"])
def test_killing_the_launcher_kills_the_worker(tmp_path, follow):
    script, pid_file = tmp_path / "sleeper.py", tmp_path / "worker.pid"
    script.write_text(textwrap.dedent(SLEEPER))
    with open(tmp_path / "launch.log", "w") as log:
        launcher = subprocess.Popen(
            [*ACCELERATE, str(script), str(pid_file), "follow" if follow else "stay"], stdout=log, stderr=subprocess.STDOUT, cwd=REPO
        )
    worker = None
    try:
        assert wait_for(pid_file.exists, 120), (tmp_path / "launch.log").read_text()
        worker, death_signal = map(int, pid_file.read_text().split())
        assert death_signal == (signal.SIGKILL if follow else 0)
        launcher.kill()
        launcher.wait()
        gone = wait_for(lambda: not is_running(worker), 5)
        assert gone if follow else not gone
    finally:
        launcher.kill()
        if worker is not None and is_running(worker):
            os.kill(worker, signal.SIGKILL)


def test_a_shell_is_not_a_launcher():
    assert is_launcher(["/work/.venv/bin/python", "/work/.venv/bin/accelerate", "launch", "train/grpo.py"])
    assert is_launcher(["/usr/bin/python3", "-u", "-m", "torch.distributed.run", "--nproc-per-node", "2", "train/sft.py"])
    assert is_launcher(["/work/.venv/bin/torchrun", "train/sft.py"])
    assert not is_launcher(["bash", "scripts/run_accelerate.sh"])
    assert not is_launcher(["/bin/sh", "-c", "accelerate launch train/grpo.py"])
    assert not is_launcher(["/usr/bin/python3", "-m", "pytest", "tests/test_launcher.py"])
    # Started from pytest (as from a shell or nohup), follow_launcher arms nothing and the process lives on.
    probe = "import ctypes; from sparks.train.launcher import follow_launcher; follow_launcher(); s = ctypes.c_int(); "
    probe += f"ctypes.CDLL(None).prctl({PR_GET_PDEATHSIG}, ctypes.byref(s), 0, 0, 0); print(s.value)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == "0"
    # A process that has exited but is not yet reaped (a zombie) no longer runs.
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    assert wait_for(lambda: not is_running(child.pid), 30)
    assert child.poll() == 0
    assert is_running(os.getpid())
