"""Where the ``sparks`` commands write: a new (or empty) directory, filled whole or not at all."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sparks.runs.store import RunStoreError


def check_out(out: Path) -> Path:
    """Check ``--out`` before anything is read or computed: a new or empty directory in an existing,
    writable one. Returns that parent directory."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RunStoreError(f"--out: {out} exists and is not an empty directory; name a new one")
    parent = out.absolute().parent
    if not parent.is_dir():
        raise RunStoreError(f"--out: {parent} is not a directory to write in")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RunStoreError(f"--out: {parent} is not writable")
    return parent


@contextmanager
def staged(out: Path) -> Iterator[Path]:
    """A private directory beside ``out`` to write into; it becomes ``out`` when the block ends, and is
    removed when the block raises, so a failure leaves nothing half-written."""
    parent = check_out(out)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    except OSError as error:
        raise RunStoreError(f"--out: cannot write in {parent} ({error.strerror})") from None
    try:
        yield staging
        staging.chmod(0o755)  # mkdtemp makes it private; what is written is meant to be read
        if out.exists():
            out.rmdir()  # empty, as check_out found it
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
