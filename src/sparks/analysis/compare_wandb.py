"""``sparks compare --wandb``: the written report logged to W&B as one run of job type "compare", in the
compared runs' group, so it sits beside the runs it compares.

The run holds the report's summary and reward-alignment tables (and its ablation table, when a run holds
``sparks ablate`` results) as ``wandb.Table``s, cell for cell as the
page shows them (the same Table objects the page is written from), each figure's
PNG as a ``wandb.Image`` (W&B draws images the same online and synced from offline), and the page
itself as ``wandb.Html`` (its Plotly figures stay interactive there: plotly.js is inline). Project and
group follow the project's rule (dashboards.wandb_dashboard.run_identity): a user's WANDB_PROJECT and
WANDB_RUN_GROUP win. The job type is always "compare", what marks this run as the comparison. Offline
(``WANDB_MODE=offline``) the run is written locally for ``wandb sync`` later.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TypedDict, cast

from sparks.analysis.compare import store_of
from sparks.analysis.compare_report import Report
from sparks.dashboards.wandb_dashboard import run_identity
from sparks.runs.store import first_line

JOB_TYPE = "compare"
PROJECT = "sparks"


class WandbCompareError(ValueError):
    """The comparison cannot go to W&B as asked; the message is one line saying what to do."""


class WandbIdentity(TypedDict):
    """``wandb.init``'s project, group and job type for the comparison."""

    project: str
    group: str
    job_type: str


def wandb_identity(run_dirs: Sequence[str | Path], project: str | None, group: str | None) -> WandbIdentity:
    """``wandb.init``'s project, group and job type for the comparison, checked before anything is written.

    The group is the user's WANDB_RUN_GROUP, else ``group``, else the one group every run's tracker
    config names (run.json ``config.group``); runs in other groups or in none need ``--group``. W&B
    online without an API key is refused here, not after the report is drawn.
    """
    from sparks.dashboards.wandb_key import wandb_lacks_a_key

    identity = run_identity(project or PROJECT, group, JOB_TYPE)
    if identity["group"] is None:
        groups = {str(path): store_of(Path(path)).run()["config"].get("group") for path in run_dirs}
        named = set(groups.values())
        if len(named) != 1 or None in named:
            found = ", ".join(f"{path}: {name or 'none'}" for path, name in groups.items())
            raise WandbCompareError(f"--group: the runs are not in one group ({found}); name the comparison's group with --group")
        identity["group"] = named.pop()
    if wandb_lacks_a_key():
        raise WandbCompareError('--wandb: wandb needs a W&B API key when online: run "wandb login", set WANDB_API_KEY, '
                                "or set WANDB_MODE=offline")
    # run_identity keeps a given value where no variable is set: the project is given, the group is set above.
    return cast(WandbIdentity, identity | {"job_type": JOB_TYPE})


def log_comparison(report: Report, identity: WandbIdentity) -> str:
    """Log the written report (its PNGs beside it) as one finished W&B run; return a line saying where it went."""
    import wandb

    try:
        run = wandb.init(name=f"compare {' vs '.join(report.compared)}",
                         config={"runs": report.compared, "warnings": report.warnings, "report": str(report.path.absolute())},
                         **identity)
    except wandb.errors.Error as error:
        raise WandbCompareError(f"--wandb: W&B did not start the run ({first_line(error)}); "
                                f"the report is at {report.path}") from None
    try:
        logged: dict[str, wandb.Table | wandb.Image] = {
            f"compare/{name}": wandb.Table(columns=list(table.header), data=table.rows) for name, table in report.tables.items()}
        logged |= {f"compare/{png.stem}": wandb.Image(str(png)) for png in sorted(report.path.parent.glob("*.png"))}
        run.log(logged | {"compare/report": wandb.Html(str(report.path), inject=False)})
    except BaseException:
        run.finish(exit_code=1)
        raise
    run.finish()
    if run.disabled:
        return "W&B is disabled (WANDB_MODE=disabled): the comparison was not logged"
    where = f"{run.settings.sync_dir} (offline: upload with wandb sync {run.settings.sync_dir})" if run.offline else run.url
    return f"logged the comparison to W&B ({identity['project']}, group {identity['group']}, job type {JOB_TYPE}): {where}"
