"""Supervised fine-tuning on step-by-step traces from a YAML recipe, in the manner of Open-R1's `sft.py`.

    accelerate launch --config_file configs/accelerate/cpu.yaml train/sft.py --config configs/tiny/sft.yaml
"""

from __future__ import annotations

from sparks.train.launcher import follow_launcher

if __name__ == "__main__":
    follow_launcher()  # before the heavy imports below: a launcher's worker must not outlive it, even while it starts

from trl import ModelConfig, SFTConfig, SFTTrainer, get_peft_config

from sparks.train.arguments import RecipeArguments, parse_recipe
from sparks.train.preparation import prepare
from sparks.train.run import tracker_callbacks, train_and_save


def main(script_args: RecipeArguments, training_args: SFTConfig, model_args: ModelConfig) -> None:
    prepared = prepare(script_args, training_args, model_args, "sft")
    trainer = SFTTrainer(
        model=prepared.model,
        args=training_args,
        train_dataset=prepared.train_dataset.select_columns(["prompt", "completion"]),
        processing_class=prepared.tokenizer,
        peft_config=get_peft_config(model_args),
        callbacks=tracker_callbacks(prepared.tracker, training_args, "sft", prepared.pairs),
    )
    train_and_save(trainer, "SFT")


if __name__ == "__main__":
    main(*parse_recipe((RecipeArguments, SFTConfig, ModelConfig)))
