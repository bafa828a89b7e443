"""What a schedule is: its rules, bounds and filters as msgspec Structs, the accepted forms
error messages quote, the reasons an occurrence is skipped, and the occurrence a schedule yields."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import msgspec

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

EVERY_FORM = "a number with a unit, e.g. 30s, 5m, 2h, 1d or 1h30m; at least 1s"
CRON_FORM = (
    "5 fields 'minute hour day-of-month month day-of-week', or 6 with seconds first, "
    "e.g. '*/5 * * * *' or '0 30 7 * * mon-fri'"
)
TIME_FORM = "HH:MM on a 24-hour clock, e.g. 07:30"
TIMES_FORM = "one or more HH:MM times on a 24-hour clock, comma-separated, e.g. 07:30,12:00"
WEEKDAYS_FORM = "a comma-separated list of mon, tue, wed, thu, fri, sat, sun"
TZ_FORM = "an IANA time zone name, e.g. America/New_York or Europe/London"
DATETIME_FORM = (
    "ISO 8601, e.g. 2026-09-01T07:30 (in the schedule's time zone) or 2026-09-01T07:30:00+02:00"
)
MONTHLY_FORM = (
    "a day of the month 1-31, 'last' (the last day), or an ordinal and a weekday such as "
    "'2nd-tue' or 'last-fri' (ordinals 1st, 2nd, 3rd, 4th, 5th, last)"
)
RRULE_FORM = (
    "an iCalendar RRULE (RFC 5545) such as 'FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=7;BYMINUTE=30'; "
    "DTSTART is the schedule's start (or midnight 2000-01-01 in its time zone)"
)
WINDOW_FORM = "HH:MM-HH:MM in local time, e.g. 07:00-17:00 or 22:00-06:00 across midnight"
JITTER_FORM = "a duration such as 30s or 5m, shorter than one day"
DST_GAP_FORM = "run (once, at the end of the gap) or skip"
DST_REPEAT_FORM = "first (first pass), second (second pass) or both"
ON_DEMAND_FORM = (
    "--on-demand alone (no other schedule flag, no start, end, window, weekdays, jitter, DST "
    "choice or calendar), optionally with --after JOB to run when that job finishes"
)
ON_DEMAND_TEXT = "on demand only (run now, or after its upstream job)"
"""How an on-demand schedule is described in lists, previews and the ledger's explanations."""

HORIZON = timedelta(days=366 * 8)
"""How far ahead a schedule is searched for its next runnable occurrence before it is called dead."""


# Reasons an occurrence did not run at its nominal time, as previews and the ledger show them.
OUTSIDE_WINDOW = "outside window"
WEEKDAY_FILTERED = "weekday filtered"
NON_SCHOOL_DAY = "non-school day"
MOVED_TO_NEXT_SCHOOL_DAY = "moved to next school day"
DST_GAP_SKIPPED = "DST gap skipped"
BEFORE_START = "before start"
AFTER_END = "after end"
DUPLICATE = "same instant as another occurrence"


class Every(msgspec.Struct, tag="every", tag_field="kind"):
    """Every N seconds of elapsed time, counted from ``start`` (or from the Unix epoch)."""

    seconds: int


class Cron(msgspec.Struct, tag="cron", tag_field="kind"):
    """A cron expression with 5 fields, or 6 with seconds first, in the schedule's time zone."""

    expr: str


class Daily(msgspec.Struct, tag="daily", tag_field="kind"):
    """At one or more local times, on every day or on the listed weekdays."""

    times: list[str]
    weekdays: list[str] | None = None


class Weekly(msgspec.Struct, tag="weekly", tag_field="kind"):
    """On the listed weekdays, at one or more local times."""

    weekdays: list[str]
    times: list[str]


class Monthly(msgspec.Struct, tag="monthly", tag_field="kind", omit_defaults=True):
    """Once a month at one or more local times: on ``day`` (1-31, -1 for the last day), or on
    the ``nth`` (1-5, -1 for the last) ``weekday`` of the month. A day the month lacks is skipped."""

    times: list[str]
    day: int | None = None
    nth: int | None = None
    weekday: str | None = None


class RRule(msgspec.Struct, tag="rrule", tag_field="kind"):
    """An iCalendar recurrence rule, expanded in the schedule's time zone from its start."""

    rule: str


class Once(msgspec.Struct, tag="once", tag_field="kind"):
    """A single run at one instant."""

    at: datetime


class OnDemand(msgspec.Struct, tag="on_demand", tag_field="kind"):
    """No occurrence of its own: the job runs only when started by hand (run now) or, with a
    chaining policy (``after``), when its upstream job finishes."""


Rule = Every | Cron | Daily | Weekly | Monthly | RRule | Once | OnDemand


class Window(msgspec.Struct):
    """Local times of day between which occurrences may run (both ends included); may cross midnight."""

    start: str
    end: str


class Schedule(msgspec.Struct, kw_only=True):
    """When a job runs: a rule, the time zone it is read in, bounds, filters and DST policy.

    ``calendar`` names a school calendar whose non-school days are skipped or, with
    ``on_non_school_day`` "next_school_day", moved to the same local time on the next school day.
    The engine itself takes the days as a set (``compile_schedule(non_school_days=...)``)."""

    rule: Rule
    tz: str = "UTC"
    start: datetime | None = None
    end: datetime | None = None
    window: Window | None = None
    weekdays: list[str] | None = None
    jitter_s: int = 0
    dst_gap: str | None = None
    dst_repeat: str | None = None
    calendar: str | None = None
    on_non_school_day: str = "skip"


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One candidate the schedule produced: when it runs (or would have), from which rule, and
    why it does not run if ``skipped`` is set. ``nominal`` is the rule's instant before jitter or
    a move to the next school day; ``note`` explains an adjustment (DST, move) of a runnable one."""

    at: datetime
    nominal: datetime
    rule: str
    skipped: str | None = None
    note: str | None = None


schedule_encoder = msgspec.json.Encoder()
schedule_decoder = msgspec.json.Decoder(Schedule)
