"""A terse progress bar for post-training: the reward on the bar, one short line per log."""

from __future__ import annotations

from transformers import TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_callback import ProgressCallback

SHOWN = ("reward", "rewards/accuracy_reward/mean", "rewards/format_reward/mean", "loss", "mean_token_accuracy")
SHORT_NAMES = {"rewards/accuracy_reward/mean": "accuracy", "rewards/format_reward/mean": "format"}


class RewardProgressCallback(ProgressCallback):
    """Trainer's progress bar, with the reward as its postfix and `step N/M  reward …` lines instead of dicts."""

    def on_log(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs: dict | None = None, **kwargs
    ) -> None:
        if not state.is_world_process_zero or not logs or self.training_bar is None:
            return
        shown = {SHORT_NAMES.get(key, key): logs[key] for key in SHOWN if isinstance(logs.get(key), (int, float))}
        if shown:
            self.training_bar.set_postfix({name: f"{value:.3f}" for name, value in shown.items()}, refresh=False)
            line = "  ".join(f"{name} {value:.3f}" for name, value in shown.items())
            self.training_bar.write(f"step {state.global_step}/{state.max_steps}  {line}")
        elif "train_runtime" in logs:
            self.training_bar.write(f"trained {state.global_step} steps in {logs['train_runtime']:.0f} s")


def use_reward_progress(trainer) -> None:
    """Swap the trainer's default progress printer for `RewardProgressCallback`."""
    if trainer.args.disable_tqdm:
        return
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(RewardProgressCallback)
