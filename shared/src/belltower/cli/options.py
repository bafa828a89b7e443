"""The options several commands share: which API profile, ``--json``, and the schedule flags, declared
once here and gathered into one ScheduleFlags by ``with_schedule_flags``."""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from dataclasses import fields
from typing import Annotated, Any

import typer

from ..schedule import ScheduleFlags

ProfileOpt = Annotated[
    str | None,
    typer.Option(
        "--profile",
        envvar="BELLTOWER_PROFILE",
        help="Profile of the profiles file to use (its URL and API token); "
        "BELLTOWER_API_URL and BELLTOWER_API_TOKEN override it.",
        show_envvar=True,
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON only.")]

EveryOpt = Annotated[
    str | None, typer.Option(help="Run every interval of elapsed time: 30s, 5m, 1h30m, 1d.")
]
CronOpt = Annotated[
    str | None,
    typer.Option(help="Cron expression: 5 fields, or 6 with seconds first ('0 30 7 * * mon-fri')."),
]
DailyAtOpt = Annotated[
    str | None, typer.Option(help="Run daily at HH:MM (comma-separate several times).")
]
WeeklyOpt = Annotated[
    str | None,
    typer.Option(help="Run weekly on these days (mon,wed,fri), at the --at times."),
]
MonthlyOpt = Annotated[
    str | None,
    typer.Option(
        help="Run monthly, at the --at times, on a day: 15, last (last day), 2nd-tue, last-fri."
    ),
]
AtOpt = Annotated[
    str | None, typer.Option(help="With --weekly or --monthly: HH:MM (comma-separate several).")
]
RRuleOpt = Annotated[
    str | None,
    typer.Option(
        help="iCalendar RRULE, e.g. 'FREQ=MONTHLY;BYDAY=1MO;BYHOUR=6;BYMINUTE=0'; "
        "DTSTART is --start."
    ),
]
WeekdaysOpt = Annotated[
    str | None,
    typer.Option(
        help="mon,tue,...: with --daily-at, the days it runs; with other kinds, occurrences on "
        "other days are skipped."
    ),
]
OnceAtOpt = Annotated[str | None, typer.Option(help="Run once at an ISO date-time.")]
OnDemandOpt = Annotated[
    bool,
    typer.Option(
        "--on-demand",
        help="No schedule of its own: run only when started by hand (`jobs run-now`) or, with "
        "--after, when the upstream job finishes.",
    ),
]
TzOpt = Annotated[
    str,
    typer.Option(
        help="IANA time zone the schedule is read in.",
        envvar="BELLTOWER_DEFAULT_TZ",
        show_envvar=True,
    ),
]
StartOpt = Annotated[str | None, typer.Option(help="No run before this ISO date-time.")]
EndOpt = Annotated[str | None, typer.Option(help="No run after this ISO date-time.")]
WindowOpt = Annotated[
    str | None,
    typer.Option(
        help="Only run between these local times, HH:MM-HH:MM (may cross midnight: 22:00-06:00)."
    ),
]
JitterOpt = Annotated[
    str | None,
    typer.Option(help="Delay each run by a fixed pseudo-random amount up to this, e.g. 5m."),
]
DstGapOpt = Annotated[
    str | None,
    typer.Option(
        help="A local time the spring-forward gap skips: run (at the end of the gap) or skip. "
        "Default: run for fixed times, skip for cron with a wildcard minute or hour."
    ),
]
DstRepeatOpt = Annotated[
    str | None,
    typer.Option(
        help="A local time the autumn change repeats: first, second or both passes. "
        "Default: first for fixed times, both for cron with a wildcard minute or hour."
    ),
]
CalendarOpt = Annotated[
    str | None,
    typer.Option(
        help="School calendar whose non-school days the job skips (see `belltower calendars`).",
        envvar="BELLTOWER_DEFAULT_CALENDAR",
        show_envvar=True,
    ),
]
PreviewCalendarOpt = Annotated[
    str | None,
    typer.Option(
        "--calendar",
        help="School calendar whose non-school days to apply (read through the API).",
    ),
]
OnNonSchoolDayOpt = Annotated[
    str,
    typer.Option(
        help="On a non-school day of --calendar: skip, or next_school_day (same local time)."
    ),
]


SCHEDULE_OPTIONS: tuple[tuple[str, Any, Any], ...] = (
    ("every", EveryOpt, None),
    ("cron", CronOpt, None),
    ("daily_at", DailyAtOpt, None),
    ("weekly", WeeklyOpt, None),
    ("monthly", MonthlyOpt, None),
    ("at", AtOpt, None),
    ("rrule", RRuleOpt, None),
    ("weekdays", WeekdaysOpt, None),
    ("once_at", OnceAtOpt, None),
    ("on_demand", OnDemandOpt, False),
    ("tz", TzOpt, "UTC"),
    ("start", StartOpt, None),
    ("end", EndOpt, None),
    ("window", WindowOpt, None),
    ("jitter", JitterOpt, None),
    ("dst_gap", DstGapOpt, None),
    ("dst_repeat", DstRepeatOpt, None),
    ("calendar", CalendarOpt, None),
    ("on_non_school_day", OnNonSchoolDayOpt, "skip"),
)
"""The schedule flags in the order ``--help`` lists them: name, typer option, default."""

Command = Callable[..., None]


def with_schedule_flags(calendar: Any = CalendarOpt) -> Callable[[Command], Command]:
    """Give a command the schedule flags in place of its ``schedule: ScheduleFlags`` parameter.

    typer reads a command's options from its signature, so the command typer registers has one
    parameter per flag (declared once, in SCHEDULE_OPTIONS); it calls the command with them
    gathered into one ScheduleFlags. ``calendar`` is the ``--calendar`` option, whose help and
    env var differ between defining a job and previewing a schedule."""
    options = [
        inspect.Parameter(
            name,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            annotation=calendar if name == "calendar" else annotation,
            default=default,
        )
        for name, annotation, default in SCHEDULE_OPTIONS
    ]
    names = [p.name for p in options]
    if set(names) != {f.name for f in fields(ScheduleFlags)} - {"default_calendar"}:
        raise TypeError("SCHEDULE_OPTIONS and ScheduleFlags name different flags")

    def decorate(command: Command) -> Command:
        signature = inspect.signature(command, eval_str=True)
        params = list(signature.parameters.values())
        at = [p.name for p in params].index("schedule")
        declared = signature.replace(parameters=[*params[:at], *options, *params[at + 1 :]])

        @functools.wraps(command)
        def with_flags(**kwargs: Any) -> None:
            flags = {name: kwargs.pop(name) for name in names}
            default_calendar = os.environ.get("BELLTOWER_DEFAULT_CALENDAR")
            command(**kwargs, schedule=ScheduleFlags(**flags, default_calendar=default_calendar))

        with_flags.__signature__ = declared  # type: ignore[attr-defined]
        with_flags.__annotations__ = {
            p.name: p.annotation for p in declared.parameters.values()
        } | {"return": None}
        return with_flags

    return decorate
