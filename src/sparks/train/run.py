"""The part every training script shares: resuming, the head tracker, a terse progress bar, train, save, say where it went."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import sort_checkpoints

from sparks.callbacks.config import LINEAGE_SETTINGS, TrackerConfig
from sparks.callbacks.distributed import sum_over_ranks
from sparks.callbacks.snapshot import ShardedSnapshotFailed
from sparks.callbacks.tracker import HeadTrackerCallback, dashboard_names
from sparks.dashboards.registry import KINDS
from sparks.probes.pairs import Pair
from sparks.runs.lock import WriterLock, lock_output_dir, release
from sparks.runs.store import RunStore, RunStoreError
from sparks.train.arguments import RecipeError, exit_with
from sparks.train.progress import use_reward_progress


def resume_point(training_args: TrainingArguments, tracker: TrackerConfig | None) -> None:
    """Take the output directory for this run, then choose the checkpoint to resume from; before any model loads.

    The main process takes the output directory's writer lock (runs.lock), held until
    ``train_and_save`` ends: a second run writing there is refused on every rank, naming the holder.
    ``resume_from_checkpoint``: a checkpoint directory; ``true`` for the last one, as in transformers;
    unset resumes from the output directory's last checkpoint when it has one, as Open-R1 does, so a
    crashed job relaunched with the same command goes on where it stopped. The run store's own check
    (runs.store) then moves an automatic resume back to a checkpoint at or before a snapshot the
    store lacks or holds damaged, to score it again, and refuses (RunStoreError) a relaunch that would
    start a lineage over, change its settings, or leave such a hole.
    """
    take_output_dir(training_args)
    try:
        choose_checkpoint(training_args, tracker)
    except BaseException:
        release_output_dir()
        raise


def choose_checkpoint(training_args: TrainingArguments, tracker: TrackerConfig | None) -> None:
    """resume_point's choice of checkpoint, and the run store's checks of it."""
    output_dir = str(training_args.output_dir)
    asked: str | bool | None = training_args.resume_from_checkpoint
    if isinstance(asked, str) and asked.strip().lower() in ("true", "false"):
        asked = asked.strip().lower() == "true"
    automatic = asked is None or asked is True
    checkpoint = asked if isinstance(asked, str) else None
    if isinstance(asked, str) and not (Path(asked) / "trainer_state.json").is_file():
        raise RecipeError(f"resume_from_checkpoint: {asked} is not a checkpoint (no trainer_state.json there)")
    if automatic and os.path.isdir(output_dir):
        checkpoint, passed_over = resumable_checkpoint(output_dir)
        if checkpoint is None and asked is True:
            raise RecipeError(f"resume_from_checkpoint: true resumes from the last checkpoint in {output_dir}, which holds none")
        if checkpoint is not None and training_args.process_index == 0:
            print(f"sparks: resuming from {checkpoint}" + "".join(f"; {note}" for note in passed_over), flush=True)
    if tracker is not None:
        store = RunStore(output_dir)
        if checkpoint is not None and store.holds_lineage():
            checkpoint = restore_damaged_snapshot(output_dir, checkpoint, store, automatic, training_args.process_index == 0)
        store.check_relaunch(tracker.as_dict(), LINEAGE_SETTINGS, resuming=checkpoint is not None)
    training_args.resume_from_checkpoint = checkpoint


def restore_damaged_snapshot(output_dir: str, checkpoint: str, store: RunStore, automatic: bool, main_process: bool) -> str:
    """The checkpoint to resume from: ``checkpoint``, or one at or before the first snapshot the store's lineage
    names but lacks or holds damaged, so that training from there scores it again (an automatic resume moves
    back, saying so; a named checkpoint after it is refused, naming the one to use)."""
    damage = store.damage()
    resumed_at = checkpoint_step(checkpoint)
    if not damage or resumed_at <= damage[0].step:
        return checkpoint
    first = damage[0]
    earlier, _ = resumable_checkpoint(output_dir, at_most=first.step)
    if earlier is None:
        raise RunStoreError(f"{first}; no checkpoint at or before step {first.step} can score it again: rescore the "
                            "run's checkpoints with `sparks rescore`, or set --output_dir to a new directory")
    if not automatic:
        raise RunStoreError(f"{first}; resuming at step {resumed_at} would leave it missing: resume with "
                            f"--resume_from_checkpoint {earlier} to score it again")
    if main_process:
        print(f"sparks: {first}; resuming from {earlier} instead, to score it again (steps {checkpoint_step(earlier)} "
              f"to {resumed_at} are trained again, to the same weights)", flush=True)
    return earlier


def checkpoint_step(checkpoint: str) -> int:
    """The step a checkpoint directory holds (its trainer_state.json)."""
    return int(json.loads((Path(checkpoint) / "trainer_state.json").read_text())["global_step"])


def take_output_dir(training_args: TrainingArguments) -> None:
    """Take the output directory's writer lock on the main process, until ``train_and_save`` ends; refused
    (RunStoreError) on every rank when another process holds it."""
    global _output_dir_lock
    refusal: RunStoreError | None = None
    if training_args.process_index == 0 and _output_dir_lock is None:
        try:
            assert training_args.output_dir is not None, "TrainingArguments gives output_dir a default"
            _output_dir_lock = lock_output_dir(training_args.output_dir)
        except RunStoreError as error:
            refusal = error
    refused = sum_over_ranks(torch.tensor([float(refusal is not None)], device=training_args.device)).item()
    if refusal is not None:
        raise refusal
    if refused:
        raise SystemExit(2)  # the main process names the holder


def release_output_dir() -> None:
    """Let go of the output directory's writer lock, if this process took it."""
    global _output_dir_lock
    if _output_dir_lock is not None:
        release(_output_dir_lock)
        _output_dir_lock = None


_output_dir_lock: WriterLock | None = None


def resumable_checkpoint(output_dir: str, at_most: int | None = None) -> tuple[str | None, list[str]]:
    """The checkpoint to resume from, and why any newer one was passed over.

    The newest whole checkpoint (its trainer_state.json readable: a kill can interrupt a checkpoint's
    write) short of the run's last step, and at or before step ``at_most`` when given: resumed at ``max_steps``, transformers 5 trains one step
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
        if at_most is not None and state.get("global_step", 0) > at_most:
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
    report_to = [name for name in training_args.report_to or [] if name != "none"]
    integrations = [KINDS[name].report_to for name in dashboard_names(config)]
    training_args.report_to = report_to + [name for name in integrations if name not in report_to]
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
    finally:
        release_output_dir()
    if main_process:
        print(f"sparks: {kind} run written to {args.output_dir}", flush=True)


def stop_rank(error: ShardedSnapshotFailed) -> None:
    """End this rank after a sharded snapshot failed here (the others wait in the model's collectives, and
    its launcher stops them). The rank that failed first names the cause last, in the launcher's report:
    a rank whose collective failed after it only prints its own line."""
    exit_with(error, to_launcher=not error.in_collective)
