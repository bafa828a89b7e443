"""``belltower calendars``: school calendars, named sets of non-school days."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from .. import operations as ops
from ..api import Calendar, CalendarDays, CalendarRef, CalendarSpec, NonSchoolDay
from ..calendars import days_from_ics, parse_days, read_ics
from ..errors import BelltowerError, InvalidInput, NotFound
from ..rpc import ApiClient
from .options import JsonFlag, NatsUrl
from .output import fail, print_json, table
from .remote import call

calendars_app = typer.Typer(
    help="School calendars: named sets of non-school days that jobs skip or move past.",
    no_args_is_help=True,
)


def _show_calendar(cal: Calendar) -> None:
    typer.echo(f"{cal.name}" + (f"  {cal.description}" if cal.description else ""))
    typer.echo(f"{len(cal.days)} non-school days; used by {len(cal.jobs)} job(s)")
    for d in cal.days:
        typer.echo(f"  {d.day.isoformat()}  {d.day.strftime('%a')}  {d.label}".rstrip())


DaysArg = Annotated[
    list[str] | None,
    typer.Argument(help="Days as YYYY-MM-DD or ranges YYYY-MM-DD..YYYY-MM-DD (both included)."),
]
LabelOpt = Annotated[str, typer.Option(help="What the days are, e.g. 'Winter break'.")]


@calendars_app.command("create")
def calendars_create(
    name: Annotated[str, typer.Argument(help="Calendar name, e.g. district-2026-27.")],
    days: DaysArg = None,
    description: Annotated[str, typer.Option(help="What the calendar is for.")] = "",
    label: LabelOpt = "",
    json_out: JsonFlag = False,
    nats_url: NatsUrl = None,
) -> None:
    """Create a school calendar, optionally with its first non-school days."""
    try:
        parsed = parse_days(days) if days else []
    except BelltowerError as exc:
        fail(exc)
    spec = CalendarSpec(
        name=name,
        description=description,
        days=[NonSchoolDay(day=d, label=label) for d in parsed],
    )
    cal = call(nats_url, lambda c: c.call(ops.CALENDARS_CREATE, spec))
    print_json(cal) if json_out else _show_calendar(cal)


@calendars_app.command("list")
def calendars_list(json_out: JsonFlag = False, nats_url: NatsUrl = None) -> None:
    """List the school calendars."""
    cals = call(nats_url, lambda c: c.call(ops.CALENDARS_LIST))
    if json_out:
        print_json(cals)
        return
    if not cals:
        typer.echo("No calendars yet. Create one with `belltower calendars create NAME`.")
        return
    table(
        ["name", "days", "description"],
        [[c.name, str(c.days), c.description] for c in cals],
    )


@calendars_app.command("show")
def calendars_show(name: str, json_out: JsonFlag = False, nats_url: NatsUrl = None) -> None:
    """Show a calendar's non-school days and the jobs that use it."""
    cal = call(
        nats_url,
        lambda c: c.call(ops.CALENDARS_GET, CalendarRef(name=name)),
    )
    print_json(cal) if json_out else _show_calendar(cal)


@calendars_app.command("delete")
def calendars_delete(name: str, nats_url: NatsUrl = None) -> None:
    """Delete a calendar no job uses."""
    call(nats_url, lambda c: c.call(ops.CALENDARS_DELETE, CalendarRef(name=name)))
    typer.echo(f"deleted calendar {name}")


@calendars_app.command("add-days")
def calendars_add_days(
    name: str,
    days: DaysArg = None,
    label: LabelOpt = "",
    json_out: JsonFlag = False,
    nats_url: NatsUrl = None,
) -> None:
    """Add non-school days to a calendar (a day already there gets the new label)."""
    try:
        parsed = parse_days(days or [])
    except BelltowerError as exc:
        fail(exc)
    body = CalendarDays(name=name, days=[NonSchoolDay(day=d, label=label) for d in parsed])
    cal = call(nats_url, lambda c: c.call(ops.CALENDARS_ADD_DAYS, body))
    print_json(cal) if json_out else _show_calendar(cal)


@calendars_app.command("import")
def calendars_import(
    name: str,
    ics: Annotated[str, typer.Option("--ics", help="An .ics file, or an http(s) URL of one.")],
    replace: Annotated[
        bool, typer.Option(help="Drop the calendar's days first, so it matches the file.")
    ] = False,
    create: Annotated[bool, typer.Option(help="Create the calendar if it does not exist.")] = False,
    since: Annotated[
        str | None,
        typer.Option(help="Expand recurring events from this date (default today)."),
    ] = None,
    horizon_days: Annotated[
        int, typer.Option(help="Expand recurring events this many days ahead.")
    ] = 3 * 366,
    json_out: JsonFlag = False,
    nats_url: NatsUrl = None,
) -> None:
    """Import non-school days from an iCalendar file or URL: all-day events, multi-day ranges
    and recurring holidays (expanded within the horizon); each day is labelled with the event."""
    try:
        start = parse_days([since], field="since")[0] if since else datetime.now(UTC).date()
        if horizon_days < 1:
            raise InvalidInput("horizon_days", f"{horizon_days} is too small", "1 or more days")
        found = days_from_ics(read_ics(ics), since=start, horizon_days=horizon_days)
    except BelltowerError as exc:
        fail(exc)
    days = [NonSchoolDay(day=d, label=label) for d, label in found]

    async def go(client: ApiClient) -> Calendar:
        if create:
            try:
                await client.call(ops.CALENDARS_GET, CalendarRef(name=name))
            except NotFound:
                await client.call(ops.CALENDARS_CREATE, CalendarSpec(name=name))
        return await client.call(
            ops.CALENDARS_ADD_DAYS, CalendarDays(name=name, days=days, replace=replace)
        )

    cal = call(nats_url, go)
    if json_out:
        print_json(cal)
        return
    typer.echo(f"imported {len(days)} non-school days into {name}")
    _show_calendar(cal)
