"""HeadTrackerCallback: scores every attention head of the live model while it trains.

A plain transformers ``TrainerCallback``, so it works in TRL's GRPO and SFT trainers and in any
Trainer. Snapshots: the base model when training starts, every ``config.every`` optimizer steps,
and the end. Each snapshot scores the probe pairs with probes (node EAP-IG by default), split over
the processes and summed, picks the circuit, updates the head lineage, and — on the main process
only — writes the run store and feeds the dashboards, next to the windowed reward.

A snapshot is scored when its step ends and published once that step's logs are in, so the reward
window it closes includes its own step. Scoring leaves the model exactly as found (probes.hooks),
so the training is the same with and without the tracker. A failed snapshot is logged with its
traceback, recorded, and training goes on, unless ``config.strict``.
"""

from __future__ import annotations

import logging
import math
import os
import time
import traceback
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from callbacks.alignment import reward_alignment
from callbacks.config import TrackerConfig
from callbacks.distributed import shard, sum_over_ranks, world
from callbacks.lineage import HeadLineage, Hysteresis
from callbacks.report import Dashboard, SnapshotReport
from callbacks.store import RunStore
from probes.edges import EdgeGraph
from probes.pairs import Pair, load_pairs
from probes.schemes import arith_style_pairs, numbers_pairs
from probes.scoring import circuit_from, graph_of, head_importance, score_pairs
from probes.sites import resolve
from tasks import arith

logger = logging.getLogger(__name__)

REWARD_KEYS = ("reward", "mean_token_accuracy")
"""The series a snapshot's reward window and the alignment use: GRPO's reward, else SFT's token accuracy."""


def kept_series(logs: dict[str, Any]) -> dict[str, float]:
    """The logged values the tracker keeps: rewards, completion length, SFT loss and token accuracy."""
    names = ("reward", "loss", "mean_token_accuracy", "completions/mean_length")
    return {
        name: float(value)
        for name, value in logs.items()
        if isinstance(value, (int, float)) and (name in names or (name.startswith("rewards/") and name.endswith("/mean")))
    }


def _finite(value: float) -> float | None:
    """None for NaN (no usable lag), so summaries stay strict JSON."""
    return None if math.isnan(value) else value


def dashboard_names(config: TrackerConfig) -> list[str]:
    """The configured dashboards with "auto" resolved (W&B with a key, else trackio) and "none" dropped."""
    names: list[str] = []
    for name in config.dashboards:
        if name == "auto":
            from callbacks.dashboards import default_dashboards

            name_list = default_dashboards()
        else:
            name_list = [] if name == "none" else [name]
        names += [item for item in name_list if item not in names]
    return names


def probe_pairs(config: TrackerConfig, tokenizer: Any) -> list[Pair]:
    """The pair file, or pairs of the arithmetic world's probe split in the configured scheme."""
    if config.pairs is not None:
        return load_pairs(config.pairs)
    problems = arith.problems("probe", list(config.levels), config.num_problems, config.seed)
    if config.scheme == "style":
        pairs = arith_style_pairs(tokenizer, problems)
    else:
        pairs = numbers_pairs(tokenizer, problems, seed=config.seed)
    if not pairs:
        raise ValueError(f"tracker: no {config.scheme} pair could be built from {config.num_problems} probe problems")
    return pairs


class HeadTrackerCallback(TrainerCallback):
    """Tracks which heads form the circuit as training goes, and how that follows the reward.

    Args:
        config: what to score, how often, and where to log.
        pairs: probe pairs; by default the config's pair file or arithmetic-world pairs built with
            the trainer's tokenizer.
        job_type: the kind of training ("grpo", "sft"), for the run store and the dashboards. It and
            ``config.group`` become W&B's job type and group (WANDB_JOB_TYPE, WANDB_RUN_GROUP) unless
            those are set, so a W&B run started by the trainer gets them too.
        dashboards: dashboards to feed; by default those the config names, made on the main process.
    """

    def __init__(
        self,
        config: TrackerConfig | None = None,
        pairs: Sequence[Pair] | None = None,
        *,
        job_type: str | None = None,
        dashboards: Sequence[Dashboard] | None = None,
    ) -> None:
        self.config = config or TrackerConfig()
        self.pairs = list(pairs) if pairs is not None else None
        self.job_type = job_type
        self.dashboards = list(dashboards) if dashboards is not None else None
        hysteresis = Hysteresis(**self.config.hysteresis) if self.config.hysteresis else None
        self.lineage = HeadLineage(hysteresis)
        self.store: RunStore | None = None
        self.graph: EdgeGraph | None = None
        self.pad_id = 0
        self.main_process = True
        self.series: list[tuple[int, dict[str, float]]] = []
        self.last_scored: int | None = None
        self._pending: tuple[int, dict[str, Tensor], float] | None = None
        if job_type:
            os.environ.setdefault("WANDB_JOB_TYPE", job_type)
        if self.config.group:
            os.environ.setdefault("WANDB_RUN_GROUP", self.config.group)

    # -- the trainer's events -------------------------------------------------------------------

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs) -> None:
        model, tokenizer = kwargs["model"], kwargs.get("processing_class")
        self.main_process = state.is_world_process_zero
        self.graph = graph_of(model)
        if self.pairs is None:
            self.pairs = probe_pairs(self.config, tokenizer)
        pad_id = getattr(tokenizer, "pad_token_id", None)
        self.pad_id = 0 if pad_id is None else int(pad_id)
        self.series = [(int(entry["step"]), values) for entry in state.log_history
                       if "step" in entry and (values := kept_series(entry))]
        # Resuming: the last step the schedule scored, the same on every rank whatever the store holds.
        self.last_scored = state.global_step - state.global_step % self.config.every if state.global_step else None
        if self.main_process:
            self._open_store(args, state, model)
        if state.global_step == 0:
            self._score(model, 0)
            self._publish()

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs) -> None:
        self._publish()

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs) -> None:
        if state.global_step % self.config.every == 0:
            self._score(kwargs["model"], state.global_step)

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs=None, **kwargs) -> None:
        values = kept_series(logs or {})
        if values:
            self.series.append((state.global_step, values))
            if self.main_process and self.store is not None:
                self.store.append("metrics.jsonl", [{"step": state.global_step, **values}])
        if self._pending is not None and self._pending[0] == state.global_step:
            self._publish()

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs) -> None:
        if self.last_scored is None or self.last_scored < state.global_step:
            self._score(kwargs["model"], state.global_step)
        self._publish()
        if self.main_process:
            self._finish()

    # -- scoring (every rank) -------------------------------------------------------------------

    def _score(self, model: nn.Module, step: int) -> None:
        """Score this rank's share of the pairs and sum over ranks; a failure on any rank fails the snapshot."""
        self.last_scored = step
        start = time.perf_counter()
        rank, size = world()
        indices, weights = shard(len(self.pairs), rank, size)
        device = next(model.parameters()).device
        shapes = self._shapes()
        error = None
        try:
            local = self._local_sums(model, [self.pairs[index] for index in indices], weights)
        except Exception:  # noqa: BLE001 - any scoring error is isolated and recorded
            error = traceback.format_exc()
            logger.error("sparks: scoring the heads at step %d failed on rank %d:\n%s", step, rank, error)
            local = {name: torch.zeros(shape, dtype=torch.float64) for name, shape in shapes.items()}
        flat = torch.cat([torch.tensor([float(error is not None)], dtype=torch.float64)]
                         + [local[name].reshape(-1) for name in shapes]).to(device)
        total = sum_over_ranks(flat).cpu()
        seconds = time.perf_counter() - start
        if total[0] > 0:
            self._fail(step, error or "scoring failed on another rank")
            return
        sums, offset = {}, 1
        for name, shape in shapes.items():
            sums[name] = total[offset : offset + math.prod(shape)].view(shape)
            offset += math.prod(shape)
        self._pending = (step, sums, seconds)

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        """The summed quantities and their shapes: pair count, signed and absolute head scores, edges."""
        graph = self.graph
        shapes = {"count": (1,), "sum": (graph.num_layers, graph.num_heads), "sum_abs": (graph.num_layers, graph.num_heads)}
        if self.config.level == "edge":
            shapes["edges_sum_abs"] = tuple(graph.valid.shape)
        return shapes

    def _local_sums(self, model: nn.Module, pairs: list[Pair], weights: Tensor) -> dict[str, Tensor]:
        config = self.config
        scores = score_pairs(
            model, pairs, method=config.method, level=config.level, metric=config.metric, steps=config.ig_steps,
            batch_size=config.batch_size, chunk_size=config.chunk_size, pad_id=self.pad_id, progress=False,
        )
        heads = (self.graph.per_head(scores["nodes"]) if config.level == "edge" else scores["heads"]).double()
        sums = {
            "count": weights.sum().reshape(1),
            "sum": torch.einsum("n,nlh->lh", weights, heads),
            "sum_abs": torch.einsum("n,nlh->lh", weights, heads.abs()),
        }
        if config.level == "edge":
            sums["edges_sum_abs"] = torch.einsum("n,nud->ud", weights, scores["edges"].double().abs())
        return sums

    # -- publishing (main process) ----------------------------------------------------------------

    def _publish(self) -> None:
        if self._pending is None:
            return
        step, sums, seconds = self._pending
        self._pending = None
        if not self.main_process:
            return
        try:
            self._record(step, sums, seconds)
        except Exception:  # noqa: BLE001 - a broken snapshot must not stop training unless strict
            self._fail(step, traceback.format_exc())

    def _record(self, step: int, sums: dict[str, Tensor], seconds: float) -> None:
        config, graph = self.config, self.graph
        count = float(sums["count"])
        means = {name: value / count for name, value in sums.items() if name != "count"}
        if config.level == "edge":
            aggregated = {"edges": means["edges_sum_abs"][None]}
        else:
            aggregated = {"heads": means["sum_abs"][None]}
        importance = head_importance(aggregated, graph)
        circuit = circuit_from(aggregated, graph, config.top_n, config.tau, config.mass)
        windows = self._windows(step)
        reward = next((windows[key] for key in REWARD_KEYS if key in windows), None)
        events = self.lineage.update(step, importance.numpy(), circuit.heads, reward)
        index = len(self.lineage) - 1
        tracked = sorted(self.lineage.snapshots[-1].heads)
        metrics = {
            "heads/circuit_size": len(circuit.heads),
            "heads/tracked": len(tracked),
            "heads/births": len(self.lineage.births(index)),
            "heads/prunings": len(self.lineage.prunings(index)),
            "heads/emergent": len(self.lineage.emergent(index)),
            "heads/kept_from_base": len(self.lineage.kept_from_base(index)),
            "heads/churn": int(self.lineage.churn()[index]),
            "heads/snapshot_seconds": seconds,
            "heads/failed": 0,
        }
        if reward is not None:
            metrics["heads/reward_window"] = reward
        tensors = {"mean": means["sum"], "mean_abs": means["sum_abs"], "importance": importance}
        if config.level == "edge":
            tensors["edges_mean_abs"] = means["edges_sum_abs"]
        self.store.save_snapshot(
            step,
            {"seconds": seconds, "pairs": int(count), "circuit": [list(h) for h in circuit.heads],
             "tracked": [list(h) for h in tracked], "windows": windows},
            tensors,
            circuit,
        )
        self.store.append("events.jsonl", events)
        self.store.save_lineage(self.lineage)
        summary = self._summary()
        self.store.save_summary(summary)
        report = SnapshotReport(
            step=step, importance=importance.numpy(), circuit=list(circuit.heads), tracked=tracked, events=events,
            metrics=metrics, lineage=self.lineage, reward=reward,
        )
        for dashboard in self.dashboards:
            self._safely(step, lambda: dashboard.snapshot(report))
        born, pruned = metrics["heads/births"], metrics["heads/prunings"]
        print(f"sparks: step {step}: {len(circuit.heads)} heads in the circuit (+{born} -{pruned}, "
              f"{metrics['heads/emergent']} emergent), scored in {seconds:.2f} s", flush=True)

    def _windows(self, step: int) -> dict[str, float]:
        """Per kept series, its mean over the logs since the previous published snapshot, up to ``step``."""
        previous = self.lineage.steps[-1] if len(self.lineage) else -1
        values: dict[str, list[float]] = {}
        for logged_step, logged in self.series:
            if previous < logged_step <= step:
                for name, value in logged.items():
                    values.setdefault(name, []).append(value)
        return {name: float(np.mean(items)) for name, items in values.items()}

    def _summary(self) -> dict[str, Any]:
        """Run-level figures: counts so far and the correlation of head churn with reward changes."""
        lineage = self.lineage
        if not len(lineage):
            return {"heads/snapshots": 0}
        summary: dict[str, Any] = {
            "heads/snapshots": len(lineage),
            "heads/base_circuit_size": len(lineage.base),
            "heads/ever_emerged": len(frozenset().union(*(s.heads for s in lineage.snapshots)) - lineage.base),
        }
        reward_key = next((key for key in REWARD_KEYS if any(key in logged for _, logged in self.series)), None)
        if reward_key is None or len(lineage) < 2:
            return summary
        rewards = [(step, logged[reward_key]) for step, logged in self.series if reward_key in logged]
        series = {
            "churn": lineage.churn().tolist(),
            "emergent": [len(lineage.emergent(index)) for index in range(len(lineage))],
        }
        alignment = reward_alignment(rewards, lineage.steps, series, self.config.max_lag)
        summary["alignment/reward_key"] = reward_key
        for name, by_method in alignment.items():
            for method, result in by_method.items():
                prefix = f"alignment/{name}/{method}"
                summary.update({f"{prefix}/r": _finite(result.r), f"{prefix}/p": _finite(result.p),
                                f"{prefix}/lag": result.lag, f"{prefix}/n": result.n})
        return summary

    def _fail(self, step: int, error: str) -> None:
        """Record a failed snapshot (main process), then stop training if strict."""
        if self.main_process and self.store is not None:
            reason = error.strip().splitlines()[-1]
            self.store.append("failures.jsonl", [{"step": step, "error": reason, "traceback": error}])
            for dashboard in self.dashboards:
                self._safely(step, lambda: dashboard.failure(step, reason), record=False)
        if self.config.strict:
            raise RuntimeError(f"sparks: the head snapshot at step {step} failed (tracker.strict is on):\n{error}")

    def _safely(self, step: int, call, record: bool = True) -> None:
        """Run one dashboard call; a dashboard that fails is logged and recorded, the run store already holds the data."""
        try:
            call()
        except Exception:  # noqa: BLE001
            error = traceback.format_exc()
            logger.error("sparks: a dashboard failed at step %d:\n%s", step, error)
            if record:
                self._fail(step, error)

    # -- the run store and dashboards (main process) ---------------------------------------------

    def _open_store(self, args: TrainingArguments, state: TrainerState, model: nn.Module) -> None:
        self.store = RunStore(args.output_dir)
        restored = self.store.resume(state.global_step) if state.global_step > 0 else None
        if restored is not None:
            self.lineage = restored
        else:
            if state.global_step > 0:
                logger.warning("sparks: resuming at step %d without a run store; the lineage starts here", state.global_step)
            sites = resolve(model)
            self.store.start(
                {"config": self.config.as_dict(), "job_type": self.job_type, "pairs": len(self.pairs),
                 "model": {"type": getattr(model.config, "model_type", None), "layers": sites.num_layers,
                           "heads": sites.num_heads, "kv_heads": sites.num_kv_heads}},
                self.pairs,
            )
        if self.dashboards is None:
            from callbacks.dashboards import make_dashboards

            self.dashboards = []
            try:
                self.dashboards = make_dashboards(
                    dashboard_names(self.config), project=args.project, run_name=args.run_name,
                    group=self.config.group, job_type=self.job_type, config=self.config.as_dict(),
                )
            except Exception:  # noqa: BLE001 - the run store still records everything
                self._fail(0, traceback.format_exc())

    def _finish(self) -> None:
        summary = self._summary()
        if self.store is not None:
            self.store.save_summary(summary)
        for dashboard in self.dashboards or ():
            self._safely(self.lineage.steps[-1] if len(self.lineage) else 0, lambda: dashboard.summary(summary), record=False)
            self._safely(0, dashboard.close, record=False)
