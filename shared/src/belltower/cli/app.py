"""The ``belltower`` command: its sub-commands, gathered from their modules."""

from __future__ import annotations

import sys

import typer

from . import calendar_diff, catchup, export_import, jobs, preview, why
from .calendars import calendars_app
from .job_types import job_types
from .runs import runs_app

app = typer.Typer(
    name="belltower",
    help="Belltower: scheduled jobs for school information systems.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("job-types")(job_types)
# `jobs` lists its commands in the order they are added: those of jobs.py first, then these.
jobs.jobs_app.command("why")(why.jobs_why)
jobs.jobs_app.command("export")(export_import.jobs_export)
jobs.jobs_app.command("import")(export_import.jobs_import)
jobs.jobs_app.command("preview")(preview.jobs_preview)
jobs.jobs_app.command("backfill")(catchup.jobs_backfill)
jobs.jobs_app.command("decide")(catchup.jobs_decide)
jobs.jobs_app.command("decisions")(catchup.jobs_decisions)
app.add_typer(jobs.jobs_app, name="jobs")
calendars_app.command("diff")(calendar_diff.calendars_diff)
app.add_typer(calendars_app, name="calendars")
app.add_typer(runs_app, name="runs")
app.add_typer(preview.schedule_app, name="schedule")


@app.callback()
def _root() -> None:
    """Belltower: scheduled jobs for school information systems."""


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
