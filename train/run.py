"""The part every training script shares: a terse progress bar, train, save, say where it went."""

from __future__ import annotations

from transformers import Trainer

from train.progress import use_reward_progress


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
