"""The part every training script shares: resuming, the head tracker, a terse progress bar, train, save, say where it went."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import sort_checkpoints

from sparks.callbacks.config import TrackerConfig
from sparks.callbacks.snapshot import ShardedSnapshotFailed
from sparks.callbacks.store import RunStore, RunStoreError
from sparks.callbacks.tracker import HeadTrackerCallback, dashboard_names
from sparks.probes.pairs import Pair
from sparks.train.arguments import exit_with
from sparks.train.progress import use_reward_progress


def resume_point(training_args: TrainingArguments, tracker: TrackerConfig | None) -> None:
    """Resume from the output directory's last checkpoint when the recipe names none, as Open-R1 does,
    and refuse (RunStoreError) a relaunch that would start a run store's lineage over or change its settings.

    Runs before any model loads, so a crashed job relaunched with the same command goes on where it stopped.
    """
    if training_args.resume_from_checkpoint is None and os.path.isdir(training_args.output_dir):
        checkpoint, passed_over = resumable_checkpoint(training_args.output_dir)
        if checkpoint is not None:
            training_args.resume_from_checkpoint = checkpoint
            if training_args.process_index == 0:
                print(f"sparks: resuming from {checkpoint}" + "".join(f"; {note}" for note in passed_over), flush=True)
    if tracker is not None:
        RunStore(training_args.output_dir).check_relaunch(
            tracker.as_dict(), resuming=training_args.resume_from_checkpoint is not None)


def resumable_checkpoint(output_dir: str) -> tuple[str | None, list[str]]:
    """The checkpoint to resume from, and why any newer one was passed over.

    The newest whole checkpoint (its trainer_state.json readable: a kill can interrupt a checkpoint's
    write) short of the run's last step: resumed at ``max_steps``, transformers 5 trains one step
    more than the run it resumes, so the last segment is trained again from the checkpoint before it
    (the same steps, from the same RNG state). The last-step checkpoint when it is the only one.
    """
    passed_over, final = [], None
    for checkpoint in reversed(sort_checkpoints(output_dir)):
        try:
            state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
        except (OSError, ValueError):
            passed_over.append(f"{Path(checkpoint).name} is incomplete (no readable trainer_state.json)")
            continue
        if 0 < state.get("max_steps", 0) <= state.get("global_step", 0):
            final = final or checkpoint
            passed_over.append(f"{Path(checkpoint).name} is the run's last step, where transformers would train "
                               f"one step too many; its last segment is trained again")
            continue
        return checkpoint, passed_over
    return final, [note for note in passed_over if "incomplete" in note]


def tracker_callbacks(
    config: TrackerConfig | None, training_args: TrainingArguments, job_type: str, pairs: Sequence[Pair] | None = None
) -> list[TrainerCallback]:
    """The head tracker when the recipe has a `tracker:` section, scoring ``pairs`` (already read and
    checked against the model) or, without them, the pairs its config names.

    The trainer then also reports to the tracker's dashboards, in the same project, so the heads
    panels sit next to the reward curve; a recipe's explicit ``report_to: none`` has turned those
    off already (train.arguments.parse_recipe), so the trainer then reports nowhere.
    """
    if config is None:
        return []
    report_to = [name for name in training_args.report_to if name != "none"]
    training_args.report_to = report_to + [name for name in dashboard_names(config) if name not in report_to]
    return [HeadTrackerCallback(config, pairs, job_type=job_type)]


def train_and_save(trainer: Trainer, kind: str) -> None:
    """Train (resuming if the recipe asks), save the model and trainer state, report on the main process.

    With the head tracker on, the trainer's W&B run carries its group and job type (HeadTrackerCallback.wandb_run).
    """
    use_reward_progress(trainer)
    args = trainer.args
    main_process = trainer.accelerator.is_main_process
    if main_process:
        processes = trainer.accelerator.num_processes
        print(f"sparks: {kind} on {processes} process{'es' if processes > 1 else ''}", flush=True)
    trackers = [callback for callback in trainer.callback_handler.callbacks if isinstance(callback, HeadTrackerCallback)]
    try:
        with trackers[0].wandb_run(args) if trackers else nullcontext():
            trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    except RunStoreError as error:  # raised on every rank before the first step; the main process names it
        if main_process:
            exit_with(error)
        raise SystemExit(2) from None
    except ShardedSnapshotFailed as error:
        stop_rank(error)
    trainer.save_model(args.output_dir)
    trainer.save_state()
    if main_process:
        print(f"sparks: {kind} run written to {args.output_dir}", flush=True)


def stop_rank(error: ShardedSnapshotFailed) -> None:
    """End this rank after a sharded snapshot failed here (the others wait in the model's collectives, and
    its launcher stops them). The rank that failed first names the cause last, in the launcher's report:
    a rank whose collective failed after it only prints its own line."""
    exit_with(error, to_launcher=not error.in_collective)
