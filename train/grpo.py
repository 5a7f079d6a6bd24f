"""GRPO post-training from a YAML recipe, in the manner of Open-R1's `grpo.py`.

    accelerate launch --config_file configs/accelerate/cpu.yaml train/grpo.py --config configs/tiny/grpo.yaml

Any recipe field can be overridden on the command line, e.g. `--max_steps 3 --report_to none`.
"""

from __future__ import annotations

from transformers import set_seed
from trl import GRPOConfig, GRPOTrainer, ModelConfig, get_peft_config

from tasks.data import load
from train.arguments import GRPOScriptArguments, check_model_path, exit_with, parse_recipe
from train.models import load_model, load_tokenizer
from train.run import tracker_callbacks, train_and_save
from train.rewards import get_rewards


def main(script_args: GRPOScriptArguments, training_args: GRPOConfig, model_args: ModelConfig) -> None:
    try:
        script_args.check()
        check_model_path(model_args.model_name_or_path)
        tracker = script_args.tracker_config()
        reward_funcs = get_rewards(script_args.reward_funcs)
    except ValueError as error:  # RecipeError included
        exit_with(error)
    set_seed(training_args.seed)
    tokenizer = load_tokenizer(model_args, training_args)
    model = load_model(model_args, training_args)
    train_dataset = load(script_args.dataset_name, script_args.data_options("grpo", training_args.seed))
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=training_args,
        train_dataset=train_dataset,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
        callbacks=tracker_callbacks(tracker, training_args, "grpo"),
    )
    train_and_save(trainer, "GRPO")


if __name__ == "__main__":
    main(*parse_recipe((GRPOScriptArguments, GRPOConfig, ModelConfig)))
