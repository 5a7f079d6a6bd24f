"""The part every training script shares: the head tracker, a terse progress bar, train, save, say where it went."""

from __future__ import annotations

import os

from transformers import Trainer, TrainerCallback, TrainingArguments

from callbacks.config import TrackerConfig
from callbacks.tracker import HeadTrackerCallback, dashboard_names
from train.progress import use_reward_progress


def tracker_callbacks(config: TrackerConfig | None, training_args: TrainingArguments, job_type: str) -> list[TrainerCallback]:
    """The head tracker when the recipe has a `tracker:` section.

    The trainer then also reports to the tracker's dashboards, in the same project, so the heads
    panels sit next to the reward curve.
    """
    if config is None:
        return []
    report_to = [name for name in training_args.report_to if name != "none"]
    training_args.report_to = report_to + [name for name in dashboard_names(config) if name not in report_to]
    os.environ.setdefault("WANDB_PROJECT", training_args.project)
    return [HeadTrackerCallback(config, job_type=job_type)]


def train_and_save(trainer: Trainer, kind: str) -> None:
    """Train (resuming if the recipe asks), save the model and trainer state, report on the main process."""
    use_reward_progress(trainer)
    args = trainer.args
    main_process = trainer.accelerator.is_main_process
    if main_process:
        processes = trainer.accelerator.num_processes
        print(f"sparks: {kind} on {processes} process{'es' if processes > 1 else ''}", flush=True)
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    trainer.save_model(args.output_dir)
    trainer.save_state()
    if main_process:
        print(f"sparks: {kind} run written to {args.output_dir}", flush=True)
