"""``belltower calendars diff``: what a calendar change would do to its jobs' runs, before it
is made (a snow day, a day given back, a new year's iCalendar file)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from ..api import CalendarDiff
from ..calendars import parse_days, read_ics
from ..errors import BelltowerError, InvalidInput
from .calendars import LabelOpt
from .options import JsonFlag, ProfileOpt
from .output import fail, print_json, table, timestamp
from .remote import call, seg


def calendars_diff(
    name: str,
    add_day: Annotated[
        list[str] | None,
        typer.Option(help="A day to make non-school, YYYY-MM-DD or a range A..B; repeat."),
    ] = None,
    remove_day: Annotated[
        list[str] | None,
        typer.Option(help="A non-school day to give back, YYYY-MM-DD or a range; repeat."),
    ] = None,
    import_: Annotated[
        str | None,
        typer.Option("--import", help="An .ics file (or http(s) URL) whose days to try."),
    ] = None,
    replace: Annotated[
        bool, typer.Option(help="The given days replace the calendar's (a new year's file).")
    ] = False,
    label: LabelOpt = "",
    days: Annotated[int, typer.Option(help="Compare the runs of this many days.")] = 30,
    json_out: JsonFlag = False,
    profile: ProfileOpt = None,
) -> None:
    """Show which runs of which jobs would move, be skipped or be added in the next --days days
    if the change were made; nothing is changed."""
    try:
        added = parse_days(add_day, field="add_day") if add_day else []
        body: dict[str, Any] = {
            "add_days": [{"day": d, "label": label} for d in added],
            "remove_days": parse_days(remove_day, field="remove_day") if remove_day else [],
            "replace": replace,
            "days": days,
        }
        if import_ is not None:
            body["ics"] = read_ics(import_).decode("utf-8", errors="replace")
            body["ics_since"] = datetime.now(UTC).date()
        if not (body["add_days"] or body["remove_days"] or import_ or replace):
            raise InvalidInput(
                "add_day", "no change given", "--add-day, --remove-day or --import FILE.ics"
            )
    except BelltowerError as exc:
        fail(exc)
    diff = call(
        profile, lambda api: api.send("POST", f"/calendars/{seg(name)}/diff", CalendarDiff, body)
    )
    if json_out:
        print_json(diff)
        return
    _show(diff)


def _show(diff: CalendarDiff) -> None:
    span = f"{timestamp(diff.since)} to {timestamp(diff.until)}"
    typer.echo(f"{diff.calendar}: {span}")
    for what, found in (("adds", diff.days_added), ("removes", diff.days_removed)):
        if found:
            typer.echo(f"  {what} {len(found)} day(s): " + ", ".join(d.isoformat() for d in found))
    typer.echo(
        f"{diff.jobs} job(s) use it ({diff.paused_jobs} paused, not compared); "
        f"{diff.jobs_affected} affected: {diff.moved} run(s) moved, {diff.skipped} skipped, "
        f"{diff.added} added"
    )
    if diff.changes:
        table(
            ["job", "change", "was", "would be", "why"],
            [
                [
                    c.job_title,
                    c.change,
                    timestamp(c.before) if c.before else "-",
                    timestamp(c.after) if c.after else "-",
                    c.reason or "",
                ]
                for c in diff.changes
            ],
        )
    if diff.truncated:
        typer.echo("(more changes than shown: narrow --days, or see the console's calendar page)")
