"""The ``sparks`` command line: build probe pair sets, score heads and edges on a saved model, compare runs, and
test what heads do (thinking on/off circuits, ablation and scaling).

    sparks pairs --scheme numbers --model outputs/tiny-base --split probe --levels 1 2 3 --count 64 --out pairs.jsonl
    sparks pairs --scheme style --model outputs/tiny-base --reasoning-model outputs/tiny-grpo --baseline-model outputs/tiny-base --out style.jsonl
    sparks score --model outputs/tiny-base --pairs pairs.jsonl --method eap-ig --level edge --metric kl --out scores/
    sparks compare outputs/tiny-grpo outputs/tiny-sft --out compare/ --wandb
    sparks rescore outputs/tiny-grpo-saved --base outputs/tiny-base --method eap --metric logit_diff
    sparks think --model outputs/tiny-base --out think/
    sparks ablate --model outputs/tiny-base --from-run outputs/tiny-sft --emergent --mode scale --factor 1.3

Bad input (a pair file that is missing, empty, mistyped or made with another tokenizer, a head out of
range, a model without the expected modules, a model whose scores are NaN or inf) ends with one
``sparks: error: ...`` line and exit status 2, before anything is written. Flags are checked before
any model loads or any work begins: counts are whole numbers > 0, real numbers finite, a flag the
command does not know is refused with that command's usage, and more arithmetic problems than the
asked levels hold are refused without drawing them.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import NoReturn

import torch
from safetensors.torch import save_file

from sparks.analysis.ablate import INTERVENTIONS, parse_heads
from sparks.analysis.outputs import check_out, staged
from sparks.analysis.rescore import TOKENIZER_FILES
from sparks.callbacks.config import RESCORE_SETTINGS, TrackerConfig
from sparks.dashboards.plots import head_heatmap, save_png
from sparks.probes.architectures import check_family
from sparks.probes.circuit_scoring import score_circuit
from sparks.probes.openings import sample_openings
from sparks.probes.pairs import load_pairs, load_pairs_for_model, save_pairs
from sparks.probes.schemes import (
    BASELINE_OPENING,
    REASONING_OPENING,
    ROLES,
    SCHEMES,
    THINKING_MODES,
    arith_style_pairs,
    has_thinking_switch,
    numbers_pairs,
    problem_meta,
    read_questions,
    style_pairs,
    text_number_swap,
)
from sparks.probes.settings import Rule
from sparks.probes.spec import add_flags, from_flags
from sparks.runs.store import first_line
from sparks.tasks import arith
from sparks.tasks.data import HUB_SOURCES, probe_questions
from sparks.tasks.evaluation import MODES

SCORE_FLAGS = ("method", "level", "metric", "ig_steps", "ig_rule", "batch_size", "chunk_size", "aggregation", "mass",
               "top_n", "tau", "replicates", "seed")
"""The scoring spec's settings ``sparks score`` takes as flags."""
THINK_FLAGS = ("method", "level", "ig_steps", "ig_rule", "mass", "top_n", "tau", "aggregation", "replicates", "confidence",
               "batch_size", "seed")
"""The scoring spec's settings ``sparks think`` takes as flags (its metric is KL)."""


def _has_tokenizer(model_dir: str) -> bool:
    """Whether a tokenizer is saved in the model directory (transformers makes an empty one, of one token and
    no chat template, from a weights-only directory rather than refuse it)."""
    return any((Path(model_dir) / name).is_file() for name in TOKENIZER_FILES)


def _model_dir(path: str, tokenizer: bool = False) -> str:
    """``path`` once it is a model directory, holding a tokenizer too where the command writes prompts with it."""
    if not Path(path).is_dir():
        raise FileNotFoundError(f"model directory {path} does not exist")
    if tokenizer and not _has_tokenizer(path):
        raise FileNotFoundError(f"model directory {path} holds no tokenizer ({' or '.join(TOKENIZER_FILES)}); "
                                "save the model's tokenizer with it")
    return path


def _check_draw(flag: str, asked: int, split: str, levels: Sequence[int], per_level: bool = False) -> None:
    """Refuse unknown ``--levels``, and more problems asked (``flag``'s ``asked``) than they hold, known without
    drawing (tasks.arith.held): the draw would reject what it cannot use for minutes. With ``per_level`` each
    level is asked for ``asked``, and one holding fewer gives what it has, so at least one must hold them."""
    arith.check_levels(levels, "--levels")
    if per_level:
        most = max(arith.held(split, [level]) for level in levels)
        if asked > most:
            raise ValueError(f"{flag}: {asked} problems asked of each level; no level of {sorted(set(levels))} "
                             f"in the {split} split holds more than {most}")
    elif asked > (held := arith.held(split, levels)):
        raise ValueError(f"{flag}: {asked} problems asked, levels {sorted(set(levels))} of the {split} split hold {held}")


positive_int = Rule("count").flag_value
"""A count flag's value, a whole number > 0 (argparse names the flag when it refuses one)."""
finite_float = Rule("number").flag_value
"""A real flag's value, a finite number: nan and inf would run and write NaN or Infinity (not JSON) into the result."""


class _Parser(argparse.ArgumentParser):
    """argparse with its refusals in the form of every other: the command's usage, then one
    ``sparks: error: --flag: why`` line, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"sparks: error: {message.removeprefix('argument ')}\n")


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


def pairs_command(args: argparse.Namespace) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(_model_dir(args.model, tokenizer=True))
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
            _model_dir(path)
    questions_given = bool(args.questions or args.dataset)
    if questions_given:
        meta = read_questions(args.questions) if args.questions else probe_questions(
            args.dataset, args.count, args.seed, args.dataset_path)
        questions = [row["question"] for row in meta]
    else:
        _check_draw("--count", args.count, args.split, args.levels)
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


def score_command(args: argparse.Namespace) -> None:
    """Score heads or edges; every check (pair file, heads, finite scores) passes before ``--out`` is written."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    spec = from_flags(args, SCORE_FLAGS)
    heads = None if args.heads is None else parse_heads(args.heads, "--heads")
    model_dir = _model_dir(args.model)
    # A weights-only directory is scored on the pair file's ids, with no tokenizer to check them against.
    tokenizer = AutoTokenizer.from_pretrained(model_dir) if _has_tokenizer(model_dir) else None
    pairs = load_pairs_for_model(args.pairs, model_dir, tokenizer)
    check_family(AutoConfig.from_pretrained(model_dir).model_type, args.level)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, args.dtype))
    model.to(args.device)
    scored = score_circuit(model, pairs, spec, pad_id=model.config.pad_token_id or 0, heads=heads, name=args.model)
    scores, stats = scored.scores, scored.stats
    assert stats.faithfulness_interval is not None, "score_circuit measures faithfulness"
    faithfulness_interval = stats.faithfulness_interval
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({name: value.contiguous() for name, value in scores.items()}, str(out / "scores.safetensors"))
    stats.circuit.save(out / "circuit")

    def plain(values: torch.Tensor) -> list:
        return [[None if value != value else value for value in row] for row in values.tolist()]

    summary = {
        "model": args.model,
        "pairs": args.pairs,
        "num_pairs": len(pairs),
        "method": args.method,
        "level": args.level,
        "metric": args.metric,
        "ig_steps": args.ig_steps,
        "ig_rule": args.ig_rule,
        "aggregation": args.aggregation,
        "importance": plain(stats.importance),
        "importance_low": plain(stats.importance_interval[0]),
        "importance_high": plain(stats.importance_interval[1]),
        "circuit_heads": [list(head) for head in stats.circuit.heads],
        "replicates": args.replicates,
        "membership": plain(stats.membership),
        "stability": stats.stability,
        "null_churn": stats.null_churn,
        "faithfulness": plain(torch.tensor([[stats.faithfulness]]))[0][0],
        "faithfulness_interval": plain(torch.tensor([faithfulness_interval]))[0],
    }
    (out / "scores.json").write_text(json.dumps(summary, indent=1))
    title = f"{Path(args.model).name}: {args.method} {args.level} {args.metric}, {len(pairs)} pairs"
    save_png(head_heatmap(stats.importance.float().numpy(), title, marked=stats.circuit.heads), out / "heatmap.png")
    low, high = faithfulness_interval
    print(f"scored {len(pairs)} pairs; {len(stats.circuit.heads)} heads in the circuit (stability {stats.stability:.2f}, "
          f"faithfulness {stats.faithfulness:.2f} [{low:.2f}, {high:.2f}], null churn {stats.null_churn:.1f} heads); wrote {out}")


def _swaps(args: argparse.Namespace, tokenizer) -> list[dict]:
    """The number swaps sparks think scores: a number-swap pair file's; a real data set's questions, one whole
    number in each changed (probes.schemes.text_number_swap); or drawn as ``sparks pairs --scheme numbers`` draws them."""
    sources = [name for name in ("pairs", "questions", "dataset") if getattr(args, name) is not None]
    if len(sources) > 1:
        raise ValueError(f"--{sources[0]} and --{sources[1]} are two sources of questions: give one")
    if args.dataset_path is not None and args.dataset is None:
        raise ValueError("--dataset-path is a local copy of a --dataset: name the data set")
    if sources and args.levels is not None:
        raise ValueError(f"--levels draws arithmetic questions; --{sources[0]} brings its own: give one")
    if sources in (["pairs"], ["questions"]) and args.count is not None:
        raise ValueError(f"--count draws questions; --{sources[0]} brings its own: give one")
    if args.pairs is not None:
        pairs = load_pairs(args.pairs)
        for number, pair in enumerate(pairs, start=1):
            if not all(isinstance(pair.meta.get(key), str) for key in ("question", "corrupted_question")):
                raise ValueError(f"{args.pairs}: pair {number}: meta has no question and corrupted_question; sparks think "
                                 "takes a number-swap pair file (sparks pairs --scheme numbers)")
        return [pair.meta for pair in pairs]
    if sources:
        rows = read_questions(args.questions) if args.questions else probe_questions(
            args.dataset, 64 if args.count is None else args.count, args.seed, args.dataset_path)
        swaps = []
        for row in rows:
            swapped = text_number_swap(row["question"], random.Random(f"{args.seed}-{row['question']}"))
            if swapped is not None:
                swaps.append({**row, "corrupted_question": swapped})
        if not swaps:
            raise ValueError(f"no question of --{sources[0]} holds a whole number to change")
        return swaps
    levels = sorted(arith.LEVELS) if args.levels is None else args.levels
    count = 64 if args.count is None else args.count
    if count < 2:
        raise ValueError(f"--count needs at least 2 questions to resample, got {count}")
    _check_draw("--count", count, "probe", levels)
    problems = arith.problems("probe", levels, count, args.seed)
    return [pair.meta for pair in numbers_pairs(tokenizer, problems, seed=args.seed, system_prompt=args.system_prompt)]


def _think_table(summary: dict) -> str:
    """The printed report of sparks think: heads, counts, sizes, faithfulness, verdict."""

    def span(values: list, digits: int = 3) -> str:
        return "[" + ", ".join("nan" if value is None else f"{value:.{digits}f}" for value in values) + "]"

    lines = [f"{'head':>6}  {'category':<8}  {'conf':>5}  {'importance on':<24}  {'importance off':<24}"]
    for row in summary["heads"]:
        importance = [f"{row['importance'][mode]:.3f} {span(row['importance_interval'][mode])}" for mode in THINKING_MODES]
        lines.append(f"{row['head'][0]:>4}.{row['head'][1]:<1}  {row['category']:<8}  {row['confidence']:>5.2f}"
                     f"{'*' if row['confident'] else ' '} {importance[0]:<24}  {importance[1]:<24}")
    lines.append("(* confident)")
    for category, count in summary["counts"].items():
        lines.append(f"{category:<8}: {count['raw']} heads (replicates 95% {span(count['interval'], 1)}), {count['confident']} confident")
    for name, digits in (("size", 1), ("faithfulness", 3), ("efficiency", 3)):
        parts = [f"{key} {'nan' if figure['value'] is None else format(figure['value'], f'.{digits}f')} "
                 f"{span(figure['interval'], digits)}" for key, figure in summary[name].items()]
        lines.append(f"{name}: " + "; ".join(parts))
    return "\n".join(lines + summary["verdict"])


def think_command(args: argparse.Namespace) -> None:
    """One model's circuit with thinking on and off (analysis.think); every check passes before ``--out`` is written."""
    from matplotlib.image import imsave
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from sparks.analysis.think import compare_modes, plain, think_pixels, thinking_pairs

    spec = from_flags(args, THINK_FLAGS, metric="kl")
    if not 1 <= args.min_tokens <= args.tokens:
        raise ValueError(f"--min-tokens must lie between 1 and --tokens ({args.tokens}), got {args.min_tokens}")
    out = Path(args.out)
    check_out(out)
    model_dir = _model_dir(args.model, tokenizer=True)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.chat_template is None:
        raise ValueError(f"{args.model}: the tokenizer has no chat template; sparks think needs one with an enable_thinking switch (as Qwen3's)")
    if not has_thinking_switch(tokenizer):
        raise ValueError(f"{args.model}: the chat template renders the same prompt with enable_thinking on and off; "
                         "sparks think needs a template with the switch (as Qwen3's)")
    swaps = _swaps(args, tokenizer)
    check_family(AutoConfig.from_pretrained(model_dir).model_type, args.level)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, args.dtype)).to(args.device)
    pairs = thinking_pairs(model, tokenizer, swaps, tokens=args.tokens, min_tokens=args.min_tokens,
                           system_prompt=args.system_prompt, batch_size=args.batch_size)
    kept = len(pairs["on"])
    if kept < 2:
        raise ValueError(f"only {kept} of {len(swaps)} questions pair in both thinking modes (equal prompt lengths, "
                         f"continuations of at least --min-tokens {args.min_tokens}): at least 2 are needed")
    scored = {
        mode: score_circuit(model, pairs[mode], spec, pad_id=model.config.pad_token_id or 0,
                            name=f"{args.model} (thinking {mode})")
        for mode in THINKING_MODES
    }
    stats = {mode: result.stats for mode, result in scored.items()}
    comparison = compare_modes(stats, {mode: result.replicate_faithfulness for mode, result in scored.items()}, spec.confidence)
    modes = {
        mode: {
            "enable_thinking": switch,
            "continuation_tokens": len(pairs[mode][0].targets),
            "circuit_heads": [list(head) for head in stats[mode].circuit.heads],
            "importance": stats[mode].importance.tolist(),
            "membership": stats[mode].membership.tolist(),
            "stability": stats[mode].stability,
            "null_churn": stats[mode].null_churn,
        }
        for mode, switch in THINKING_MODES.items()
    }
    settings = {name: getattr(args, name) for name in ("model", "pairs", "method", "level", "ig_steps", "ig_rule", "mass", "top_n",
                                                     "tau", "aggregation", "replicates", "seed", "tokens", "min_tokens",
                                                     "system_prompt")}
    summary = {**settings, "metric": "kl", "num_questions": len(swaps), "num_pairs": kept, "modes": modes, **comparison}
    with staged(out) as staging:
        for mode in THINKING_MODES:
            save_pairs(pairs[mode], staging / f"pairs-{mode}.jsonl")
        (staging / "think.json").write_text(json.dumps(plain(summary), indent=1))
        imsave(staging / "think.png", think_pixels(stats, comparison, f"{Path(args.model).name}, {kept} pairs"))
    print(f"{kept} of {len(swaps)} questions pair in both thinking modes ({len(swaps) - kept} left out: unequal prompt "
          f"lengths or a continuation shorter than {args.min_tokens} tokens); continuations of {modes['on']['continuation_tokens']} (on) and "
          f"{modes['off']['continuation_tokens']} (off) tokens")
    print(_think_table(plain(summary)))
    print(f"wrote {out}")


def rescore_command(args: argparse.Namespace) -> None:
    from sparks.analysis.rescore import rescore

    changes = {setting: value for setting in RESCORE_SETTINGS if (value := getattr(args, setting)) is not None}
    out = rescore(args.run_dir, changes, pairs=args.pairs, name=args.name, base=args.base, force=args.force,
                  dtype=args.dtype, device=args.device)
    print(f"wrote {out}")


def compare_command(args: argparse.Namespace) -> None:
    """Runs side by side: one self-contained HTML report and a PNG per figure (analysis.compare_report); with
    ``--wandb`` also one W&B run of job type compare (analysis.compare_wandb), its target checked before the report is drawn."""
    from sparks.analysis.compare_report import write_report

    if not args.wandb and (args.project or args.group):
        raise ValueError(f"{'--project' if args.project else '--group'} names where --wandb logs the comparison: add --wandb")
    if args.wandb:
        from sparks.analysis.compare_wandb import log_comparison, wandb_identity

        identity = wandb_identity(args.run_dirs, args.project, args.group)
    report = write_report(args.run_dirs, args.out)
    for warning in report.warnings:
        print(f"sparks: warning: {warning}", file=sys.stderr)
    print(f"compared {', '.join(report.compared)}; wrote {report.path}")
    if args.wandb:
        print(log_comparison(report, identity))


def ablate_command(args: argparse.Namespace) -> None:
    """pass@1 with the head set changed against matched controls (analysis.ablate), checked before any generation."""
    from sparks.analysis.ablate import AblationOptions, format_summary, run_ablation

    _check_draw("--per-level", args.per_level, args.split, args.levels, per_level=True)
    _model_dir(args.model, tokenizer=True)
    given = {field.name: getattr(args, field.name) for field in fields(AblationOptions)}
    out, result = run_ablation(AblationOptions(**given | {"seeds": tuple(args.seeds), "levels": tuple(args.levels)}))
    print(format_summary(result, result["levels"]))
    print(f"wrote {out}")


def parser() -> argparse.ArgumentParser:
    root = _Parser(prog="sparks", description=__doc__.splitlines()[0])
    commands = root.add_subparsers(dest="command", required=True)

    pairs = commands.add_parser("pairs", help="build a clean/corrupted pair set (JSONL)")
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
    pairs.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="with the two models")
    pairs.add_argument("--system-prompt")
    pairs.set_defaults(run=pairs_command)

    score = commands.add_parser("score", help="score heads or edges on a pair set")
    score.add_argument("--model", required=True)
    score.add_argument("--pairs", required=True)
    score.add_argument("--out", required=True, help="directory for scores, circuit and heatmap")
    add_flags(score, SCORE_FLAGS)
    score.add_argument("--heads", help="exact node patching of these heads only: LAYER.HEAD,...")
    score.add_argument("--dtype", choices=["float32", "bfloat16", "float64"], default="float32")
    score.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    score.set_defaults(run=score_command)

    think = commands.add_parser("think", help="one model's circuit with thinking on and off, compared head by head")
    think.add_argument("--model", required=True, help="model directory; its chat template must know enable_thinking")
    think.add_argument("--out", required=True, help="a new (or empty) directory for think.json, think.png and the mode pair files")
    think.add_argument("--pairs", help="a number-swap pair file (sparks pairs --scheme numbers) whose questions are scored "
                                       "(default: drawn from the arithmetic world's probe split)")
    think.add_argument("--questions", help="a real data set's questions (JSONL rows with 'question', or one per line): one "
                                           "whole number in each is changed to another of its digit count")
    think.add_argument("--dataset", choices=sorted(HUB_SOURCES),
                       help="--count of the data set's held-out probe questions (never trained on), numbers changed as --questions")
    think.add_argument("--dataset-path", help="with --dataset: a local copy read in place of the hub name")
    think.add_argument("--levels", type=int, nargs="+", help="arithmetic questions: levels to draw (default: all)")
    think.add_argument("--count", type=positive_int, help="arithmetic or --dataset questions to draw (default: 64; those without a "
                                                 "usable number swap are left out)")
    think.add_argument("--tokens", type=positive_int, default=8,
                       help="new tokens of each greedy continuation (each mode's are cut to its shortest)")
    think.add_argument("--min-tokens", type=positive_int, default=3,
                       help="a question whose continuation in either mode is shorter is left out, so that one short "
                            "answer does not cut every pair to it (default: %(default)s)")
    add_flags(think, THINK_FLAGS, helps={
        "method": "the metric is KL, the only one that means anything when both rows continue with the same tokens "
                  "(logit_diff would compare a token with itself); eap scores zero under it",
        "replicates": "Poisson bootstrap replicates, paired across the modes",
        "seed": "seeds the question draw, the swaps and the bootstrap weights",
    })
    think.add_argument("--dtype", choices=["float32", "bfloat16", "float64"], default="float32")
    think.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    think.add_argument("--system-prompt")
    think.set_defaults(run=think_command)

    compare = commands.add_parser("compare", help="compare tracked runs side by side: HTML report and PNGs")
    compare.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="a tracked run's output directory (or its sparks/)")
    compare.add_argument("--out", required=True, help="a new (or empty) directory for report.html and the PNGs")
    compare.add_argument("--wandb", action="store_true",
                         help="also log the report to W&B: one run of job type compare in the runs' group (offline with WANDB_MODE=offline)")
    compare.add_argument("--project", help="with --wandb: the W&B project (default: sparks; WANDB_PROJECT wins)")
    compare.add_argument("--group", help="with --wandb: the W&B group (default: the one group the runs' tracker configs name; "
                                         "WANDB_RUN_GROUP wins)")
    compare.set_defaults(run=compare_command)

    rescore = commands.add_parser("rescore", help="score a run's saved checkpoints again, beside its live snapshots")
    rescore.add_argument("run_dir", help="a tracked run's output directory, with checkpoint-* directories")
    rescore.add_argument("--name", help="stored as RUN_DIR/rescores/NAME (default: METHOD-LEVEL-METRIC)")
    rescore.add_argument("--force", action="store_true", help="replace an existing rescore of that name")
    rescore.add_argument("--base", help="the base model, scored as step 0 (default: the one a LoRA run's adapters name, "
                                        "else the one run.json records)")
    rescore.add_argument("--pairs", help="another pair file (default: the pairs the run scored)")
    add_flags(rescore, RESCORE_SETTINGS, TrackerConfig, defaults=False,
              helps={name: "default: the run's tracker setting" for name in RESCORE_SETTINGS})
    rescore.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float64"], default="auto",
                         help="default: the dtype the checkpoints were saved in")
    rescore.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    rescore.set_defaults(run=rescore_command)

    ablate = commands.add_parser("ablate", help="pass@1 per level with a head set zeroed, mean-ablated or scaled, against matched controls")
    ablate.add_argument("--model", required=True, help="the model directory to change (e.g. the base model)")
    chosen = ablate.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--heads", help="the head set: a JSON list of [layer, head] (or sparks score's scores.json), or LAYER.HEAD items")
    chosen.add_argument("--from-run", help="a tracked run's output directory: its final circuit, or see --emergent, --step")
    which = ablate.add_mutually_exclusive_group()
    which.add_argument("--emergent", action="store_true", help="with --from-run: its emergent heads at the last snapshot")
    which.add_argument("--step", type=int, help="with --from-run: its circuit at this snapshot step")
    ablate.add_argument("--base-heads", help="with --heads: the base model's circuit heads, the second control")
    ablate.add_argument("--mode", choices=INTERVENTIONS, required=True)
    ablate.add_argument("--factor", type=finite_float, help="with --mode scale: the factor (the paper: 1.3 and 0.5)")
    ablate.add_argument("--controls", type=positive_int, default=5, help="random head sets matched in size and layers")
    ablate.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="sampling seeds")
    ablate.add_argument("--temperature", type=finite_float, default=0.7,
                        help="sampling temperature (default: the tiny GRPO recipe's); with one seed, omit for greedy")
    ablate.add_argument("--greedy", dest="temperature", action="store_const", const=None, help="greedy decoding (one seed)")
    ablate.add_argument("--style", choices=MODES, default="free", help="prompt style: free (the model's choice), think or direct")
    ablate.add_argument("--problems", help="a real data set's problems: JSONL with question, answer and an optional level, "
                                           "checked with math-verify as the accuracy reward does")
    ablate.add_argument("--split", choices=("test", "probe"), default="test", help="arithmetic world split")
    ablate.add_argument("--levels", type=int, nargs="+", default=sorted(arith.LEVELS))
    ablate.add_argument("--per-level", type=positive_int, default=30, help="arithmetic problems per level")
    ablate.add_argument("--seed", type=int, default=0, help="seed of the problem draw and of the random controls")
    ablate.add_argument("--system-prompt")
    ablate.add_argument("--max-new-tokens", type=positive_int, default=96)
    ablate.add_argument("--batch-size", type=positive_int, default=64)
    ablate.add_argument("--out", help="a new directory for the result (default with --from-run: RUN_DIR/ablations/NAME)")
    ablate.add_argument("--name", help="with --from-run and no --out: NAME (default: HEADS-MODEFACTOR, e.g. emergent-scale1.3)")
    ablate.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ablate.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ablate.set_defaults(run=ablate_command)
    for command in commands.choices.values():
        command.set_defaults(command_parser=command)
    return root


def main(argv: list[str] | None = None) -> int:
    args, unknown = parser().parse_known_args(argv)
    if unknown:  # argparse hands a command's unknown flags to the top-level parser, whose usage does not list them
        args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        args.run(args)
    except (ValueError, IndexError, OSError) as error:
        print(f"sparks: error: {first_line(error)}", file=sys.stderr)
        return 2
    return 0
