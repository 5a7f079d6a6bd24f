"""``sparks compare --wandb``: the written report logged to W&B as one run of job type "compare", in the
compared runs' group, so it sits beside the runs it compares.

The run holds the report's summary and reward-alignment tables as ``wandb.Table``s, cell for cell as the
page shows them (read back from the written page, so W&B and the page cannot disagree), each figure's
PNG as a ``wandb.Image`` (W&B draws images the same online and synced from offline), and the page
itself as ``wandb.Html`` (its Plotly figures stay interactive there: plotly.js is inline). Project and
group follow the project's rule (callbacks.wandb_dashboard.run_identity): a user's WANDB_PROJECT and
WANDB_RUN_GROUP win. The job type is always "compare", what marks this run as the comparison. Offline
(``WANDB_MODE=offline``) the run is written locally for ``wandb sync`` later.
"""

from __future__ import annotations

from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path

from sparks.analysis.compare import store_of
from sparks.callbacks.wandb_dashboard import run_identity

JOB_TYPE = "compare"
PROJECT = "sparks"
TABLES = ("summary", "alignment")
"""The ids of the report's tables, each logged as ``compare/<id>``."""


class WandbCompareError(ValueError):
    """The comparison cannot go to W&B as asked; the message is one line saying what to do."""


def wandb_identity(run_dirs: Sequence[str | Path], project: str | None, group: str | None) -> dict[str, str]:
    """``wandb.init``'s project, group and job type for the comparison, checked before anything is written.

    The group is the user's WANDB_RUN_GROUP, else ``group``, else the one group every run's tracker
    config names (run.json ``config.group``); runs in other groups or in none need ``--group``. W&B
    online without an API key is refused here, not after the report is drawn.
    """
    from sparks.train.arguments import wandb_lacks_a_key

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
    return identity | {"job_type": JOB_TYPE}


class _TableReader(HTMLParser):
    """The header and rows of each ``<table id=...>`` of the report, cell texts as the page shows them."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, tuple[list[str], list[list[str]]]] = {}
        self.table: str | None = None
        self.row: list[str] | None = None
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.table = dict(attrs).get("id")
            self.tables[self.table] = ([], [])
        elif self.table is not None and tag == "tr":
            self.row = []
        elif self.row is not None and tag in ("td", "th"):
            self.cell = []

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None:
            self.row.append("".join(self.cell))
            self.cell = None
        elif tag == "tr" and self.row is not None:
            header, rows = self.tables[self.table]
            if header:
                rows.append(self.row)
            else:
                header.extend(self.row)
            self.row = None
        elif tag == "table":
            self.table = None


def report_tables(page: str) -> dict[str, tuple[list[str], list[list[str]]]]:
    """The report page's tables by id: header and rows of cell texts."""
    reader = _TableReader()
    reader.feed(page)
    reader.close()
    missing = [name for name in TABLES if name not in reader.tables]
    if missing:
        raise WandbCompareError(f"--wandb: the report has no {', '.join(missing)} table")
    return reader.tables


def log_comparison(report: Path, identity: dict[str, str], compared: Sequence[str], warnings: Sequence[str]) -> str:
    """Log the written report (``report``, its PNGs beside it) as one finished W&B run; return a line saying where it went."""
    import wandb

    tables = report_tables(report.read_text())
    try:
        run = wandb.init(name=f"compare {' vs '.join(compared)}", config={"runs": list(compared), "warnings": list(warnings),
                                                                         "report": str(report.absolute())}, **identity)
    except wandb.errors.Error as error:
        raise WandbCompareError(f"--wandb: W&B did not start the run ({str(error).strip().splitlines()[0]}); "
                                f"the report is at {report}") from None
    try:
        logged = {f"compare/{name}": wandb.Table(columns=tables[name][0], data=tables[name][1]) for name in TABLES}
        logged |= {f"compare/{png.stem}": wandb.Image(str(png)) for png in sorted(report.parent.glob("*.png"))}
        run.log(logged | {"compare/report": wandb.Html(str(report), inject=False)})
    except BaseException:
        run.finish(exit_code=1)
        raise
    run.finish()
    if run.disabled:
        return "W&B is disabled (WANDB_MODE=disabled): the comparison was not logged"
    where = f"{run.settings.sync_dir} (offline: upload with wandb sync {run.settings.sync_dir})" if run.offline else run.url
    return f"logged the comparison to W&B ({identity['project']}, group {identity['group']}, job type {JOB_TYPE}): {where}"
