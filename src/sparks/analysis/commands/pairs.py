"""``sparks pairs``: build a clean/corrupted pair set (JSONL) from the arithmetic world's problems or a real
data set's questions, with openings written from templates or sampled from two models."""

from __future__ import annotations

import argparse

from sparks.analysis.commands.common import add_device_flag, check_draw, model_directory, positive_int
from sparks.probes.openings import sample_openings
from sparks.probes.pairs import save_pairs
from sparks.probes.schemes import (
    BASELINE_OPENING,
    REASONING_OPENING,
    ROLES,
    SCHEMES,
    arith_style_pairs,
    numbers_pairs,
    problem_meta,
    read_questions,
    style_pairs,
)
from sparks.tasks import arith
from sparks.tasks.data import HUB_SOURCES, probe_questions


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``sparks pairs``'s parser, added to ``subparsers``."""
    pairs = subparsers.add_parser("pairs", help="build a clean/corrupted pair set (JSONL)")
    pairs.add_argument("--scheme", choices=SCHEMES, required=True)
    pairs.add_argument("--model", required=True, help="model directory (its tokenizer is used)")
    pairs.add_argument("--out", required=True, help="JSONL file to write")
    pairs.add_argument("--split", choices=arith.SPLITS, default="probe")
    pairs.add_argument("--levels", type=int, nargs="+", default=sorted(arith.LEVELS))
    pairs.add_argument("--count", type=positive_int, default=64, help="problems to draw (pairs that cannot be built are left out)")
    pairs.add_argument("--seed", type=int, default=0)
    pairs.add_argument("--role", choices=ROLES, default="reasoning", help="style scheme: which style is clean")
    pairs.add_argument("--opening-tokens", type=positive_int, help="style scheme: tokens of each opening kept (default: shortest - 1)")
    pairs.add_argument("--questions", help="a real data set's questions: JSONL rows with 'question', or one per line")
    pairs.add_argument("--dataset", choices=sorted(HUB_SOURCES),
                       help="style scheme: --count of the data set's held-out questions (never trained on), drawn "
                            "with --seed as the tracker draws them")
    pairs.add_argument("--dataset-path", help="with --dataset: a local copy read in place of the hub name")
    pairs.add_argument("--reasoning-opening", default=REASONING_OPENING, help="with questions: the reasoning template")
    pairs.add_argument("--baseline-opening", default=BASELINE_OPENING, help="with questions: the baseline template")
    pairs.add_argument("--reasoning-model", help="style scheme: sample each question's reasoning opening from this model")
    pairs.add_argument("--baseline-model", help="style scheme: sample each question's baseline opening from this model")
    pairs.add_argument("--sample-tokens", type=positive_int, default=16, help="with the two models: new tokens per opening")
    pairs.add_argument("--sample-seed", type=int, help="with the two models: sample with this seed (default: greedy)")
    add_device_flag(pairs, help="with the two models")
    pairs.add_argument("--system-prompt")
    pairs.set_defaults(run=run)
    return pairs


def _sampled_openings(args: argparse.Namespace, tokenizer, questions: list[str]) -> tuple[list[str], list[str]]:
    """Each question's opening written by the reasoning model and by the baseline model."""
    from transformers import AutoModelForCausalLM

    openings = []
    for path in (args.reasoning_model, args.baseline_model):
        model = AutoModelForCausalLM.from_pretrained(path).to(args.device)
        openings.append(
            sample_openings(
                model, tokenizer, questions, tokens=args.sample_tokens, seed=args.sample_seed, system_prompt=args.system_prompt
            )
        )
        del model
    return openings[0], openings[1]


def run(args: argparse.Namespace) -> None:
    """Build the pair set; every check (flags that go together, model directories, the draw) passes before the
    first model loads."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_directory(args.model, tokenizer=True))
    sampled = args.reasoning_model is not None or args.baseline_model is not None
    if sampled and (args.reasoning_model is None or args.baseline_model is None):
        raise ValueError("--reasoning-model and --baseline-model are given together")
    if args.questions and args.dataset:
        raise ValueError("--questions and --dataset are two sources of questions: give one")
    if (args.questions or args.dataset) and args.scheme != "style":
        raise ValueError("--questions and --dataset work with --scheme style: a number swap needs the arithmetic world's answers")
    if args.dataset_path and not args.dataset:
        raise ValueError("--dataset-path is a local copy of a --dataset: name the data set")
    if sampled and args.scheme != "style":
        raise ValueError("--reasoning-model and --baseline-model work with --scheme style: they write answer openings")
    if sampled:
        for path in (args.reasoning_model, args.baseline_model):
            model_directory(path)
    questions_given = bool(args.questions or args.dataset)
    if questions_given:
        meta = read_questions(args.questions) if args.questions else probe_questions(
            args.dataset, args.count, args.seed, args.dataset_path)
        questions = [row["question"] for row in meta]
    else:
        check_draw("--count", args.count, args.split, args.levels)
        problems = arith.problems(args.split, args.levels, args.count, args.seed)
        questions, meta = [problem.question for problem in problems], [problem_meta(problem) for problem in problems]
    if args.scheme == "numbers":
        pairs = numbers_pairs(tokenizer, problems, seed=args.seed, system_prompt=args.system_prompt)
    elif not sampled and not questions_given:
        pairs = arith_style_pairs(
            tokenizer, problems, role=args.role, opening_tokens=args.opening_tokens, system_prompt=args.system_prompt
        )
    else:
        if sampled:
            reasoning, baseline = _sampled_openings(args, tokenizer, questions)
            meta = [{**row, "reasoning_model": args.reasoning_model, "baseline_model": args.baseline_model} for row in meta]
        else:
            reasoning, baseline = [args.reasoning_opening] * len(questions), [args.baseline_opening] * len(questions)
        pairs = style_pairs(
            tokenizer,
            questions,
            reasoning,
            baseline,
            role=args.role,
            opening_tokens=args.opening_tokens,
            system_prompt=args.system_prompt,
            meta=meta,
        )
    if not pairs:
        raise ValueError("no pair could be built from these questions")
    save_pairs(pairs, args.out)
    print(f"wrote {len(pairs)} {args.scheme} pairs to {args.out}")
