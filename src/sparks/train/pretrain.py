"""Pretrain the tiny base model of the arithmetic world from scratch, on CPU, in minutes.

The corpus is written mostly in the direct style with a minority of step-by-step traces, so that the
base model answers directly and GRPO later finds a non-zero reward for reasoning.

    python train/pretrain.py --config configs/tiny/pretrain.yaml
"""

from __future__ import annotations

from sparks.train.launcher import follow_launcher

if __name__ == "__main__":
    follow_launcher()  # before the heavy imports below: a launcher's worker must not outlive it, even while it starts

from dataclasses import dataclass, field, replace

from transformers import set_seed
from trl import SFTConfig, SFTTrainer

from sparks.tasks.data import arith_dataset
from sparks.tasks.tiny_model import TinyModelArguments, build_tiny_model
from sparks.tasks.tokenizer import build_tokenizer
from sparks.train.arguments import DataArguments, RecipeError, exit_with, parse_recipe
from sparks.train.run import train_and_save


@dataclass
class PretrainArguments(DataArguments):
    """The base corpus: how much reasoning it holds and how often thinking is switched off."""

    think_fraction: float = field(default=0.2, metadata={"help": "Share of step-by-step examples."})
    thinking_off_fraction: float = field(default=0.1, metadata={"help": "Share with an empty think block."})

    def check(self) -> None:
        super().check()
        if self.dataset_name != "arith":
            raise RecipeError(f"dataset_name: pretraining builds the arithmetic world only, got {self.dataset_name!r}")
        if not 0 <= self.think_fraction + self.thinking_off_fraction <= 1:
            raise RecipeError("think_fraction + thinking_off_fraction: must lie in [0, 1]")


def main(script_args: PretrainArguments, training_args: SFTConfig, shape: TinyModelArguments) -> None:
    try:
        script_args.check()
    except RecipeError as error:
        exit_with(error)
    set_seed(training_args.seed)  # the random initialisation is part of the recipe
    tokenizer = build_tokenizer()
    model = build_tiny_model(shape, tokenizer)
    options = replace(
        script_args.data_options("pretrain", training_args.seed),
        think_fraction=script_args.think_fraction,
        thinking_off_fraction=script_args.thinking_off_fraction,
    )
    corpus = arith_dataset(options).select_columns(["prompt", "completion"])
    trainer = SFTTrainer(model=model, args=training_args, train_dataset=corpus, processing_class=tokenizer)
    train_and_save(trainer, "pretraining")


if __name__ == "__main__":
    main(*parse_recipe((PretrainArguments, SFTConfig, TinyModelArguments)))
