"""Tracked optimizer steps on a model sharded by FSDP2 over 2 CPU processes (gloo), or on the plain model.

    torchrun --nproc_per_node 2 -m tests.callbacks.fsdp2_training MODEL_DIR OUT_DIR TRACKER_JSON RECORD
    train(model_dir, out_dir, tracker)  # in one process, without a process group: the plain model

accelerate applies FSDP on accelerators only (a CPU run under the Trainer is plain data parallel),
so this is a training loop of its own that calls the tracker's callbacks as the Trainer does:
on_train_begin, on_step_end after each of STEPS AdamW steps, on_train_end. Every step trains on one
fixed batch of BATCH random sequences of one length; each rank takes its share of the rows and FSDP2
averages the gradients, which is the plain model's gradient on the whole batch, so both take the
same steps. The sharded run records how each snapshot's model is held (held_parameters).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerControl, TrainerState, TrainingArguments

from sparks.callbacks.config import TrackerConfig
from sparks.callbacks.distributed import world
from sparks.callbacks.tracker import HeadTrackerCallback
from tests.callbacks.held_parameters import recording

STEPS = 3
BATCH = 8
LENGTH = 16
LEARNING_RATE = 5e-4


def train(model_dir: str, out_dir: str, tracker: dict) -> None:
    """STEPS tracked AdamW steps; sharded by FSDP2 (each decoder layer and the root) when there are several ranks."""
    rank, size = world()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    if size > 1:
        for layer in model.model.layers:
            fully_shard(layer)
        fully_shard(model)
    batch = torch.randint(len(tokenizer), (BATCH, LENGTH), generator=torch.Generator().manual_seed(0))
    rows = batch.chunk(size)[rank]
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE)
    callback = HeadTrackerCallback(TrackerConfig.from_recipe(tracker), job_type="sft")
    args = TrainingArguments(output_dir=out_dir, report_to=[], use_cpu=True)
    state, control = TrainerState(max_steps=STEPS, is_world_process_zero=rank == 0), TrainerControl()
    callback.on_train_begin(args, state, control, model=model, processing_class=tokenizer)
    for step in range(1, STEPS + 1):
        model.train()
        model(input_ids=rows, labels=rows).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        state.global_step = step
        callback.on_step_end(args, state, control, model=model)
    callback.on_train_end(args, state, control, model=model)


if __name__ == "__main__":
    dist.init_process_group("gloo")
    recording(Path(sys.argv[4]))
    train(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))
    dist.destroy_process_group()
