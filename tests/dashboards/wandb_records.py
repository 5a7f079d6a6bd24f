"""Read an offline W&B run back: the records of its ``run-*.wandb`` transaction log.

wandb 0.31 writes the log from its Go core and ships no Python reader, so this decodes the
format directly: a 7-byte header (``:W&B``, magic, version), then LevelDB-log style 32 KiB blocks
of chunks (crc32 4 bytes, length 2, type 1: full, first, middle, last), each whole payload one
``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32 * 1024
CHUNK_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list[wandb_internal_pb2.Record]:
    """Every record of the transaction log at ``path``, in order."""
    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B transaction log")
    position, payload, found = CHUNK_HEADER, b"", []
    while position + CHUNK_HEADER <= len(data):
        if BLOCK - position % BLOCK < CHUNK_HEADER:
            position += BLOCK - position % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + CHUNK_HEADER])
        payload += data[position + CHUNK_HEADER:position + CHUNK_HEADER + length]
        position += CHUNK_HEADER + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(payload)
            found.append(record)
            payload = b""
    return found


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def history(path: Path) -> list[dict]:
    """The logged rows, values decoded from JSON, nested keys joined with '/' (``heads/importance/path``)."""
    return [
        {_key(item): json.loads(item.value_json) for item in record.history.item}
        for record in records(path) if record.WhichOneof("record_type") == "history"
    ]


def summary(path: Path) -> dict:
    """The run summary as the summary updates leave it, nested keys joined with '/'."""
    return {
        _key(item): json.loads(item.value_json)
        for record in records(path) if record.WhichOneof("record_type") == "summary"
        for item in record.summary.update
    }


def step_metrics(path: Path) -> dict[str, str]:
    """Each ``define_metric`` glob or name with the step metric it was given."""
    return {
        record.metric.glob_name or record.metric.name: record.metric.step_metric
        for record in records(path) if record.WhichOneof("record_type") == "metric"
    }


def exited(path: Path) -> bool:
    """Whether the run was finished (the log ends with an exit record)."""
    return any(record.WhichOneof("record_type") == "exit" for record in records(path))
