"""GRPO post-training from a YAML recipe, in the manner of Open-R1's `grpo.py`.

    accelerate launch --config_file configs/accelerate/cpu.yaml train/grpo.py --config configs/tiny/grpo.yaml

Any recipe field can be overridden on the command line, e.g. `--max_steps 3 --report_to none`.
"""

from __future__ import annotations

from sparks.train.launcher import follow_launcher

if __name__ == "__main__":
    follow_launcher()  # before the heavy imports below: a launcher's worker must not outlive it, even while it starts

from trl import GRPOConfig, GRPOTrainer, ModelConfig, get_peft_config

from sparks.train.arguments import GRPOScriptArguments, exit_with, parse_recipe
from sparks.train.preparation import prepare
from sparks.train.rewards import get_rewards
from sparks.train.run import tracker_callbacks, train_and_save


def main(script_args: GRPOScriptArguments, training_args: GRPOConfig, model_args: ModelConfig) -> None:
    try:
        reward_funcs = get_rewards(script_args.reward_funcs)
    except ValueError as error:
        exit_with(error)
    prepared = prepare(script_args, training_args, model_args, "grpo")
    trainer = GRPOTrainer(
        model=prepared.model,
        reward_funcs=reward_funcs,  # type: ignore[arg-type]  # TRL asks for rewards returning list[float | None]; list's invariance rejects ours, which return list[float]
        args=training_args,
        train_dataset=prepared.train_dataset,
        processing_class=prepared.tokenizer,
        peft_config=get_peft_config(model_args),
        callbacks=tracker_callbacks(prepared.tracker, training_args, "grpo", prepared.pairs),
    )
    train_and_save(trainer, "GRPO")


if __name__ == "__main__":
    main(*parse_recipe((GRPOScriptArguments, GRPOConfig, ModelConfig)))
