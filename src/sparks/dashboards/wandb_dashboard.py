"""The heads panels in Weights & Biases, on the trainer's ``train/global_step`` axis.

When transformers' WandbCallback has already started a run (``report_to: wandb``), the panels go
into that run next to the reward curve and the run is left for its owner to finish; otherwise the
dashboard starts its own run on first use and finishes it in ``close``. Works offline
(``WANDB_MODE=offline``, then ``wandb sync``).

The tracker's group and job type reach both runs as ``wandb.init`` arguments, never through the
process environment (``run_identity``, ``trainer_run``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sparks.dashboards.panels import EVENT_COLUMNS, event_rows, figures
from sparks.dashboards.plots import figure_pixels
from sparks.dashboards.report import SnapshotReport

if TYPE_CHECKING:
    from transformers import TrainingArguments
    from wandb import Run, Table

STEP = "train/global_step"
IDENTITY_VARIABLES = {"project": "WANDB_PROJECT", "group": "WANDB_RUN_GROUP", "job_type": "WANDB_JOB_TYPE"}


def run_identity(project: str | None, group: str | None, job_type: str | None) -> dict[str, str | None]:
    """``wandb.init``'s project, group and job type: the user's WANDB_PROJECT, WANDB_RUN_GROUP and
    WANDB_JOB_TYPE where set, else the given ones.

    Arguments, not variables set in ``os.environ``: those would outlive the run into whatever the
    process runs next, and wandb reads its environment once per process, so later changes are lost.
    """
    given = {"project": project, "group": group, "job_type": job_type}
    return {key: os.environ.get(variable) or given[key] for key, variable in IDENTITY_VARIABLES.items()}


@contextmanager
def trainer_run(args: TrainingArguments, group: str | None, job_type: str | None) -> Iterator[None]:
    """A block (the training) in which the trainer's W&B run carries ``group`` and ``job_type``.

    transformers' WandbCallback starts its run with a project and run name only, and joins a run
    already active. So when the trainer reports to wandb and no run is active, the main process
    starts that run here (``run_identity``, the project as WandbCallback would pick it) and finishes
    it when the block ends, marked failed (exit code 1) if the block raised.
    """
    if "wandb" not in (args.report_to or []) or args.process_index != 0:
        yield
        return
    import wandb

    if wandb.run is not None:  # the user's own run: the trainer joins it as it is
        yield
        return
    identity = run_identity(args.project, group, job_type)
    run = wandb.init(name=args.run_name, project=identity["project"], group=identity["group"], job_type=identity["job_type"])
    try:
        yield
    except BaseException:
        run.finish(exit_code=1)
        raise
    run.finish()


class WandbDashboard:
    """Logs each snapshot's ``heads/...`` scalars, pictures and the growing event table to W&B.

    The event table is an INCREMENTAL ``wandb.Table``: each log sends the rows added since the last
    one and W&B shows them together. Its first log carries every event of the lineage so far, so a
    tracker restored from a checkpoint still shows the events from before the resume.
    """

    def __init__(
        self,
        project: str | None = None,
        run_name: str | None = None,
        group: str | None = None,
        job_type: str | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.init_args: dict[str, Any] = {"project": project, "name": run_name, "group": group, "job_type": job_type, "config": config}
        self.run: Run | None = None
        self.owns_run = False
        self.events: Table | None = None
        self.events_logged = 0
        self.failures = 0

    def _active_run(self):
        """The run to log into: the one already active, else one of our own (started once)."""
        if self.run is None:
            import wandb

            self.owns_run = wandb.run is None
            if self.owns_run:
                args = self.init_args
                self.run = wandb.init(**args | run_identity(args["project"], args["group"], args["job_type"]))
            else:
                self.run = wandb.run
                assert self.run is not None, "owns_run is False: a run is active"
                if self.init_args["config"]:
                    self.run.config.update(self.init_args["config"], allow_val_change=True)
            self.run.define_metric(STEP)
            self.run.define_metric("heads/*", step_metric=STEP)
            self.events = wandb.Table(columns=[*EVENT_COLUMNS], log_mode="INCREMENTAL")  # its own list: the table keeps it and add_column appends
            self.events_logged = 0
        return self.run

    def snapshot(self, report: SnapshotReport) -> None:
        """Log the scalars, the pictures and the events not yet in the table, at ``report.step``."""
        import wandb

        run = self._active_run()
        assert self.events is not None, "_active_run made the table"
        events = report.lineage.events
        for row in event_rows(events[self.events_logged:]):
            self.events.add_data(*row)
        self.events_logged = len(events)
        values = {name: wandb.Image(figure_pixels(figure)) for name, figure in figures(report).items()}
        run.log({**report.metrics, **values, "heads/failed": 0, "heads/events": self.events, STEP: report.step})

    def failure(self, step: int, message: str) -> None:
        """Mark the step with ``heads/failed`` = 1 and keep the reason in the run summary."""
        run = self._active_run()
        self.failures += 1
        run.log({"heads/failed": 1, STEP: step})
        run.summary["heads/failures"] = self.failures
        run.summary["heads/last_failure"] = f"step {step}: {message}"

    def summary(self, values: dict[str, float | int | str | None]) -> None:
        """Write run-level results into the run summary."""
        run = self._active_run()
        for key, value in values.items():
            run.summary[key] = value

    def close(self) -> None:
        """Finish the run if this dashboard started it; a run started by the trainer is left running."""
        if self.run is not None and self.owns_run:
            self.run.finish()
        self.run = None
