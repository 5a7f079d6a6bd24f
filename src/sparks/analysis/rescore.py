"""``sparks rescore RUN_DIR``: score the checkpoints a tracked run saved again, as a second scoring of the run.

Each ``checkpoint-N`` of the run, its final model when no checkpoint holds its last step, and the
base model as step 0 when known (``--base``, the base a LoRA run's adapters name, or the one run.json
records) are loaded and scored
the way the live tracker scores a snapshot (callbacks.snapshot.score_snapshot), by default with the
run's own tracker settings and probe pairs; the lineage, reward windows and summary are then built
by the tracker's recorder (callbacks.recorder) over the run's logged series. The result is a whole
run store (runs.store, the same format) at ``RUN_DIR/rescores/<name>/sparks/``, so
``RUN_DIR/rescores/<name>`` is read as a run by every reader of run stores; its run.json adds a
``rescore`` record naming the run, the scored models and the settings that differ from the live
scoring. It is written to a temporary directory renamed into place at the end: a failure leaves
nothing half-written. One rescore of a name runs at a time: a second is refused, naming the first
(runs.lock). With the run's settings it reproduces the live snapshots of the checkpointed
steps; with saved checkpoints every 100 steps it is the paper's offline protocol.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoConfig, PreTrainedTokenizerBase
from transformers.trainer_utils import sort_checkpoints

from sparks.callbacks.config import DRAW_SETTINGS, RESCORE_SETTINGS, TrackerConfig
from sparks.callbacks.recorder import SnapshotRecorder
from sparks.callbacks.snapshot import SnapshotFailed, score_snapshot
from sparks.callbacks.tracker import head_layout
from sparks.probes.pairs import Pair, load_pairs
from sparks.probes.scoring import graph_of
from sparks.runs.lineage import HeadLineage
from sparks.runs.lock import acquire, release
from sparks.runs.store import SETTINGS_SINCE, RunStore, first_line

RESCORES = "rescores"
"""The folder of a run directory that holds its rescores, one run directory per name."""
ADAPTER_CONFIG = "adapter_config.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


class RescoreError(ValueError):
    """A rescore that cannot be done as asked; the message is one line saying why."""


@dataclass(frozen=True)
class Source:
    """One model to score: its step and directory (a full model or a LoRA adapter)."""

    step: int
    path: Path


def checkpoint_sources(run_dir: Path) -> list[Source]:
    """The run's ``checkpoint-N`` directories by step, and the final model saved in ``run_dir`` at the step its
    trainer_state.json names when no checkpoint holds that step (the live tracker's final snapshot).

    RescoreError when there is none.
    """
    sources = []
    for checkpoint in sort_checkpoints(str(run_dir)):
        match = re.fullmatch(r"checkpoint-(\d+)", Path(checkpoint).name)
        if match and Path(checkpoint).is_dir():
            sources.append(Source(int(match.group(1)), Path(checkpoint)))
    saved = (run_dir / "config.json").is_file() or (run_dir / ADAPTER_CONFIG).is_file()
    if saved and (run_dir / "trainer_state.json").is_file():
        step = int(json.loads((run_dir / "trainer_state.json").read_text())["global_step"])
        if step not in {source.step for source in sources}:
            sources.append(Source(step, run_dir))
    if not sources:
        raise RescoreError(f"{run_dir}: no checkpoint-* directories and no final model to rescore (train with "
                           f"--save_strategy steps --save_steps N, N a multiple of tracker.every)")
    return sorted(sources, key=lambda source: source.step)


def adapter_base(path: Path) -> str | None:
    """The base model a LoRA adapter directory names, or None for a full model."""
    config = path / ADAPTER_CONFIG
    if not config.is_file():
        return None
    return json.loads(config.read_text()).get("base_model_name_or_path")


def base_model(sources: list[Source], base: str | None, recorded: str | None = None) -> Path | None:
    """The base model directory: ``base`` when given, else the one a LoRA run's adapters name, else the
    one the run recorded (run.json ``base_model``; None for a run from before it was recorded)."""
    named = base or next((name for source in sources if (name := adapter_base(source.path))), None) or recorded
    if named is None:
        return None
    if not Path(named).is_dir():
        raise RescoreError(f"--base: the base model {named} is not a directory here; pass its directory with --base")
    return Path(named)


def load_model(source: Source, base: Path | None, dtype: str, device: str) -> nn.Module:
    """The model of a source: a full model, or the base model with a LoRA checkpoint's adapter (as PEFT trained it).

    A checkpoint that cannot be loaded (a torn or missing weights file) raises RescoreError naming it.
    """
    from transformers import AutoModelForCausalLM

    torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
    if adapter_base(source.path) is not None and base is None:
        raise RescoreError(f"{source.path}: a LoRA adapter that names no base model; pass its directory with --base")
    try:
        if adapter_base(source.path) is None:
            return AutoModelForCausalLM.from_pretrained(source.path, dtype=torch_dtype).to(device)  # type: ignore[arg-type]  # transformers wraps PreTrainedModel.to in functools.wraps, whose type mypy does not bind to the instance
        from peft import PeftModel

        assert base is not None, "a LoRA adapter without a base is refused above"
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch_dtype).to(device)  # type: ignore[arg-type]  # transformers wraps PreTrainedModel.to in functools.wraps, whose type mypy does not bind to the instance
        return PeftModel.from_pretrained(model, source.path).to(device)
    except Exception as error:
        raise RescoreError(f"{source.path}: the model cannot be loaded ({first_line(error)})") from None


def rescore_config(stored: dict[str, Any], changes: dict[str, Any], pairs_file: Path | None) -> TrackerConfig:
    """The run's tracker settings with ``changes``, scoring ``pairs_file`` (None: arithmetic-world pairs drawn again)."""
    unknown = sorted(set(changes) - set(RESCORE_SETTINGS))
    if unknown:
        raise RescoreError(f"tracker.{unknown[0]}: a rescore changes only {', '.join(RESCORE_SETTINGS)}")
    values = SETTINGS_SINCE | stored | changes
    # strict: a snapshot that cannot be written fails the rescore instead of leaving a gap in its lineage.
    values.update(pairs=None if pairs_file is None else str(pairs_file), dashboards=["none"], strict=True)
    return TrackerConfig.from_recipe(values)


def default_name(config: TrackerConfig) -> str:
    """The name a rescore is stored under when none is given: its method, level and metric."""
    return f"{config.method}-{config.level}-{config.metric}"


def _tokenizer(directories: list[Path]) -> PreTrainedTokenizerBase:
    """The tokenizer saved with the run (or the first checkpoint that holds one), for the pairs and the pad id."""
    from transformers import AutoTokenizer

    for directory in directories:
        if any((directory / name).is_file() for name in TOKENIZER_FILES):
            return AutoTokenizer.from_pretrained(directory)
    raise RescoreError(f"{directories[0].parent}: no tokenizer saved with the run or its checkpoints")


def rescore(
    run_dir: str | Path,
    changes: dict[str, Any] | None = None,
    *,
    pairs: str | Path | None = None,
    name: str | None = None,
    base: str | None = None,
    force: bool = False,
    dtype: str = "auto",
    device: str = "cpu",
) -> Path:
    """Score the run's checkpoints (and base model) again and store the result; return its run directory.

    ``changes``: tracker settings to change (RESCORE_SETTINGS); ``pairs``: another pair file; changing
    ``num_problems`` draws the arithmetic world's probe pairs again. Every check runs before a model loads.
    """
    run_dir, changes = Path(run_dir), dict(changes or {})
    live = RunStore(run_dir)
    if not (live.root / "run.json").is_file():
        raise RescoreError(f"{run_dir}: not a tracked run (no sparks/run.json; train with a tracker: section)")
    run = live.run()
    sources = checkpoint_sources(run_dir)
    base_dir = base_model(sources, base, run.get("base_model"))
    if base_dir is not None:
        sources = [Source(0, base_dir)] + [source for source in sources if source.step != 0]
    stored = SETTINGS_SINCE | run["config"]
    redraw = pairs is None and any(setting in changes and changes[setting] != stored.get(setting) for setting in DRAW_SETTINGS)
    pairs_file: Path | None
    if pairs is not None:
        pairs_file = Path(pairs)
    else:
        pairs_file = None if redraw else live.root / "pairs.jsonl"
    if pairs_file is not None and not pairs_file.is_file():
        raise RescoreError(f"--pairs: pair file {pairs_file} does not exist (make one with `sparks pairs`)")
    config = rescore_config(stored, changes, pairs_file)
    name = name or default_name(config)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._=-]*", name):
        raise RescoreError(f"--name: {name!r} must be letters, digits and . _ = - (it names a directory)")
    final = run_dir / RESCORES / name
    lock = acquire(run_dir / RESCORES / f".{name}.lock", f"--name: the rescore {final}")  # one rescore of a name at a time
    try:
        if final.exists() and not force:
            raise RescoreError(f"{final} exists: pass --force to replace it, or another --name")
        tokenizer = _tokenizer([run_dir] + [source.path for source in sources])
        probe = config.probe_set.build(tokenizer, AutoConfig.from_pretrained(base_dir or sources[0].path).vocab_size)
        if redraw:
            drawn = rescore_config(stored, {}, None).probe_set.build(tokenizer)
            if drawn != load_pairs(live.root / "pairs.jsonl"):
                raise RescoreError("tracker.num_problems: the run's probe pairs are not the arithmetic world's probe problems "
                                   "(a pair file or a real data set's questions); make a pair file with `sparks pairs` and pass --pairs")
        changed = {setting: [stored.get(setting), value] for setting, value in config.as_dict().items()
                   if setting not in ("pairs", "dashboards", "strict") and stored.get(setting) != value}
        if pairs is not None or redraw:
            changed["pairs"] = [run.get("pairs"), len(probe)]
        staging = run_dir / RESCORES / f".{name}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            _score_all(run, live, sources, config, probe, tokenizer, staging, dtype, device,
                       {"run": str(run_dir.resolve()), "name": name, "changed": changed,
                        "models": {str(source.step): str(source.path.resolve()) for source in sources}})
            replaced = staging.with_name(f".{name}.replaced")
            shutil.rmtree(replaced, ignore_errors=True)
            if final.exists():
                final.rename(replaced)
            staging.rename(final)
            shutil.rmtree(replaced, ignore_errors=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        release(lock)
        if final.parent.is_dir() and not any(final.parent.iterdir()):
            final.parent.rmdir()  # a first rescore that failed leaves no trace
    return final


def _score_all(
    run: dict[str, Any], live: RunStore, sources: list[Source], config: TrackerConfig, pairs: list[Pair],
    tokenizer: PreTrainedTokenizerBase,
    staging: Path, dtype: str, device: str, record: dict[str, Any],
) -> None:
    """Score every source into a fresh run store under ``staging``, recording as the live tracker does."""
    store = RunStore(staging)
    metrics = live.read("metrics.jsonl")
    series = [(int(entry["step"]), {key: value for key, value in entry.items() if key != "step"}) for entry in metrics]
    recorder, base = None, sources[0].path if sources[0].step == 0 else None
    pad_id = 0 if tokenizer.pad_token_id is None else int(tokenizer.pad_token_id)
    for source in tqdm(sources, desc="rescoring", unit="model"):
        model = load_model(source, base, dtype, device)
        if recorder is None:
            store.start({"config": config.as_dict(), "job_type": run.get("job_type"), "pairs": len(pairs),
                         "model": head_layout(model), "rescore": record}, pairs)
            store.append("metrics.jsonl", metrics)
            recorder = SnapshotRecorder(config, store, HeadLineage(config.confidence), [], series)
        start = time.perf_counter()
        try:
            stats = score_snapshot(model, pairs, config, graph_of(model), pad_id, source.step)
        except (SnapshotFailed, ValueError) as error:
            raise RescoreError(f"{source.path}: scoring failed: {str(error).strip().splitlines()[-1]}") from None
        recorder.record(source.step, stats, time.perf_counter() - start, pictures=False)
        del model
    assert recorder is not None, "checkpoint_sources gives at least one source"
    recorder.finish()
