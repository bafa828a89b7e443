"""``belltower schedule preview`` and ``jobs preview``: the next occurrences of a schedule, with
the skipped ones between and why."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Annotated, Any

import typer

from .. import operations as ops
from ..api import After, CalendarRef, JobRef
from ..errors import BelltowerError, InvalidInput
from ..schedule import (
    ON_DEMAND_TEXT,
    Occurrence,
    OnDemand,
    Schedule,
    ScheduleFlags,
    compile_schedule,
    is_spread,
    parse_datetime,
    zone,
)
from .options import JsonFlag, NatsUrl, PreviewCalendarOpt, with_schedule_flags
from .output import fail, print_json
from .remote import call

schedule_app = typer.Typer(help="Try schedules out without defining a job.", no_args_is_help=True)


def _preview(
    schedule: Schedule,
    since: str | None,
    count: int,
    json_out: bool,
    non_school_days: Sequence[date] = (),
    after: After | None = None,
    job_id: str | None = None,
) -> None:
    """Print the next ``count`` occurrences after ``since`` (default now) in the schedule's zone,
    with the skipped ones between and why they were skipped.

    An on-demand schedule has none: it says when the job runs instead (``--json`` gives the
    empty list, the same shape as every other schedule's preview)."""
    if count < 1:
        raise InvalidInput("count", f"{count} is not a number of occurrences", "1 or more")
    if isinstance(schedule.rule, OnDemand):
        compile_schedule(schedule)
        runs = _on_demand_runs(after, job_id)
        if json_out:
            print_json([])
            return
        typer.echo(f"{ON_DEMAND_TEXT}: no scheduled occurrences.")
        typer.echo(f"  {runs}.")
        return
    start = parse_datetime(since, schedule.tz, field="from") if since else datetime.now(UTC)
    compiled = compile_schedule(schedule, non_school_days=non_school_days, spread_key=job_id or "")
    local = zone(schedule.tz)
    found = compiled.preview(start, count)
    runnable = sum(1 for o in found if o.skipped is None)
    if json_out:
        print_json([_occurrence_json(o, local) for o in found])
        return
    typer.echo(
        f"{compiled.describe()}, from {start.astimezone(local).isoformat(timespec='seconds')}:"
    )
    for occ in found:
        t = occ.at.astimezone(local)
        line = f"  {t.isoformat(timespec='seconds')}  {t.strftime('%a')}"
        if occ.skipped:
            line += f"  skipped: {occ.skipped}"
        if occ.note:
            line += f"  ({occ.note})"
        typer.echo(line)
    if runnable < count:
        typer.echo("  (no more occurrences: the schedule ends)")
    if is_spread(schedule) and not job_id:
        typer.echo(
            "  (H fields: these instants are an example; each job's own are picked from its id"
            " when it is created: `belltower jobs preview ID` shows them)"
        )


def _on_demand_runs(after: After | None, job_id: str | None = None) -> str:
    """When an on-demand job runs, in a sentence."""
    by_hand = f"It runs only when started by hand (`belltower jobs run-now {job_id or 'JOB_ID'}`)"
    if after is None:
        return f"{by_hand}, or when its upstream job finishes if it was created with --after"
    delay = f", {_words_s(after.delay_s)} later" if after.delay_s else ""
    when = {"succeeded": "succeeds", "failed": "fails", "finished": "finishes"}[after.on]
    return f"{by_hand} or when its upstream job {after.job} {when}{delay}"


def _words_s(seconds: float) -> str:
    return f"{seconds:g}s" if seconds < 60 or seconds % 60 else f"{seconds / 60:g} min"


def _occurrence_json(occ: Occurrence, local: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "at": occ.at.astimezone(local),
        "utc": occ.at,
        "rule": occ.rule,
        "skipped": occ.skipped is not None,
        "reason": occ.skipped,
    }
    if occ.note:
        out["note"] = occ.note
    if occ.nominal != occ.at:
        out["nominal"] = occ.nominal.astimezone(local)
    return out


CountOpt = Annotated[int, typer.Option(help="How many occurrences to list.")]
FromOpt = Annotated[
    str | None,
    typer.Option("--from", help="List occurrences after this ISO date-time (default now)."),
]


@schedule_app.command("preview")
@with_schedule_flags(calendar=PreviewCalendarOpt)
def schedule_preview(
    schedule: ScheduleFlags,
    from_: FromOpt = None,
    count: CountOpt = 10,
    json_out: JsonFlag = False,
    nats_url: NatsUrl = None,
) -> None:
    """List the next occurrences of a schedule given as `jobs create` takes it.

    Needs no running services, unless --calendar names a school calendar to read."""
    try:
        built = schedule.build()
    except BelltowerError as exc:
        fail(exc)
    days = _calendar_days(nats_url, built.calendar)
    try:
        _preview(built, from_, count, json_out, days)
    except BelltowerError as exc:
        fail(exc)


def jobs_preview(
    job_id: str,
    from_: FromOpt = None,
    count: CountOpt = 10,
    json_out: JsonFlag = False,
    nats_url: NatsUrl = None,
) -> None:
    """List the next occurrences of a stored job."""
    job = call(nats_url, lambda c: c.call(ops.JOBS_GET, JobRef(id=job_id)))
    days = _calendar_days(nats_url, job.schedule.calendar)
    try:
        _preview(job.schedule, from_, count, json_out, days, job.after, job.id)
    except BelltowerError as exc:
        fail(exc)


def _calendar_days(nats_url: str | None, name: str | None) -> list[date]:
    if name is None:
        return []
    cal = call(
        nats_url,
        lambda c: c.call(ops.CALENDARS_GET, CalendarRef(name=name)),
    )
    return [d.day for d in cal.days]
