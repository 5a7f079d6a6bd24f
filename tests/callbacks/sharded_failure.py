"""Two CPU processes (gloo) track an FSDP2-sharded model; rank 1 fails in the middle of step 1's snapshot.

    torchrun --nproc_per_node 2 -m tests.callbacks.sharded_failure MODEL_DIR OUT_DIR TIMEOUT_SECONDS

Also runs as two plain processes (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT set, no launcher).
The tracker (``strict: false``) scores the base model at train begin, then step 1, during which a
forward pre-hook raises on rank 1 at its third pass through the second decoder layer, while rank 0
goes on into the model's next all-gather. A ShardedSnapshotFailed ends a rank as train/run.py's
``train_and_save`` ends it (``stop_rank``); a rank that gets through both snapshots prints
"rank R went on". ``TIMEOUT_SECONDS`` is the process group's timeout (``ddp_timeout`` in a recipe).
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import torch.distributed as dist
from torch import nn
from torch.distributed.fsdp import fully_shard
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerControl, TrainerState, TrainingArguments

from sparks.callbacks.config import TrackerConfig
from sparks.callbacks.snapshot import ShardedSnapshotFailed
from sparks.callbacks.tracker import HeadTrackerCallback
from sparks.probes.schemes import numbers_pairs
from sparks.tasks import arith
from sparks.train.launcher import follow_launcher
from sparks.train.run import stop_rank

FAILING_RANK = 1
FAILING_PASS = 3


def fail_at_step_one(layer: nn.Module, state: TrainerState) -> None:
    """On FAILING_RANK, raise at the FAILING_PASS-th pass through ``layer`` during step 1's snapshot."""
    passes = 0

    def hook(module: nn.Module, args: tuple) -> None:
        nonlocal passes
        if state.global_step == 1:
            passes += 1
            if passes == FAILING_PASS:
                raise RuntimeError("injected failure in the middle of a sharded forward")

    if dist.get_rank() == FAILING_RANK:
        layer.register_forward_pre_hook(hook)


def main(model_dir: str, out_dir: str, timeout: str) -> None:
    follow_launcher()
    dist.init_process_group("gloo", timeout=timedelta(seconds=float(timeout)))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    for layer in model.model.layers:
        fully_shard(layer)
    fully_shard(model)
    pairs = numbers_pairs(tokenizer, arith.problems("probe", [2, 3], 6, seed=0))
    config = TrackerConfig(every=1, batch_size=2, replicates=4, dashboards=("none",), strict=False)
    tracker = HeadTrackerCallback(config, pairs, job_type="sft")
    args = TrainingArguments(output_dir=str(Path(out_dir)), report_to=[], use_cpu=True)
    state = TrainerState(max_steps=2, is_world_process_zero=dist.get_rank() == 0)
    control = TrainerControl()
    fail_at_step_one(model.model.layers[1], state)
    try:
        tracker.on_train_begin(args, state, control, model=model, processing_class=tokenizer)
        state.global_step = 1
        tracker.on_step_end(args, state, control, model=model)
    except ShardedSnapshotFailed as error:
        stop_rank(error)
    print(f"rank {dist.get_rank()} went on", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:4])
