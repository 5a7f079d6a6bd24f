"""Living under `accelerate launch` (or torchrun, deepspeed): die with the launcher, and keep errors readable.

Two things go wrong when a training script runs as a launcher's worker. Killing the launcher with SIGKILL
leaves the worker training on its own, and a worker's one-line configuration error is buried under the
launcher's own traceback and failure table. `follow_launcher` fixes the first, `report_to_launcher` the second.
A script started from a shell (`python train/grpo.py`, `nohup ... &`) is not a launcher's worker: both are no-ops.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import time

# What a launcher's command line runs: a program's (or an interpreter's script's) name, or a `-m` module.
LAUNCHER_PROGRAMS = frozenset({"accelerate", "torchrun", "deepspeed"})
LAUNCHER_MODULES = frozenset({
    "accelerate.commands.launch",
    "accelerate.commands.accelerate_cli",
    "torch.distributed.run",
    "torch.distributed.launch",
    "deepspeed.launcher.launch",
})
PR_SET_PDEATHSIG = 1
POLL_SECONDS = 0.02
# The launcher prints its traceback and exits within a second or so of the worker; past this, repeat nothing.
REPEAT_WAIT_SECONDS = 120.0


def is_launcher(argv: list[str]) -> bool:
    """Whether a command line (a process's argv) is one of the launchers that start training workers."""
    programs = {os.path.basename(arg) for arg in argv[:2]}
    modules = {module for option, module in zip(argv, argv[1:]) if option == "-m"}
    return bool(programs & LAUNCHER_PROGRAMS or modules & LAUNCHER_MODULES)


def launcher_pid() -> int | None:
    """The parent's pid when the parent is a launcher, None when it is anything else (a shell, pytest)."""
    parent = os.getppid()
    try:
        with open(f"/proc/{parent}/cmdline", "rb") as file:
            argv = [arg.decode(errors="replace") for arg in file.read().split(b"\0") if arg]
    except OSError:  # no /proc (not Linux), or the parent is already gone
        return None
    return parent if is_launcher(argv) else None


def follow_launcher() -> None:
    """Have Linux SIGKILL this process when the launcher that started it dies, however it dies.

    A launcher forwards SIGTERM and SIGINT to its workers, but SIGKILL (an OOM killer, a scheduler's hard stop)
    cannot be forwarded, and the orphaned worker would go on training and writing its run store. SIGKILL is
    deliberate: the run store is crash-safe. Call it first thing in a script's `__main__` block.
    Linux ties the signal to the parent *thread* that started the worker; the launchers start theirs from
    the main thread.
    """
    if sys.platform != "linux":
        return
    parent = launcher_pid()
    if parent is None:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the launcher died before the signal was armed
        os.kill(os.getpid(), signal.SIGKILL)


def report_to_launcher(line: str) -> None:
    """Make a fatal one-line error (already printed) the last thing a launcher's user reads.

    Under torch elastic (accelerate's multi-process launcher, torchrun) the line goes in the worker's error file,
    so the failure table shows it instead of a link to the docs. Under any launcher, a detached process prints it
    to stderr again once the launcher has exited, after the launcher's traceback.
    """
    parent = launcher_pid()
    if parent is None:
        return
    error_file = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if error_file:
        write_error_file(error_file, line)
    repeat_when_gone(parent, line)


def write_error_file(path: str, line: str) -> None:
    """Record `line` in torch elastic's error file, in the format of its own `ErrorHandler.record_exception`."""
    data = {"message": {"message": line, "extraInfo": {"timestamp": str(int(time.time()))}}}
    try:
        with open(path, "w") as file:
            json.dump(data, file)
    except OSError:  # the table then shows torch's default text; the line is still printed and repeated
        pass


def repeat_when_gone(pid: int, line: str) -> None:
    """Fork a detached process that writes `line` to stderr once process `pid` has exited.

    Double fork and setsid: the repeater is nobody's child to wait for and outside the worker's process group,
    which torch elastic kills when a worker fails. A forked child does not inherit the parent-death signal, and
    it leaves with `os._exit`, so none of the worker's Python cleanup runs twice. It holds only stderr open.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child:
        os.waitpid(child, 0)
        return
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        deadline = time.monotonic() + REPEAT_WAIT_SECONDS
        while is_running(pid):
            if time.monotonic() > deadline:
                os._exit(0)
            time.sleep(POLL_SECONDS)
        os.write(2, f"{line}\n".encode())
    finally:
        os._exit(0)


def is_running(pid: int) -> bool:
    """Whether `pid` is still running; an exited process that its parent has not yet reaped (a zombie) is not."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            state = file.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")
