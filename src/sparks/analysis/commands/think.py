"""``sparks think``: one model's circuit with thinking on and off, compared head by head (analysis.think)."""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch

from sparks.analysis.commands.common import add_device_flag, check_draw, model_directory, positive_int
from sparks.analysis.outputs import check_out, staged
from sparks.probes.architectures import check_family
from sparks.probes.circuit_scoring import score_circuit
from sparks.probes.pairs import load_pairs, save_pairs
from sparks.probes.schemes import THINKING_MODES, has_thinking_switch, numbers_pairs, read_questions, text_number_swap
from sparks.probes.spec import add_flags, from_flags
from sparks.tasks import arith
from sparks.tasks.data import HUB_SOURCES, probe_questions

THINK_FLAGS = ("method", "level", "ig_steps", "ig_rule", "mass", "top_n", "tau", "aggregation", "replicates", "confidence",
               "batch_size", "seed")
"""The scoring spec's settings ``sparks think`` takes as flags (its metric is KL)."""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``sparks think``'s parser, added to ``subparsers``."""
    think = subparsers.add_parser("think", help="one model's circuit with thinking on and off, compared head by head")
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
    add_device_flag(think)
    think.add_argument("--system-prompt")
    think.set_defaults(run=run)
    return think


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
    check_draw("--count", count, "probe", levels)
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


def run(args: argparse.Namespace) -> None:
    """One model's circuit with thinking on and off (analysis.think); every check passes before ``--out`` is written."""
    from matplotlib.image import imsave
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from sparks.analysis.think import compare_modes, plain, think_pixels, thinking_pairs

    spec = from_flags(args, THINK_FLAGS, metric="kl")
    if not 1 <= args.min_tokens <= args.tokens:
        raise ValueError(f"--min-tokens must lie between 1 and --tokens ({args.tokens}), got {args.min_tokens}")
    out = Path(args.out)
    check_out(out)
    model_dir = model_directory(args.model, tokenizer=True)
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
