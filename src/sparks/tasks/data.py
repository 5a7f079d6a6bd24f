"""Training and evaluation data sets by name, in TRL's conversational formats.

`arith` is generated locally; `gsm8k` and `openr1-math` are loaded with `datasets.load_dataset`,
from the hub or from a local directory in the hub's layout (``dataset_path``). Every row carries
`answer` (the gold final answer, as text) and `task` (which checker applies), so one reward function
serves every data set.

Probe questions: one question in ``PROBE_ONE_IN`` of a real data set's training split, chosen by a
hash of its text (as the arithmetic world splits its problems), is held out for the head tracker's
probe pairs and never trained on, whatever the seed, the row order or the tracker's settings.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from datasets import Dataset, get_dataset_config_names, load_dataset
from transformers import PreTrainedTokenizerBase

from sparks.tasks import arith, formats

# The paper's Open-R1 system prompt: reason in a think block, then answer in an answer block.
R1_SYSTEM_PROMPT = (
    "You are a helpful AI Assistant that provides well-reasoned and detailed responses. You first think about "
    "the reasoning process as an internal monologue and then provide the user with the answer. Respond in the "
    "following format: <think>\n...\n</think>\n<answer>\n...\n</answer>"
)


@dataclass(frozen=True)
class DataOptions:
    """What a training script asks of a data set: its size, levels, prompt, and where a real one is read from."""

    kind: str  # "pretrain", "sft" or "grpo"
    num_examples: int
    levels: tuple[int, ...]
    seed: int
    system_prompt: str | None = None
    think_fraction: float = 0.2
    thinking_off_fraction: float = 0.1
    dataset_path: str | None = None  # a local directory read in place of a real data set's hub name


def chat_prompt(question: str, system_prompt: str | None) -> list[dict[str, str]]:
    """The conversational prompt: an optional system message, then the question."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*messages, {"role": "user", "content": question}]


def rendered_prompt(tokenizer: PreTrainedTokenizerBase, question: str, system_prompt: str | None, **switches: bool) -> str:
    """The question's chat prompt as text, with the generation prompt; ``switches`` are the template's
    (``enable_thinking``), left to its defaults when not given."""
    template_switches: dict[str, Any] = dict(switches)
    text = tokenizer.apply_chat_template(
        chat_prompt(question, system_prompt), tokenize=False, add_generation_prompt=True, **template_switches
    )
    return cast(str, text)  # tokenize=False renders one conversation to one string


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def arith_corpus_completion(problem: arith.Problem, options: DataOptions, rng: random.Random) -> str:
    """A pretraining completion: mostly the direct style, some reasoning, some with thinking switched off.

    Thinking off is written as an empty think block before the answer, which is token for token what
    the chat template's `enable_thinking=False` prompt followed by a direct answer reads.
    """
    draw = rng.random()
    if draw < options.think_fraction:
        return formats.think_completion(problem)
    if draw < options.think_fraction + options.thinking_off_fraction:
        return f"{formats.THINK_OPEN}\n\n{formats.THINK_CLOSE}\n{formats.direct_completion(problem)}"
    return formats.direct_completion(problem)


def arith_dataset(options: DataOptions, split: str = "train") -> Dataset:
    """The arithmetic world as a TRL data set of the kind the script needs."""
    problems = arith.problems(split, options.levels, options.num_examples, options.seed, unique=False)
    rng = random.Random(f"{options.seed}-{options.kind}-styles")
    rng.shuffle(problems)
    rows = []
    for problem in problems:
        row = {
            "prompt": chat_prompt(problem.question, options.system_prompt),
            "answer": str(problem.answer),
            "level": problem.level,
            "task": "arith",
        }
        if options.kind == "pretrain":
            row["completion"] = _assistant(arith_corpus_completion(problem, options, rng))
        elif options.kind == "sft":
            row["completion"] = _assistant(formats.think_completion(problem))
        rows.append(row)
    return Dataset.from_list(rows)


def gsm8k_final(answer: str) -> str:
    return answer.split("####")[-1].strip().replace(",", "")


@dataclass(frozen=True)
class HubSource:
    """Where a real data set lives on the hub, which column holds the question, and how its
    ``answer`` column gives the gold final answer."""

    path: str
    config: str
    question: str
    final_answer: Callable[[str], str] = str


HUB_SOURCES = {
    "gsm8k": HubSource("openai/gsm8k", "main", "question", gsm8k_final),
    "openr1-math": HubSource("open-r1/OpenR1-Math-220k", "default", "problem"),
}
PROBE_ONE_IN = 50


def is_probe_question(question: str) -> bool:
    """Whether a real data set's question is held out for probe pairs (module docstring)."""
    return int(hashlib.sha256(question.strip().encode()).hexdigest(), 16) % PROBE_ONE_IN == 0


def load_source(name: str, dataset_path: str | None = None) -> Dataset:
    """A real data set's training split as published, all of it, from the hub or from ``dataset_path``.

    Both go through ``load_dataset``: a local directory is read as a data set repository, so a
    snapshot of the hub repository gives the hub's configuration and a plain directory of files
    (``train.jsonl``, ``train.parquet``, ...) its only one.
    """
    if name not in HUB_SOURCES:
        raise ValueError(f"{name!r} is not a data set loaded with datasets; those are {sorted(HUB_SOURCES)}")
    source = HUB_SOURCES[name]
    if dataset_path is None:
        return load_dataset(source.path, source.config, split="train")
    config = source.config if source.config in get_dataset_config_names(dataset_path) else None
    return load_dataset(dataset_path, config, split="train")


def _training_source(name: str, options: DataOptions) -> Dataset:
    """The training split without its probe questions."""
    column = HUB_SOURCES[name].question
    return load_source(name, options.dataset_path).filter(lambda example: not is_probe_question(example[column]))


def gsm8k_dataset(options: DataOptions) -> Dataset:
    """GSM8K (openai/gsm8k, main): the rationale becomes the think block for SFT."""
    source = _training_source("gsm8k", options)

    def to_row(example: dict) -> dict:
        final = gsm8k_final(example["answer"])
        row = {"prompt": chat_prompt(example["question"], options.system_prompt), "answer": final, "task": "math"}
        if options.kind == "sft":
            rationale = example["answer"].split("####")[0].strip()
            row["completion"] = _assistant(f"<think>\n{rationale}\n</think>\n<answer>{final}</answer>")
        return row

    return _take(source.map(to_row, remove_columns=source.column_names), options)


def openr1_math_dataset(options: DataOptions) -> Dataset:
    """OpenR1-Math-220k (default subset): SFT keeps the first math-verified R1 generation."""
    source = _training_source("openr1-math", options)
    if options.kind == "sft":
        source = source.filter(lambda example: any(example["correctness_math_verify"]))

    def to_row(example: dict) -> dict:
        row = {"prompt": chat_prompt(example["problem"], options.system_prompt), "answer": example["answer"]}
        row["task"] = "math"
        if options.kind == "sft":
            verified = example["correctness_math_verify"].index(True)
            row["completion"] = _assistant(example["generations"][verified])
        return row

    return _take(source.map(to_row, remove_columns=source.column_names), options)


def probe_questions(name: str, count: int, seed: int, dataset_path: str | None = None) -> list[dict[str, str]]:
    """``count`` held-out questions of a real data set (fewer when it holds fewer), drawn with ``seed``:
    each as ``{"question", "answer"}``, a question asked twice in the data set once."""
    source = HUB_SOURCES[name]
    held: dict[str, str] = {}
    for example in load_source(name, dataset_path).filter(lambda example: is_probe_question(example[source.question])):
        held.setdefault(example[source.question], source.final_answer(example["answer"]))
    questions = sorted(held)
    random.Random(f"{seed}-{name}-probe").shuffle(questions)
    return [{"question": question, "answer": held[question]} for question in questions[:count]]


def _take(dataset: Dataset, options: DataOptions) -> Dataset:
    dataset = dataset.shuffle(seed=options.seed)
    return dataset.select(range(min(options.num_examples, len(dataset)))) if options.num_examples else dataset


DATASETS: dict[str, Callable[[DataOptions], Dataset]] = {
    "arith": arith_dataset,
    "gsm8k": gsm8k_dataset,
    "openr1-math": openr1_math_dataset,
}


def load(name: str, options: DataOptions) -> Dataset:
    """The training data set called `name`."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset_name {name!r}; known data sets are {sorted(DATASETS)}")
    return DATASETS[name](options)
