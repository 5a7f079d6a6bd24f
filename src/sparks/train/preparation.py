"""Everything a training script builds its trainer from, in the one order every script keeps: every input
checked and the output directory held (or one line and exit status 2, before any model loads), then the
tokenizer, the tracker's probe pairs, the model and the training data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase, set_seed
from trl import GRPOConfig, ModelConfig, SFTConfig

from sparks.callbacks.config import TrackerConfig
from sparks.probes.pairs import Pair
from sparks.tasks.data import load
from sparks.train.arguments import RecipeArguments, RecipeError, check_model_path, check_training_args, exit_with, tracker_pairs
from sparks.train.models import load_model, load_tokenizer
from sparks.train.run import resume_point


@dataclass(frozen=True)
class Prepared:
    """A recipe's checked tracker settings, tokenizer, probe pairs, model and training data."""

    tracker: TrackerConfig | None
    tokenizer: PreTrainedTokenizerBase
    pairs: list[Pair] | None
    model: PreTrainedModel
    train_dataset: Any


def prepare(script_args: RecipeArguments, training_args: GRPOConfig | SFTConfig, model_args: ModelConfig,
            job_type: str) -> Prepared:
    """Check the recipe, hold the output directory (resuming where asked), then load what ``job_type``
    ("grpo", "sft") trains from."""
    try:
        script_args.check()
        check_model_path(model_args.model_name_or_path)
        tracker = script_args.tracker_config()
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
    train_dataset = load(script_args.dataset_name, script_args.data_options(job_type, training_args.seed))
    return Prepared(tracker, tokenizer, pairs, model, train_dataset)
