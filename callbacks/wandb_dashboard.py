"""The heads panels in Weights & Biases, on the trainer's ``train/global_step`` axis.

When transformers' WandbCallback has already started a run (``report_to: wandb``), the panels go
into that run next to the reward curve and the run is left for its owner to finish; otherwise the
dashboard starts its own run on first use and finishes it in ``close``. Works offline
(``WANDB_MODE=offline``, then ``wandb sync``).
"""

from __future__ import annotations

from typing import Any

from sparks.callbacks.panels import EVENT_COLUMNS, event_rows, figures
from sparks.callbacks.plots import figure_pixels
from sparks.callbacks.report import SnapshotReport

STEP = "train/global_step"


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
        self.init_args = {"project": project, "name": run_name, "group": group, "job_type": job_type, "config": config}
        self.run = None
        self.owns_run = False
        self.events = None
        self.events_logged = 0
        self.failures = 0

    def _active_run(self):
        """The run to log into: the one already active, else one of our own (started once)."""
        if self.run is None:
            import wandb

            self.owns_run = wandb.run is None
            if self.owns_run:
                self.run = wandb.init(**self.init_args)
            else:
                self.run = wandb.run
                if self.init_args["config"]:
                    self.run.config.update(self.init_args["config"], allow_val_change=True)
            self.run.define_metric(STEP)
            self.run.define_metric("heads/*", step_metric=STEP)
            self.events = wandb.Table(columns=EVENT_COLUMNS, log_mode="INCREMENTAL")
            self.events_logged = 0
        return self.run

    def snapshot(self, report: SnapshotReport) -> None:
        """Log the scalars, the pictures and the events not yet in the table, at ``report.step``."""
        import wandb

        run = self._active_run()
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
