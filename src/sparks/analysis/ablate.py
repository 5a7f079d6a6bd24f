"""What a head set does: pass@1 per difficulty level with the set zeroed, mean-ablated or scaled,
against matched controls (``sparks ablate``; docs/method.md, "Ablation and scaling").

Conditions, all on the same problems with the same sampling seeds (the generator is reseeded before
each condition's generation, so the conditions' differences are paired problem by problem):

- ``model``: the model unchanged;
- ``heads``: the chosen head set changed;
- ``random-1`` … ``random-k``: head sets drawn at random, matched in size and layer distribution;
- ``base``: the base model's circuit heads, changed the same way (when known).

A problem's value in a condition is its share of correct answers over the seeds (and, for the pooled
``random`` group, over the draws too). Every pass@1 and every difference carries a 95% percentile
bootstrap interval over the problems. Wrong answers are sorted by ``tasks.errors.categorise``.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from sparks.analysis.compare import store_of
from sparks.analysis.outputs import check_out, staged
from sparks.dashboards.plots import margined_figure, save_png
from sparks.probes.hooks import scoring
from sparks.probes.pairs import read_text
from sparks.probes.patching import head_means, mean_ablate, scale_heads, zero_ablate
from sparks.probes.schemes import has_thinking_switch
from sparks.probes.sites import resolve
from sparks.probes.statistics import INTERVAL
from sparks.tasks import arith, formats
from sparks.tasks.arith import Problem
from sparks.tasks.data import gsm8k_final
from sparks.tasks.errors import CATEGORIES, categorise
from sparks.tasks.evaluation import FileProblem, Graded, grade, style_prompt

Head = tuple[int, int]
INTERVENTIONS = ("zero", "mean", "scale")
DRAWS = 2000
"""Bootstrap resamples of the problems behind every interval (seeded, so a result is reproducible)."""
MIN_ERRORS = 10
"""An error category's difference is called only when the set and the random controls made at least this many such errors."""
COMPARISONS = (("heads", "model"), ("heads", "random"), ("heads", "base"), ("random", "model"))
"""The differences reported, each paired problem by problem."""


@dataclass(frozen=True)
class HeadSet:
    """The heads to change, what they are in words, the base circuit's heads for the control (None when
    unknown), and each head's emergence confidence where a run's lineage gives one."""

    heads: list[Head]
    source: str
    base: list[Head] | None = None
    confidence: dict[str, float] | None = None


def parse_heads(text: str, source: str) -> list[Head]:
    """Heads from JSON (a list of [layer, head], or an object with ``heads`` or ``circuit_heads``, as
    ``sparks score`` writes) or plain ``LAYER.HEAD`` items separated by commas or white space."""
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, (list, dict)):  # "1.7" is JSON too: a number, read as the head it names
        items = [item for item in re.split(r"[,\s]+", text) if item]
        bad = next((item for item in items if not re.fullmatch(r"\d+\.\d+", item)), None)
        if bad is not None:
            raise ValueError(f"{source}: {bad!r} is not a LAYER.HEAD head")
        return [(int(layer), int(head)) for layer, head in (item.split(".") for item in items)]
    if isinstance(value, dict):
        value = value.get("heads", value.get("circuit_heads"))
    if not isinstance(value, list) or not all(
        isinstance(item, list) and len(item) == 2 and all(type(part) is int for part in item) for item in value
    ):
        raise ValueError(f"{source}: expected a JSON list of [layer, head] pairs (or an object with 'heads')")
    return [(layer, head) for layer, head in value]


def read_heads(path: str | Path) -> list[Head]:
    """The heads in the file at ``path`` (see ``parse_heads``)."""
    return parse_heads(read_text(path, "heads"), str(path))


def heads_from_run(run_dir: str | Path, emergent: bool = False, step: int | None = None) -> HeadSet:
    """A tracked run's heads: its emergent heads at the last snapshot (the paper's set difference
    against the base circuit), or its circuit at snapshot ``step`` (default: the last); the base
    control is the run's base circuit."""
    store = store_of(Path(run_dir))
    if not store.holds_lineage():
        raise ValueError(f"{run_dir}: the run has no snapshots yet (no lineage.json)")
    lineage = store.lineage()
    if step is not None and step not in lineage.steps:
        raise ValueError(f"{run_dir}: no snapshot at step {step}; its snapshots are at steps {lineage.steps}")
    index = lineage.steps.index(step) if step is not None else len(lineage) - 1
    at = lineage.steps[index]
    base = sorted(lineage.base)
    if not emergent:
        return HeadSet(sorted(lineage.snapshots[index].heads), f"the circuit of {run_dir} at step {at}", base)
    heads = sorted(lineage.emergent(index))
    if not heads:
        raise ValueError(f"{run_dir} has no emergent heads at step {at}: its circuit holds only base-model heads")
    shares = lineage.confidence(index, "emerge")
    confidence = None if shares is None else {f"{layer}.{head}": float(shares[layer, head]) for layer, head in heads}
    return HeadSet(heads, f"the emergent heads of {run_dir} at step {at}", base, confidence)


def check_heads(heads: Sequence[Head], num_layers: int, num_heads: int, what: str) -> None:
    """One line for an empty set, a head twice or a head the model does not have."""
    if not heads:
        raise ValueError(f"{what}: the head set is empty")
    for layer, head in heads:
        if not (0 <= layer < num_layers and 0 <= head < num_heads):
            raise ValueError(f"{what}: head {layer}.{head} is out of range: the model has {num_layers} layers of {num_heads} heads")
    if len(set(heads)) != len(heads):
        raise ValueError(f"{what}: a head is listed twice")


def matched_random_heads(heads: Sequence[Head], num_heads: int, rng: random.Random) -> list[Head]:
    """A random head set with as many heads in each layer as ``heads`` has, none of them in ``heads``."""
    per_layer = Counter(layer for layer, _ in heads)
    drawn = []
    for layer, count in sorted(per_layer.items()):
        others = [head for head in range(num_heads) if (layer, head) not in heads]
        if len(others) < count:
            raise ValueError(f"no random control matches the set: layer {layer} has {count} of its {num_heads} heads "
                             f"in it and only {len(others)} others")
        drawn += [(layer, head) for head in sorted(rng.sample(others, count))]
    return drawn


def prompt_means(model: nn.Module, tokenizer, prompts: Sequence[str], batch_size: int) -> torch.Tensor:
    """Every head's mean output [L, H, d_head] over the prompts' tokens, what mean ablation puts in its place."""
    total, count = None, 0
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer(list(prompts[start : start + batch_size]), return_tensors="pt", padding=True, padding_side="left",
                          add_special_tokens=False).to(next(model.parameters()).device)
        tokens = int(batch["attention_mask"].sum())
        part = head_means(model, batch["input_ids"], batch["attention_mask"]) * tokens
        total, count = part if total is None else total + part, count + tokens
    assert total is not None, "sparks ablate refuses an empty problem set"
    return total / count


def intervention(
    model: nn.Module, mode: str, heads: Sequence[Head], factor: float | None, means: torch.Tensor | None
) -> AbstractContextManager:
    """The heads changed while the block runs: zeroed, set to their mean output, or scaled by ``factor``."""
    if not heads:
        return nullcontext()
    if mode == "zero":
        return zero_ablate(model, heads)
    if mode == "mean":
        assert means is not None, "evaluate_conditions computes the means for mode mean"
        return mean_ablate(model, heads, means)
    assert factor is not None, "sparks ablate refuses mode scale without a factor"
    return scale_heads(model, heads, factor)


def evaluate_conditions(
    model: PreTrainedModel,
    tokenizer,
    problems: Sequence[Problem | FileProblem],
    conditions: dict[str, list[Head]],
    *,
    mode: str,
    factor: float | None,
    seeds: Sequence[int],
    temperature: float | None,
    style: str,
    system_prompt: str | None,
    max_new_tokens: int,
    batch_size: int,
    check: Callable[[str, Any], bool],
) -> list[dict[str, Any]]:
    """One record per condition, seed and problem: whether the answer was right and, if not, why.

    The model is left exactly as found after every condition (its hooks removed, train flags and
    torch's generator state put back).
    """
    means = None
    if mode == "mean":
        prompts = [style_prompt(tokenizer, problem.question, style, system_prompt) for problem in problems]
        means = prompt_means(model, tokenizer, prompts, batch_size)
    records = []
    total = len(conditions) * len(seeds) * len(problems)
    with tqdm(total=total, desc="ablating", unit="answer") as progress, scoring(model, grad=False):
        for condition, heads in conditions.items():
            for seed in seeds:
                torch.manual_seed(seed)
                progress.set_postfix_str(f"{condition}, seed {seed}")
                with intervention(model, mode, heads, factor, means):
                    graded = grade(model, tokenizer, problems, (style,), system_prompt, max_new_tokens, batch_size,
                                   temperature=temperature, check=check, progress=progress)
                records += [_record(condition, seed, index, item) for index, item in enumerate(graded)]
    return records


def _record(condition: str, seed: int, index: int, item: Graded) -> dict[str, Any]:
    category = None if item.correct else categorise(item.completion, item.truncated, item.problem.steps)
    return {"condition": condition, "seed": seed, "problem": index, "level": item.problem.level,
            "question": item.problem.question, "answer": item.problem.answer, "completion": item.completion,
            "correct": item.correct, "truncated": item.truncated, "error": category}


def is_random(condition: str) -> bool:
    """Whether the condition is one of the matched random draws."""
    return condition.startswith("random-")


def group_of(condition: str) -> str:
    """The group a condition is reported in: the random draws are pooled."""
    return "random" if is_random(condition) else condition


def problem_values(records: Sequence[dict[str, Any]], num_problems: int,
                   counted: Callable[[dict[str, Any]], bool] = lambda record: record["correct"]) -> dict[str, np.ndarray]:
    """Each group's [problems] share of its answers (over its seeds and draws) that are ``counted``: right, by default."""
    hits: dict[str, np.ndarray] = {}
    count: dict[str, np.ndarray] = {}
    for record in records:
        group = group_of(record["condition"])
        hits.setdefault(group, np.zeros(num_problems))[record["problem"]] += counted(record)
        count.setdefault(group, np.zeros(num_problems))[record["problem"]] += 1
    return {group: hits[group] / count[group] for group in hits}


def bootstrap(values: np.ndarray, seed: int = 0) -> dict[str, float]:
    """The mean of ``values`` (one per problem) with its 95% percentile bootstrap interval over the problems."""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (DRAWS, len(values)))].mean(1)
    low, high = np.quantile(means, INTERVAL)
    return {"value": float(values.mean()), "low": float(low), "high": float(high), "problems": int(len(values))}


def summarise(records: Sequence[dict[str, Any]], levels: Sequence[int]) -> dict[str, Any]:
    """pass@1 per group and level, the paired differences, the error counts per group and level, each error
    category's share of the answers (all levels) per group with the paired differences, and the verdicts."""
    num_problems = 1 + max(record["problem"] for record in records)
    level_of = np.zeros(num_problems, dtype=int)
    for record in records:
        level_of[record["problem"]] = record["level"]
    values = problem_values(records, num_problems)
    cells = {"all": np.ones(num_problems, dtype=bool)} | {str(level): level_of == level for level in levels}
    third = max(1, len(levels) // 3)
    cells |= {"easy": np.isin(level_of, levels[:third]), "hard": np.isin(level_of, levels[-third:])}
    pass_at_1 = {group: {cell: bootstrap(value[chosen]) for cell, chosen in cells.items()} for group, value in values.items()}
    differences = {
        f"{one} - {other}": {cell: bootstrap(values[one][chosen] - values[other][chosen]) for cell, chosen in cells.items()}
        for one, other in COMPARISONS if one in values and other in values
    }
    errors: dict[str, dict[str, dict[str, int]]] = {}
    answers: dict[str, Counter] = {}
    for record in records:
        group = group_of(record["condition"])
        for cell in ("all", str(record["level"])):
            answers.setdefault(group, Counter())[cell] += 1
            by_category = errors.setdefault(group, {}).setdefault(cell, dict.fromkeys(CATEGORIES, 0))
            if record["error"] is not None:
                by_category[record["error"]] += 1
    error_rates = {}
    for category in CATEGORIES:
        def is_category(record: dict[str, Any], category: str = category) -> bool:  # a def: mypy cannot infer a lambda with a default argument
            return record["error"] == category
        shares = problem_values(records, num_problems, is_category)
        if any(share.any() for share in shares.values()):
            error_rates[category] = {group: bootstrap(share) | {"count": errors[group]["all"][category]}
                                     for group, share in shares.items()}
            error_rates[category] |= {f"{one} - {other}": bootstrap(shares[one] - shares[other])
                                      for one, other in COMPARISONS if one in shares and other in shares}
    draws = sorted({record["condition"] for record in records if is_random(record["condition"])})
    per_draw = {draw: float(np.mean([r["correct"] for r in records if r["condition"] == draw])) for draw in draws}
    return {"pass_at_1": pass_at_1, "differences": differences, "errors": errors, "error_rates": error_rates,
            "answers": {group: dict(counts) for group, counts in answers.items()}, "random_draws": per_draw,
            "easy_levels": list(levels[:third]), "hard_levels": list(levels[-third:]),
            "verdicts": verdicts(differences, error_rates)}


def _sign(estimate: dict[str, float]) -> int:
    """+1 when the whole interval lies above 0, -1 below, 0 when it holds 0."""
    return 1 if estimate["low"] > 0 else -1 if estimate["high"] < 0 else 0


def verdicts(differences: dict[str, dict[str, dict[str, float]]],
             error_rates: dict[str, dict[str, dict[str, float]]] | None = None) -> list[str]:
    """What the intervals support, one line each; nothing is called on an interval that holds 0."""
    lines = []
    for name, cells in differences.items():
        overall = cells["all"]
        said = {1: "raises", -1: "lowers", 0: "does not change (interval holds 0)"}[_sign(overall)]
        lines.append(f"{name}: {said} pass@1: {overall['value']:+.3f} [{overall['low']:+.3f}, {overall['high']:+.3f}]")
    against = differences.get("heads - random")
    if against is not None:
        easy, hard = _sign(against["easy"]), _sign(against["hard"])
        if easy < 0 < hard:
            call = "yes: the set helps hard problems and hurts easy ones beyond the random controls"
        elif easy == hard == 0:
            call = "undecided: neither easy nor hard problems move beyond the random controls"
        else:
            call = "no"
        lines.append(f"easy-versus-hard trade-off: {call} (easy {against['easy']['value']:+.3f} "
                     f"[{against['easy']['low']:+.3f}, {against['easy']['high']:+.3f}], hard {against['hard']['value']:+.3f} "
                     f"[{against['hard']['low']:+.3f}, {against['hard']['high']:+.3f}])")
    for category, estimates in (error_rates or {}).items():
        difference = estimates.get("heads - random")
        seen = estimates.get("heads", {}).get("count", 0) + estimates.get("random", {}).get("count", 0)
        if difference is not None and _sign(difference) and seen >= MIN_ERRORS:
            lines.append(f"{category} errors: the set makes {'more' if _sign(difference) > 0 else 'fewer'} than the random "
                         f"controls: {difference['value']:+.3f} of answers [{difference['low']:+.3f}, {difference['high']:+.3f}]")
    return lines


COLOURS = {"model": "#555555", "heads": "#dd8452", "random": "#4c72b0", "base": "#55a868"}


def ablation_figure(summary: dict[str, Any], levels: Sequence[int], title: str) -> Figure:
    """pass@1 per level with 95% intervals for each group (left), and the share of answers wrong in each error category (right)."""
    figure = margined_figure(12.0, 4.0, left=0.7, right=1.2, bottom=0.6, top=0.5)
    rate, kinds = figure.subplots(1, 2, gridspec_kw={"wspace": 0.3})
    for offset, (group, cells) in enumerate(summary["pass_at_1"].items()):
        x = np.arange(len(levels)) + (offset - 1.5) * 0.08
        value = np.array([cells[str(level)]["value"] for level in levels])
        low = np.array([cells[str(level)]["low"] for level in levels])
        high = np.array([cells[str(level)]["high"] for level in levels])
        rate.errorbar(x, value, yerr=[value - low, high - value], marker="o", markersize=4, capsize=2,
                      color=COLOURS[group], label=group)
    rate.set_xticks(range(len(levels)), [f"L{level}" for level in levels])
    rate.set_xlabel("difficulty level")
    rate.set_ylabel("pass@1 (95% interval)")
    rate.set_ylim(-0.02, 1.02)
    rate.legend(fontsize=8)
    groups = list(summary["errors"])
    bottom = np.zeros(len(groups))
    for category in CATEGORIES:
        shares = np.array([summary["errors"][group]["all"][category] / summary["answers"][group]["all"] for group in groups])
        if shares.any():
            kinds.bar(groups, shares, bottom=bottom, label=category)
            bottom += shares
    kinds.set_ylabel("share of answers wrong, by error")
    kinds.legend(fontsize=8, title="error", title_fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    figure.suptitle(title, fontsize=10)
    return figure


def file_problems(path: str | Path) -> list[FileProblem]:
    """A real data set's problems from a local JSONL file: ``question``, ``answer`` (a GSM8K answer's
    text after ``####`` is taken) and an optional integer ``level``."""
    problems = []
    for number, line in enumerate((line for line in read_text(path, "problem").splitlines() if line.strip()), start=1):
        try:
            row = json.loads(line)
        except ValueError:
            raise ValueError(f"{path}: row {number} is not JSON") from None
        if not isinstance(row, dict) or not isinstance(row.get("question"), str) or row.get("answer") is None:
            raise ValueError(f"{path}: row {number} needs a 'question' and an 'answer'")
        level = row.get("level", 1)
        if type(level) is not int:
            raise ValueError(f"{path}: row {number}: 'level' must be an integer, got {level!r}")
        problems.append(FileProblem(row["question"], gsm8k_final(str(row["answer"])), level))
    if not problems:
        raise ValueError(f"{path}: no problems")
    return problems


def write_ablation(out: Path, settings: dict[str, Any], records: list[dict[str, Any]], levels: Sequence[int]) -> dict[str, Any]:
    """ablation.json (settings, summary), completions.jsonl and ablation.png, written whole into ``out``."""
    summary = summarise(records, levels)
    result = {**settings, **summary}
    change = settings["mode"] if settings["factor"] is None else f"scaled x{settings['factor']}"
    heads = ", ".join(f"{layer}.{head}" for layer, head in settings["heads"])
    title = f"{Path(settings['model']).name}: heads {heads} {change}; random: {sum(map(is_random, settings['conditions']))} matched sets"
    with staged(out) as staging:
        (staging / "ablation.json").write_text(json.dumps(result, indent=1))
        (staging / "completions.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
        save_png(ablation_figure(summary, levels, title), staging / "ablation.png")
    return result


def format_summary(result: dict[str, Any], levels: Sequence[int]) -> str:
    """The printed table: pass@1 per group and level with intervals, then the verdicts."""
    cells = [str(level) for level in levels] + ["all"]
    lines = ["group    " + "".join(f"{'L' + cell if cell != 'all' else 'all':<19}" for cell in cells)]
    for group, by_cell in result["pass_at_1"].items():
        lines.append(f"{group:<9}" + "".join(
            f"{by_cell[cell]['value']:.2f} [{by_cell[cell]['low']:.2f},{by_cell[cell]['high']:.2f}]  " for cell in cells))
    return "\n".join(lines + result["verdicts"])


@dataclass(frozen=True)
class AblationOptions:
    """What ``run_ablation`` changes and measures, one field per ``sparks ablate`` flag (docs there), with its defaults.

    The head set is ``heads`` (a file or text that ``parse_heads`` reads) or a tracked run's (``from_run``, with
    ``emergent`` or ``step``); ``factor`` goes with ``mode`` scale; ``temperature`` None decodes greedily;
    ``problems`` (a JSONL file) replaces the arithmetic draw of ``per_level`` problems of each of ``levels``;
    ``out`` None means ``RUN_DIR/ablations/NAME`` with ``from_run``.
    """

    model: str
    mode: str
    heads: str | None = None
    from_run: str | None = None
    emergent: bool = False
    step: int | None = None
    base_heads: str | None = None
    factor: float | None = None
    controls: int = 5
    seeds: tuple[int, ...] = (0, 1, 2)
    temperature: float | None = 0.7
    style: str = "free"
    problems: str | None = None
    split: str = "test"
    levels: tuple[int, ...] = tuple(sorted(arith.LEVELS))
    per_level: int = 30
    seed: int = 0
    system_prompt: str | None = None
    max_new_tokens: int = 96
    batch_size: int = 64
    out: str | None = None
    name: str | None = None
    dtype: str = "float32"
    device: str = "cpu"


def run_ablation(options: AblationOptions) -> tuple[Path, dict[str, Any]]:
    """``sparks ablate``: every input checked before the model generates, the result written whole."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if (options.heads is None) == (options.from_run is None):
        raise ValueError("one head set is changed: give --heads or --from-run")
    if options.mode == "scale" and options.factor is None:
        raise ValueError("--mode scale needs --factor (the paper scales by 1.3 and 0.5)")
    if options.mode != "scale" and options.factor is not None:
        raise ValueError(f"--factor is for --mode scale; --mode {options.mode} does not take one")
    if options.emergent and options.from_run is None or options.step is not None and options.from_run is None:
        raise ValueError("--emergent and --step choose heads of a tracked run: add --from-run RUN_DIR")
    if options.base_heads and options.from_run:
        raise ValueError("--base-heads is for --heads: with --from-run the base control is the run's base circuit")
    if not options.seeds or len(set(options.seeds)) != len(options.seeds):
        raise ValueError("--seeds must name distinct seeds")
    if options.temperature is not None and options.temperature <= 0:
        raise ValueError(f"--temperature must be positive (leave it out for greedy decoding), got {options.temperature}")
    if options.temperature is None and len(options.seeds) > 1:
        raise ValueError("greedy decoding gives the same answers for every seed: give one --seeds value or a --temperature")
    if options.from_run:
        chosen = heads_from_run(options.from_run, options.emergent, options.step)
        what = "emergent" if options.emergent else f"step{options.step}" if options.step is not None else "circuit"
        name = options.name or f"{what}-{options.mode}{'' if options.factor is None else options.factor}"
        out = Path(options.out) if options.out else store_of(Path(options.from_run)).root.parent / "ablations" / name
        if not options.out:
            out.parent.mkdir(exist_ok=True)
    else:
        assert options.heads is not None, "checked above: without --from-run, --heads names the set"
        base = read_heads(options.base_heads) if options.base_heads else None
        chosen = HeadSet(read_heads(options.heads), f"the heads in {options.heads}", base)
        if not options.out:
            raise ValueError("--out names where the result goes (with --from-run it defaults to RUN_DIR/ablations/NAME)")
        out = Path(options.out)
    check_out(out)
    problems = file_problems(options.problems) if options.problems else arith.problems(
        options.split, options.levels, options.per_level * len(options.levels), options.seed)
    levels = sorted({problem.level for problem in problems})
    config = AutoConfig.from_pretrained(options.model)
    num_layers, num_heads = config.num_hidden_layers, config.num_attention_heads
    check_heads(chosen.heads, num_layers, num_heads, "--from-run" if options.from_run else "--heads")
    if chosen.base is not None:
        check_heads(chosen.base, num_layers, num_heads, "the base circuit" if options.from_run else "--base-heads")
    rng = random.Random(options.seed)
    conditions = {"model": [], "heads": chosen.heads}
    conditions |= {f"random-{draw + 1}": matched_random_heads(chosen.heads, num_heads, rng) for draw in range(options.controls)}
    if chosen.base is not None:
        conditions["base"] = chosen.base
    tokenizer = AutoTokenizer.from_pretrained(options.model)
    if options.style == "direct" and not (tokenizer.chat_template and has_thinking_switch(tokenizer)):
        raise ValueError(f"--style direct switches thinking off with the chat template's enable_thinking, which the template "
                         f"of {options.model} does not know: use --style free or think")
    model = AutoModelForCausalLM.from_pretrained(options.model, dtype=getattr(torch, options.dtype)).to(options.device)  # type: ignore[arg-type]  # transformers wraps PreTrainedModel.to in functools.wraps, whose type mypy does not bind to the instance
    resolve(model)  # a model without the expected modules fails here, before any generation
    check = formats.math_equal if options.problems else formats.is_correct
    started = time.perf_counter()
    records = evaluate_conditions(
        model, tokenizer, problems, conditions, mode=options.mode, factor=options.factor, seeds=options.seeds,
        temperature=options.temperature, style=options.style, system_prompt=options.system_prompt,
        max_new_tokens=options.max_new_tokens, batch_size=options.batch_size, check=check)
    settings = {
        "model": options.model, "head_set": chosen.source, "heads": [list(head) for head in chosen.heads],
        "emergence_confidence": chosen.confidence, "mode": options.mode, "factor": options.factor,
        "conditions": {name: [list(head) for head in heads] for name, heads in conditions.items()},
        "problems": options.problems or f"arithmetic world, {options.split} split, {options.per_level} per level, seed {options.seed}",
        "levels": levels, "seeds": list(options.seeds), "temperature": options.temperature, "style": options.style,
        "system_prompt": options.system_prompt, "max_new_tokens": options.max_new_tokens,
        "seconds": round(time.perf_counter() - started, 1),
    }
    return out, write_ablation(out, settings, records, levels)
