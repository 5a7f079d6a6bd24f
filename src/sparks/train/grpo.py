"""GRPO post-training from a YAML recipe, in the manner of Open-R1's `grpo.py`.

    accelerate launch --config_file configs/accelerate/cpu.yaml train/grpo.py --config configs/tiny/grpo.yaml

Any recipe field can be overridden on the command line, e.g. `--max_steps 3 --report_to none`.
"""

from __future__ import annotations

from sparks.train.launcher import follow_launcher

if __name__ == "__main__":
    follow_launcher()  # before the heavy imports below: a launcher's worker must not outlive it, even while it starts

from transformers import set_seed
from trl import GRPOConfig, GRPOTrainer, ModelConfig, get_peft_config

from sparks.tasks.data import load
from sparks.train.arguments import (
    GRPOScriptArguments,
    RecipeError,
    check_model_path,
    check_training_args,
    exit_with,
    parse_recipe,
    tracker_pairs,
)
from sparks.train.models import load_model, load_tokenizer
from sparks.train.rewards import get_rewards
from sparks.train.run import resume_point, tracker_callbacks, train_and_save


def main(script_args: GRPOScriptArguments, training_args: GRPOConfig, model_args: ModelConfig) -> None:
    try:
        script_args.check()
        check_model_path(model_args.model_name_or_path)
        tracker = script_args.tracker_config()
        reward_funcs = get_rewards(script_args.reward_funcs)
        check_training_args(training_args, tracker)
        resume_point(training_args, tracker)
    except ValueError as error:  # RecipeError included
        exit_with(error)
    set_seed(training_args.seed)
    tokenizer = load_tokenizer(model_args, training_args)
    try:
        pairs = tracker_pairs(tracker, script_args, model_args, tokenizer, training_args.trust_remote_code)
    except RecipeError as error:
        exit_with(error)
    model = load_model(model_args, training_args)
    train_dataset = load(script_args.dataset_name, script_args.data_options("grpo", training_args.seed))
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,  # type: ignore[arg-type]  # TRL asks for rewards returning list[float | None]; list's invariance rejects ours, which return list[float]
        args=training_args,
        train_dataset=train_dataset,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
        callbacks=tracker_callbacks(tracker, training_args, "grpo", pairs),
    )
    train_and_save(trainer, "GRPO")


if __name__ == "__main__":
    main(*parse_recipe((GRPOScriptArguments, GRPOConfig, ModelConfig)))
