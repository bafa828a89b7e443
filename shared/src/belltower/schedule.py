"""The schedule engine: what a schedule is, how it is validated, and when it fires next.

Pure logic with no I/O, shared by the scheduler (dispatch), the CLI (validation before a request
is sent) and previews. Cron expressions are evaluated by cronsim, which follows Debian cron's
daylight-saving rules: a local time inside the spring-forward gap fires once at the end of the
gap, a local time inside the repeated autumn hour fires once, on its first pass. "Daily at" is
cron underneath, so it follows the same rules; intervals count elapsed time and ignore DST.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import msgspec
from cronsim import CronSim, CronSimError

from .errors import InvalidInput

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CRON_DOW = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DURATION = re.compile(r"(\d+)\s*(d|h|m|s)", re.IGNORECASE)
_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")

EVERY_FORM = "a number with a unit, e.g. 30s, 5m, 2h, 1d or 1h30m; at least 1s"
CRON_FORM = (
    "5 fields 'minute hour day-of-month month day-of-week', or 6 with seconds first, "
    "e.g. '*/5 * * * *' or '0 30 7 * * mon-fri'"
)
TIME_FORM = "HH:MM on a 24-hour clock, e.g. 07:30"
WEEKDAYS_FORM = "a comma-separated list of mon, tue, wed, thu, fri, sat, sun"
TZ_FORM = "an IANA time zone name, e.g. America/New_York or Europe/London"
DATETIME_FORM = (
    "ISO 8601, e.g. 2026-09-01T07:30 (in the schedule's time zone) or 2026-09-01T07:30:00+02:00"
)


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


class Once(msgspec.Struct, tag="once", tag_field="kind"):
    """A single run at one instant."""

    at: datetime


Rule = Every | Cron | Daily | Once


class Schedule(msgspec.Struct, kw_only=True):
    """When a job runs: a rule, the time zone it is read in, and optional start and end bounds."""

    rule: Rule
    tz: str = "UTC"
    start: datetime | None = None
    end: datetime | None = None


# ---------------------------------------------------------------------------------------------
# Parsing of the forms people type


def parse_every(text: str) -> int:
    """``30s``, ``5m``, ``1h30m``, ``2d`` or a bare number of seconds, into whole seconds."""
    value = text.strip()
    if value.isdigit():
        seconds = int(value)
    else:
        parts = _DURATION.findall(value)
        if not parts or _DURATION.sub("", value).strip():
            raise InvalidInput("every", f"{text!r} is not a duration", EVERY_FORM)
        unit = {"d": 86400, "h": 3600, "m": 60, "s": 1}
        seconds = sum(int(n) * unit[u.lower()] for n, u in parts)
    if seconds < 1:
        raise InvalidInput("every", f"{text!r} is shorter than one second", EVERY_FORM)
    return seconds


def parse_weekdays(text: str) -> list[str]:
    days = [d.strip().lower()[:3] for d in text.split(",") if d.strip()]
    bad = [d for d in days if d not in WEEKDAYS]
    if not days or bad:
        raise InvalidInput("weekdays", f"{text!r} is not a list of weekdays", WEEKDAYS_FORM)
    return sorted(set(days), key=WEEKDAYS.index)


def zone(name: str, field: str = "tz") -> ZoneInfo:
    try:
        return _zone(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidInput(field, f"unknown time zone {name!r}", TZ_FORM) from None


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    if not name or name not in _known_zones():
        raise ZoneInfoNotFoundError(name)
    return ZoneInfo(name)


@lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones()) | {"UTC"}


def parse_datetime(text: str, tz: str = "UTC", field: str = "at") -> datetime:
    """An ISO 8601 date or date-time; without an offset it is read in ``tz``."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(field, f"{text!r} is not a date-time", DATETIME_FORM) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone(tz))
    return value


# ---------------------------------------------------------------------------------------------
# Validation and evaluation


@dataclass(frozen=True, slots=True)
class CompiledSchedule:
    """A validated schedule, ready to answer "when next?" in microseconds."""

    schedule: Schedule
    tzinfo: ZoneInfo
    crons: tuple[str, ...]

    def next_after(self, after: datetime) -> datetime | None:
        """The first occurrence strictly after ``after``, in UTC, or None when there is none left."""
        sched = self.schedule
        if sched.start is not None and after < sched.start:
            after = sched.start - timedelta(microseconds=1)
        rule = sched.rule
        found: datetime | None
        if isinstance(rule, Every):
            anchor = sched.start or _EPOCH
            elapsed = (after - anchor).total_seconds()
            steps = int(elapsed // rule.seconds) + 1
            found = anchor + timedelta(seconds=steps * rule.seconds)
            while found <= after:  # float rounding near a boundary
                found += timedelta(seconds=rule.seconds)
        elif isinstance(rule, Once):
            found = rule.at if rule.at > after else None
        else:
            local = after.astimezone(self.tzinfo)
            found = min(next(CronSim(expr, local)) for expr in self.crons)
        if found is None or (sched.end is not None and found > sched.end):
            return None
        return found.astimezone(UTC)

    def upcoming(self, after: datetime, count: int) -> list[datetime]:
        out: list[datetime] = []
        cursor = after
        while len(out) < count:
            nxt = self.next_after(cursor)
            if nxt is None:
                break
            out.append(nxt)
            cursor = nxt
        return out

    def describe(self) -> str:
        return describe(self.schedule)


def compile_schedule(schedule: Schedule) -> CompiledSchedule:
    """Validate a schedule and prepare it for evaluation; raises InvalidInput naming the field."""
    tzinfo = zone(schedule.tz)
    for name in ("start", "end"):
        value = getattr(schedule, name)
        if value is not None and value.tzinfo is None:
            raise InvalidInput(name, "has no time zone offset", DATETIME_FORM)
    if schedule.start and schedule.end and schedule.end <= schedule.start:
        raise InvalidInput(
            "end",
            f"{schedule.end.isoformat()} is not after start {schedule.start.isoformat()}: "
            "the job could never run",
            "an end later than the start",
        )
    rule = schedule.rule
    crons: tuple[str, ...] = ()
    if isinstance(rule, Every):
        if rule.seconds < 1:
            raise InvalidInput(
                "every", f"{rule.seconds} seconds is shorter than one second", EVERY_FORM
            )
    elif isinstance(rule, Once):
        if rule.at.tzinfo is None:
            raise InvalidInput("once_at", "has no time zone offset", DATETIME_FORM)
    elif isinstance(rule, Cron):
        crons = (_check_cron(rule.expr, tzinfo),)
    elif isinstance(rule, Daily):
        if not rule.times:
            raise InvalidInput("daily_at", "no time given", TIME_FORM)
        days = rule.weekdays
        if days is not None:
            bad = [d for d in days if d not in WEEKDAYS]
            if not days or bad:
                raise InvalidInput("weekdays", f"{days!r} is not a list of weekdays", WEEKDAYS_FORM)
        dow = ",".join(str(_CRON_DOW[d]) for d in days) if days else "*"
        exprs = []
        for text in rule.times:
            match = _HHMM.match(text.strip())
            if not match:
                raise InvalidInput("daily_at", f"{text!r} is not a time of day", TIME_FORM)
            exprs.append(f"{int(match[2])} {int(match[1])} * * {dow}")
        crons = tuple(dict.fromkeys(exprs))
    compiled = CompiledSchedule(schedule=schedule, tzinfo=tzinfo, crons=crons)
    return compiled


def _check_cron(expr: str, tzinfo: ZoneInfo) -> str:
    text = " ".join(expr.split())
    try:
        CronSim(text, datetime(2000, 1, 1, tzinfo=tzinfo))
    except CronSimError as exc:
        reason = str(exc).rstrip(".")
        if "day-of-month" in reason and _valid_without_month(text):
            reason = (
                "that day of the month never occurs in the months given, so the job could never run"
            )
        raise InvalidInput(
            "cron", f"{expr!r} is not a valid cron expression: {reason}", CRON_FORM
        ) from None
    return text


def _valid_without_month(text: str) -> bool:
    fields = text.split()
    month = len(fields) - 2
    try:
        CronSim(" ".join([*fields[:month], "*", fields[-1]]), datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError:
        return False
    return True


def describe(schedule: Schedule) -> str:
    """The schedule in words, as the jobs list shows it."""
    rule = schedule.rule
    tz = f" ({schedule.tz})" if schedule.tz != "UTC" else " (UTC)"
    if isinstance(rule, Every):
        return "every " + _words(rule.seconds)
    if isinstance(rule, Once):
        return "once at " + rule.at.astimezone(zone(schedule.tz)).isoformat()
    if isinstance(rule, Cron):
        return f"cron '{rule.expr}'{tz}"
    days = f" on {', '.join(rule.weekdays)}" if rule.weekdays else ""
    return f"daily at {', '.join(rule.times)}{days}{tz}"


def _words(seconds: int) -> str:
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}" + ("s" if n != 1 else "") if n != 1 else unit
    return f"{seconds} seconds" if seconds != 1 else "second"


schedule_encoder = msgspec.json.Encoder()
schedule_decoder = msgspec.json.Decoder(Schedule)
