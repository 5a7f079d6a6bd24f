"""Supervised fine-tuning on step-by-step traces from a YAML recipe, in the manner of Open-R1's `sft.py`.

    accelerate launch --config_file configs/accelerate/cpu.yaml train/sft.py --config configs/tiny/sft.yaml
"""

from __future__ import annotations

from transformers import set_seed
from trl import ModelConfig, SFTConfig, SFTTrainer, get_peft_config

from tasks.data import load
from train.arguments import RecipeArguments, check_model_path, exit_with, parse_recipe
from train.models import load_model, load_tokenizer
from train.run import tracker_callbacks, train_and_save


def main(script_args: RecipeArguments, training_args: SFTConfig, model_args: ModelConfig) -> None:
    try:
        script_args.check()
        check_model_path(model_args.model_name_or_path)
        tracker = script_args.tracker_config()
    except ValueError as error:  # RecipeError included
        exit_with(error)
    set_seed(training_args.seed)
    tokenizer = load_tokenizer(model_args, training_args)
    model = load_model(model_args, training_args)
    train_dataset = load(script_args.dataset_name, script_args.data_options("sft", training_args.seed))
    trainer = SFTTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset.select_columns(["prompt", "completion"]),
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
        callbacks=tracker_callbacks(tracker, training_args, "sft"),
    )
    train_and_save(trainer, "SFT")


if __name__ == "__main__":
    main(*parse_recipe((RecipeArguments, SFTConfig, ModelConfig)))
