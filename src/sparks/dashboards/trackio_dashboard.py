"""The heads panels in trackio, the embedded local dashboard (``trackio show``) when no W&B key is set.

When transformers' TrackioCallback has already started a run (``report_to: trackio``), the panels go
into it, logged like the trainer's own rows (trackio's next step, with ``train/global_step`` in the
row, so ``?x_axis=train/global_step`` puts both on one axis) and the run is left for its owner to
finish. Otherwise the dashboard starts its own run on first use, logs at trackio step = global step
and finishes the run in ``close``. trackio has no run summary, so summaries and failure reasons are
logged as Markdown panels (and numeric summary values as scalars) at the last step seen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sparks.dashboards.panels import EVENT_COLUMNS, event_rows, figures
from sparks.dashboards.plots import figure_pixels
from sparks.dashboards.report import SnapshotReport

if TYPE_CHECKING:
    from trackio.run import Run

STEP = "train/global_step"


class TrackioDashboard:
    """Logs each snapshot's ``heads/...`` scalars, pictures and the event table so far to trackio."""

    def __init__(
        self,
        project: str = "sparks",
        run_name: str | None = None,
        group: str | None = None,
        job_type: str | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        config = {**(config or {}), **({"job_type": job_type} if job_type else {})} or None  # trackio has no job type
        self.init_args: dict[str, Any] = {"project": project, "name": run_name, "group": group, "config": config, "resume": "allow"}
        self.run: Run | None = None
        self.owns_run = False
        self.last_step = 0

    def _active_run(self):
        """The run to log into: trackio's current run, else one of our own (started once)."""
        if self.run is None:
            import trackio

            self.run = trackio.context_vars.current_run.get()
            self.owns_run = self.run is None
            if self.owns_run:
                self.run = trackio.init(**self.init_args)
        return self.run

    def _log(self, values: dict[str, Any], step: int) -> None:
        """Log ``values`` at global step ``step``: at that trackio step in our own run, the next one in a shared run."""
        self._active_run().log({**values, STEP: step}, step=step if self.owns_run else None)
        self.last_step = max(self.last_step, step)

    def snapshot(self, report: SnapshotReport) -> None:
        """Log the scalars, the pictures and the whole event table at ``report.step``."""
        import trackio

        images = {name: trackio.Image(figure_pixels(figure)) for name, figure in figures(report).items()}
        events = trackio.Table(columns=EVENT_COLUMNS, data=event_rows(report.lineage.events))
        self._log({**report.metrics, **images, "heads/failed": 0, "heads/events": events}, report.step)

    def failure(self, step: int, message: str) -> None:
        """Mark the step with ``heads/failed`` = 1 and log the reason as text."""
        import trackio

        self._log({"heads/failed": 1, "heads/failure": trackio.Markdown(f"**step {step}**: {message}")}, step)

    def summary(self, values: dict[str, float | int | str | None]) -> None:
        """Log the values as a Markdown table (the Reports page), at the last step seen.

        Not as scalars: one-point charts of run-level figures would crowd out the heads panels.
        """
        import trackio

        lines = ["| key | value |", "| --- | --- |", *(f"| {key} | {value} |" for key, value in values.items())]
        self._log({"heads/summary": trackio.Markdown("\n".join(lines))}, self.last_step)

    def close(self) -> None:
        """Finish the run if this dashboard started it; a run started by the trainer is left running."""
        if self.run is not None and self.owns_run:
            import trackio

            self.run.finish()
            if trackio.context_vars.current_run.get() is self.run:
                trackio.context_vars.current_run.set(None)
        self.run = None
