"""HeadTrackerCallback: scores every attention head of the live model while it trains.

A plain transformers ``TrainerCallback``, so it works in TRL's GRPO and SFT trainers and in any
Trainer. Snapshots: the base model when training starts, every ``config.every`` optimizer steps,
and the end. The callback only schedules: every rank scores its share of the probe pairs
(callbacks.snapshot: node EAP-IG by default, with bootstrap uncertainty and faithfulness), and the
main process records the result (callbacks.recorder: lineage, run store, dashboards, summary).

A snapshot is scored when its step ends and recorded once that step's logs are in, so the reward
window it closes includes its own step (at once when the step logs nothing, so the store holds it
before a checkpoint of that step is written). Training resumed from a checkpoint resumes the run
store at that step, reading what it holds: a snapshot of that step it lacks is scored again, and
other tracker settings, pairs or heads are refused (runs.store). The main process holds the
output directory's writer lock (runs.lock) from train begin to train end, unless the training
script took it already. A checkpoint step also logs, so that a resume from it logs the same
averages as the run it resumes. Scoring leaves the model
exactly as found (probes.hooks), so the training is the same with and without the tracker. A
failed snapshot is logged with its traceback, recorded, and training goes on, unless ``config.strict``,
or unless it failed inside a sharded model's forward or backward on one rank (ShardedSnapshotFailed):
the other ranks may then wait in the model's collectives, so that rank stops (callbacks.snapshot).
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import IntervalStrategy

from sparks.callbacks.config import LINEAGE_SETTINGS, TrackerConfig
from sparks.callbacks.distributed import sum_over_ranks
from sparks.callbacks.recorder import SnapshotRecorder, kept_series
from sparks.callbacks.snapshot import ShardedSnapshotFailed, SnapshotFailed, score_snapshot
from sparks.dashboards.report import Dashboard
from sparks.probes.edges import EdgeGraph
from sparks.probes.pairs import Pair
from sparks.probes.scoring import graph_of
from sparks.probes.sites import check_scorable, resolve, unwrap
from sparks.probes.statistics import SnapshotStats
from sparks.runs.lineage import HeadLineage
from sparks.runs.lock import WriterLock, holds, lock_output_dir, output_dir_lock, release
from sparks.runs.store import RunStore, RunStoreError

logger = logging.getLogger(__name__)


def dashboard_names(config: TrackerConfig) -> list[str]:
    """The configured dashboards with "auto" resolved (W&B with a key, else trackio) and "none" dropped."""
    names: list[str] = []
    for name in config.dashboards:
        if name == "auto":
            from sparks.dashboards.registry import default_dashboards

            name_list = default_dashboards()
        else:
            name_list = [] if name == "none" else [name]
        names += [item for item in name_list if item not in names]
    return names


def head_layout(model: nn.Module) -> dict[str, Any]:
    """The model's type and head geometry, as run.json records it: runs with another layout are not comparable.

    A hybrid's layer numbers count its attention layers only; ``attention_layers`` names their decoder layers."""
    sites = resolve(model)
    layout = {"type": getattr(model.config, "model_type", None), "layers": sites.num_layers,
              "heads": sites.num_heads, "kv_heads": sites.num_kv_heads}
    if sites.layer_ids != tuple(range(sites.num_layers)):
        layout["attention_layers"] = list(sites.layer_ids)
    return layout


def base_model_path(model: nn.Module) -> str | None:
    """Where the trained model was loaded from (its ``name_or_path``, under a PEFT wrapper too): a local
    directory made absolute, a hub name as it is; what ``sparks rescore`` scores as step 0."""
    name = getattr(unwrap(model), "name_or_path", None)
    if not name:
        return None
    return str(Path(name).resolve()) if Path(name).is_dir() else str(name)


class HeadTrackerCallback(TrainerCallback):
    """Tracks which heads form the circuit as training goes, and how that follows the reward.

    Args:
        config: what to score, how often, and where to log.
        pairs: probe pairs; by default the config's pair file or arithmetic-world pairs built with
            the trainer's tokenizer.
        job_type: the kind of training ("grpo", "sft"), for the run store and the dashboards. It and
            ``config.group`` become the job type and group of the tracker's W&B run, and of the
            trainer's when it trains inside ``wandb_run`` (a user's WANDB_JOB_TYPE, WANDB_RUN_GROUP
            win); the process environment is left as it was.
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
        self.recorder: SnapshotRecorder | None = None
        self.graph: EdgeGraph | None = None
        self.pad_id = 0
        self.last_scored: int | None = None
        self._pending: tuple[int, SnapshotStats, float, bool] | None = None
        self._lock: WriterLock | None = None

    def wandb_run(self, args: TrainingArguments) -> AbstractContextManager[None]:
        """Train inside this block and a trainer reporting to wandb logs into a W&B run with the
        tracker's group and job type (dashboards.wandb_dashboard.trainer_run), finished at its end."""
        from sparks.dashboards.wandb_dashboard import trainer_run

        return trainer_run(args, self.config.group, self.job_type)

    # -- the trainer's events -------------------------------------------------------------------

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs) -> None:
        model, tokenizer = kwargs["model"], kwargs.get("processing_class")
        check_scorable(model, self.config.level)  # a family or level sparks cannot score stops here, before any work
        self.graph = graph_of(model)
        if self.pairs is None:
            vocab_size = cast(int, resolve(model).embed_tokens.num_embeddings)  # an embedding, or an adapter (LoRA) around one
            self.pairs = self.config.probe_set.build(tokenizer, vocab_size)
        pad_id = getattr(tokenizer, "pad_token_id", None)
        self.pad_id = 0 if pad_id is None else int(pad_id)
        step = state.global_step
        last_stored, missing = self._open(args, state, model)
        # Resuming: the last step scored, by the schedule or a final snapshot the store holds.
        self.last_scored = max(step - step % self.config.every, last_stored) if step else None
        if step == 0 or missing:
            self._score(model, step, final=step >= state.max_steps)
            self._publish()

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs) -> None:
        self._publish()

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs) -> None:
        if control.should_save and args.logging_strategy == IntervalStrategy.STEPS:
            # A checkpoint closes a logging window: the trainer's averages restart where a resume starts, so a
            # run resumed from this checkpoint logs the same values (and reward windows) as the run it resumes.
            control.should_log = True
        if state.global_step % self.config.every == 0:
            self._score(kwargs["model"], state.global_step, final=state.global_step >= state.max_steps)
            if not control.should_log:  # no logs will close its window: record it before a checkpoint can be written
                self._publish()

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs=None, **kwargs) -> None:
        values = kept_series(logs or {})
        if values and self.recorder is not None:
            self.recorder.log(state.global_step, values)
        if self._pending is not None and self._pending[0] == state.global_step:
            self._publish()

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs) -> None:
        if self.last_scored is None or self.last_scored < state.global_step:
            self._score(kwargs["model"], state.global_step, final=True)
        self._publish()
        if self.recorder is not None:
            self.recorder.finish()
        if self._lock is not None:
            release(self._lock)
            self._lock = None

    # -- scoring (every rank) and recording (main process) --------------------------------------

    def _score(self, model: nn.Module, step: int, final: bool) -> None:
        """Score the snapshot on every rank; a failure on any rank fails it on all of them, at once, except
        inside a sharded model's passes, where it stops the failing rank (ShardedSnapshotFailed).

        Its pictures are drawn at every ``pictures_every``-th scheduled snapshot and at the ``final`` one.
        """
        self.last_scored = step
        start = time.perf_counter()
        try:
            assert self.pairs is not None and self.graph is not None, "on_train_begin sets them before any snapshot"
            stats = score_snapshot(model, self.pairs, self.config, self.graph, self.pad_id, step)
        except ShardedSnapshotFailed:  # raised on the failing rank only: recorded if it is the main process, then fatal
            if self.recorder is not None:
                self.recorder.fail(step, traceback.format_exc())
            raise
        except SnapshotFailed as failure:
            self._fail(step, str(failure))
        except Exception:
            self._fail(step, traceback.format_exc())
        else:
            pictures = final or (step // self.config.every) % self.config.pictures_every == 0
            self._pending = (step, stats, time.perf_counter() - start, pictures)

    def _publish(self) -> None:
        if self._pending is None:
            return
        step, stats, seconds, pictures = self._pending
        self._pending = None
        if self.recorder is None:
            return
        try:
            self.recorder.record(step, stats, seconds, pictures)
        except Exception:
            self._fail(step, traceback.format_exc())

    def _fail(self, step: int, error: str) -> None:
        """Record the failure (main process), then stop training if strict."""
        if self.recorder is not None:
            self.recorder.fail(step, error)
        if self.config.strict:
            raise RuntimeError(f"sparks: the head snapshot at step {step} failed (tracker.strict is on):\n{error}")

    # -- the run store and dashboards (main process) ---------------------------------------------

    def _open(self, args: TrainingArguments, state: TrainerState, model: nn.Module) -> tuple[int, bool]:
        """Open the run store on the main process, and agree on every rank on what it holds.

        Returns the last step it holds a snapshot of (-1 for none) and whether the snapshot of the
        step training resumes at is missing from it (a crash between the two), to be scored again.
        A store that cannot be opened raises RunStoreError on every rank.
        """
        error, last_stored, missing = None, -1, False
        if state.is_world_process_zero:
            try:
                assert args.output_dir is not None, "TrainingArguments defaults it to trainer_output"
                if not holds(output_dir_lock(args.output_dir)):  # the training scripts took it before the model loaded
                    self._lock = lock_output_dir(args.output_dir)
                self.recorder, dropped = self._open_recorder(args, state, model)
                lineage, step = self.recorder.lineage, state.global_step
                last_stored = lineage.steps[-1] if len(lineage) else -1
                failed = {failure["step"] for failure in self.recorder.store.read("failures.jsonl")}
                missing = step > 0 and step not in lineage.steps and (
                    dropped == step or (step % self.config.every == 0 and step not in failed))
                if missing:
                    print(f"sparks: resuming at step {step}: the run store lacks this step's snapshot; scoring it again", flush=True)
            except RunStoreError as failure:
                error = failure
            except OSError as failure:
                error = RunStoreError(f"output_dir: cannot write the run store under {args.output_dir} ({failure})")
            except Exception:
                logger.error("sparks: opening the run store failed:\n%s", traceback.format_exc())
                error = RunStoreError(f"the run store under {args.output_dir} could not be opened: "
                                      f"{traceback.format_exc().strip().splitlines()[-1]}")
        device = next(model.parameters()).device
        agreed = sum_over_ranks(torch.tensor([float(error is not None), last_stored + 1.0, float(missing)],
                                             dtype=torch.float64, device=device)).cpu()
        if agreed[0] > 0:
            raise error or RunStoreError("the run store could not be opened on the main process")
        return int(agreed[1]) - 1, bool(agreed[2])

    def _open_recorder(
        self, args: TrainingArguments, state: TrainerState, model: nn.Module
    ) -> tuple[SnapshotRecorder, int | None]:
        """The recorder over a fresh run store, or over the stored run resumed at this step (same settings, pairs
        and heads), and the step of a damaged snapshot the resume dropped to score again (RunStore.resume)."""
        assert args.output_dir is not None, "TrainingArguments defaults it to trainer_output"
        assert self.pairs is not None, "on_train_begin sets the pairs before it opens the store"
        store, step, dropped = RunStore(args.output_dir), state.global_step, None
        layout = head_layout(model)
        series = [(int(entry["step"]), values) for entry in state.log_history
                  if "step" in entry and (values := kept_series(entry))]
        records = [{"step": logged_step, **values} for logged_step, values in series]
        if step > 0 and store.holds_lineage():
            changed = store.check_settings(self.config.as_dict(), LINEAGE_SETTINGS, self.pairs, layout)
            resumed = store.resume(step, records)
            store.record_resume(step, changed)
            assert resumed is not None, "the store holds a lineage (checked above)"
            lineage, dropped = resumed.lineage, resumed.dropped
            print(f"sparks: resuming the run store at step {step}: {len(lineage)} snapshots kept"
                  + "".join(f"; {note}" for note in resumed.notes), flush=True)
        else:
            if step > 0:
                print(f"sparks: resuming at step {step} with no head lineage in {store.root}; "
                      f"the lineage starts here, without the base model's circuit", flush=True)
            lineage = HeadLineage(self.config.confidence)
            store.start({"config": self.config.as_dict(), "job_type": self.job_type, "pairs": len(self.pairs),
                         "model": layout, "base_model": base_model_path(model)}, self.pairs)
            store.append("metrics.jsonl", records)
        recorder = SnapshotRecorder(self.config, store, lineage, self.dashboards or [], series)
        if step > 0:
            store.save_summary(recorder.summary())
        if self.dashboards is None:
            from sparks.dashboards.registry import make_dashboards

            try:
                recorder.dashboards = make_dashboards(
                    dashboard_names(self.config), project=args.project, run_name=args.run_name,
                    group=self.config.group, job_type=self.job_type, config=self.config.as_dict(),
                )
            except Exception:
                recorder.fail(0, traceback.format_exc())
        return recorder, dropped
