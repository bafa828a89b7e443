"""``belltower calendars``: school calendars, named sets of non-school days."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from ..api import Calendar, CalendarImport, CalendarSpec, CalendarSummary, NonSchoolDay
from ..calendars import parse_days, read_ics
from ..errors import BelltowerError, InvalidInput
from .options import JsonFlag, ProfileOpt
from .output import fail, print_json, table
from .remote import call, seg

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
    profile: ProfileOpt = None,
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
    cal = call(profile, lambda api: api.send("POST", "/calendars", Calendar, spec))
    print_json(cal) if json_out else _show_calendar(cal)


@calendars_app.command("list")
def calendars_list(json_out: JsonFlag = False, profile: ProfileOpt = None) -> None:
    """List the school calendars."""
    cals = call(profile, lambda api: api.get("/calendars", list[CalendarSummary]))
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
def calendars_show(name: str, json_out: JsonFlag = False, profile: ProfileOpt = None) -> None:
    """Show a calendar's non-school days and the jobs that use it."""
    cal = call(profile, lambda api: api.get(f"/calendars/{seg(name)}", Calendar))
    print_json(cal) if json_out else _show_calendar(cal)


@calendars_app.command("delete")
def calendars_delete(name: str, profile: ProfileOpt = None) -> None:
    """Delete a calendar no job uses."""
    call(profile, lambda api: api.request("DELETE", f"/calendars/{seg(name)}"))
    typer.echo(f"deleted calendar {name}")


@calendars_app.command("add-days")
def calendars_add_days(
    name: str,
    days: DaysArg = None,
    label: LabelOpt = "",
    json_out: JsonFlag = False,
    profile: ProfileOpt = None,
) -> None:
    """Add non-school days to a calendar (a day already there gets the new label)."""
    try:
        parsed = parse_days(days or [])
    except BelltowerError as exc:
        fail(exc)
    body = {"days": [NonSchoolDay(day=d, label=label) for d in parsed]}
    cal = call(
        profile, lambda api: api.send("POST", f"/calendars/{seg(name)}/days", Calendar, body)
    )
    print_json(cal) if json_out else _show_calendar(cal)


@calendars_app.command("remove-days")
def calendars_remove_days(
    name: str,
    days: DaysArg = None,
    json_out: JsonFlag = False,
    profile: ProfileOpt = None,
) -> None:
    """Take non-school days out of a calendar (a day it does not have is no error)."""
    try:
        parsed = parse_days(days or [])
    except BelltowerError as exc:
        fail(exc)
    body = {"days": parsed}
    cal = call(
        profile, lambda api: api.send("POST", f"/calendars/{seg(name)}/remove-days", Calendar, body)
    )
    print_json(cal) if json_out else _show_calendar(cal)


@calendars_app.command("update")
def calendars_update(
    name: str,
    description: Annotated[str, typer.Option(help="What the calendar is for.")],
    json_out: JsonFlag = False,
    profile: ProfileOpt = None,
) -> None:
    """Change a calendar's description."""
    body = {"description": description}
    cal = call(profile, lambda api: api.send("PATCH", f"/calendars/{seg(name)}", Calendar, body))
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
    profile: ProfileOpt = None,
) -> None:
    """Import non-school days from an iCalendar file or URL: all-day events, multi-day ranges
    and recurring holidays (expanded within the horizon); each day is labelled with the event."""
    try:
        start = parse_days([since], field="since")[0] if since else datetime.now(UTC).date()
        if horizon_days < 1:
            raise InvalidInput("horizon_days", f"{horizon_days} is too small", "1 or more days")
        data = read_ics(ics)
    except BelltowerError as exc:
        fail(exc)
    # The console reads the file's events (the same parser), so what it stores is what it audits.
    body = {
        "ics": data.decode("utf-8", errors="replace"),
        "replace": replace,
        "create": create,
        "since": start,
        "horizon_days": horizon_days,
    }
    done = call(
        profile,
        lambda api: api.send("POST", f"/calendars/{seg(name)}/import", CalendarImport, body),
    )
    if json_out:
        print_json(done.calendar)
        return
    typer.echo(f"imported {done.imported} non-school days into {name}")
    _show_calendar(done.calendar)
