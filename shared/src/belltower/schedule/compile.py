"""Validation: a Schedule checked field by field and turned into a CompiledSchedule, or refused
with InvalidInput naming the field (including a schedule that could never run)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError
from dateutil import rrule as _rrule

from ..errors import InvalidInput
from . import spread
from .describe import describe
from .engine import CompiledSchedule, _Source
from .model import (
    CRON_FORM,
    DATETIME_FORM,
    DST_GAP_FORM,
    DST_REPEAT_FORM,
    EVERY_FORM,
    HORIZON,
    JITTER_FORM,
    ON_DEMAND_FORM,
    RRULE_FORM,
    TIME_FORM,
    TIMES_FORM,
    WEEKDAYS,
    WEEKDAYS_FORM,
    WINDOW_FORM,
    Cron,
    Daily,
    Every,
    Monthly,
    Once,
    OnDemand,
    RRule,
    Rule,
    Schedule,
    Weekly,
    schedule_encoder,
)
from .parse import _CRON_DOW, _HHMM, _monthly_fields, _rrule_text, zone

_UNTIL = re.compile(r"UNTIL=(\d{8}(?:T\d{6})?)Z", re.IGNORECASE)
_DEFAULT_RRULE_ANCHOR = datetime(2000, 1, 1)
_REFERENCE = datetime(2000, 1, 1, tzinfo=UTC)


def compile_schedule(
    schedule: Schedule,
    *,
    non_school_days: Iterable[date] = (),
    on_non_school_day: str | None = None,
    seed: str | None = None,
    spread_key: str = "",
) -> CompiledSchedule:
    """Validate a schedule and prepare it for evaluation; raises InvalidInput naming the field.

    A schedule that can never run (no runnable occurrence within ``HORIZON`` of its start) is
    refused with the reason. ``seed`` keys the jitter: replicas
    given the same seed compute the same instants (default: the schedule itself).
    ``spread_key`` (the job's id) picks the values of ``H`` fields (:mod:`.spread`).
    """
    tzinfo = zone(schedule.tz)
    if isinstance(schedule.rule, OnDemand):
        _check_on_demand(schedule, on_non_school_day)
    non_school_days = frozenset(non_school_days)
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
    if schedule.dst_gap not in (None, "run", "skip"):
        raise InvalidInput("dst_gap", f"{schedule.dst_gap!r} is not a DST policy", DST_GAP_FORM)
    if schedule.dst_repeat not in (None, "first", "second", "both"):
        raise InvalidInput(
            "dst_repeat", f"{schedule.dst_repeat!r} is not a DST policy", DST_REPEAT_FORM
        )
    on_non_school_day = on_non_school_day or schedule.on_non_school_day
    if on_non_school_day not in ("skip", "next_school_day"):
        raise InvalidInput(
            "on_non_school_day",
            f"{on_non_school_day!r} is not a choice",
            "skip or next_school_day",
        )
    if not 0 <= schedule.jitter_s < 86400:
        raise InvalidInput("jitter", f"{schedule.jitter_s} seconds is out of range", JITTER_FORM)
    window = None
    if schedule.window is not None:
        window = (_time(schedule.window.start, "window"), _time(schedule.window.end, "window"))
        if window[0] == window[1]:
            raise InvalidInput(
                "window", "starts and ends at the same time, so nothing can run", WINDOW_FORM
            )
    weekdays = None
    if schedule.weekdays is not None:
        weekdays = frozenset(WEEKDAYS.index(d) for d in _weekdays(schedule.weekdays, "weekdays"))
    sources = _sources(spread.resolve(schedule, spread_key), tzinfo)
    compiled = CompiledSchedule(
        schedule=schedule,
        tzinfo=tzinfo,
        crons=tuple(s.cron for s in sources if s.cron is not None),
        sources=sources,
        window=window,
        weekdays=weekdays,
        non_school_days=non_school_days,
        on_non_school_day=on_non_school_day,
        seed=seed
        if seed is not None
        else (schedule_encoder.encode(schedule).decode() if schedule.jitter_s else ""),
        spread_key=spread_key if spread.is_spread(schedule) else "",
        _jitter=timedelta(seconds=schedule.jitter_s),
        fast=_plain(schedule, sources, non_school_days),
    )
    _check_possible(compiled)
    return compiled


def _check_on_demand(schedule: Schedule, on_non_school_day: str | None) -> None:
    """Refuse what would filter or bound an on-demand schedule's occurrences: it has none, so
    such a setting would be silently meaningless."""
    given = [
        (name, value)
        for name, value in (
            ("start", schedule.start),
            ("end", schedule.end),
            ("window", schedule.window),
            ("weekdays", schedule.weekdays),
            ("jitter", schedule.jitter_s or None),
            ("dst_gap", schedule.dst_gap),
            ("dst_repeat", schedule.dst_repeat),
            ("calendar", schedule.calendar),
            (
                "on_non_school_day",
                (on_non_school_day or schedule.on_non_school_day) != "skip" or None,
            ),
        )
        if value is not None
    ]
    if given:
        name = given[0][0]
        raise InvalidInput(
            name,
            "does not apply to an on-demand schedule, which has no occurrences of its own "
            "(it runs only when started by hand or after its upstream job)",
            ON_DEMAND_FORM,
        )


def _plain(schedule: Schedule, sources: tuple[_Source, ...], non_school_days: frozenset) -> bool:
    """Whether nothing can be skipped or moved, and cron lines can go to cronsim as they are."""
    if schedule.window or schedule.weekdays or schedule.jitter_s or non_school_days:
        return False
    if schedule.dst_gap or schedule.dst_repeat:
        return False
    return all(s.cron is not None and len(s.cron.split()) == 5 for s in sources)


def _check_possible(compiled: CompiledSchedule) -> None:
    """Refuse a schedule with no runnable occurrence within ``HORIZON`` of its first possible one.

    The search starts from the schedule's own start (or a fixed reference), never from the
    clock, so a schedule accepted once still compiles when the scheduler reloads it later.
    """
    sched = compiled.schedule
    rule = sched.rule
    if isinstance(rule, OnDemand):
        return  # runs only when asked: never "could never run"
    if compiled.fast and sched.end is None and not isinstance(rule, Once):
        return  # nothing filters, nothing ends: cronsim has refused days that never occur
    if isinstance(rule, Once):
        if (sched.start and rule.at < sched.start) or (sched.end and rule.at > sched.end):
            raise InvalidInput(
                "once_at",
                f"{rule.at.isoformat()} is outside the start and end, so the job could never run",
                "a time between start and end",
            )
        reference = rule.at - timedelta(microseconds=1)
    elif sched.start is not None:
        reference = sched.start - timedelta(microseconds=1)
    elif isinstance(rule, RRule):
        reference = _DEFAULT_RRULE_ANCHOR.replace(tzinfo=compiled.tzinfo) - timedelta(
            microseconds=1
        )
    else:
        reference = _REFERENCE
    if compiled.next_runnable(reference)[0] is not None:
        return
    field_name = _to_blame(compiled, reference)
    years = HORIZON.days // 366
    since = f"of its start {sched.start.isoformat()}" if sched.start else "of any start"
    raise InvalidInput(
        field_name,
        f"{describe(sched)} has no occurrence that can run within {years} years {since}, "
        "so the job could never run",
        _possible_form(field_name),
    )


def _to_blame(compiled: CompiledSchedule, reference: datetime) -> str:
    """The field that makes a schedule impossible: a filter the rule alone would pass, else the
    end, else the rule itself."""
    sched = compiled.schedule
    if sched.window and sched.weekdays:
        no_days = dataclasses.replace(compiled, weekdays=None, fast=False)
        return "weekdays" if no_days.next_runnable(reference)[0] is not None else "window"
    if sched.window or sched.weekdays:
        bare = dataclasses.replace(compiled, window=None, weekdays=None, fast=False)
        if bare.next_runnable(reference)[0] is not None:
            return "window" if sched.window else "weekdays"
    return "end" if sched.end is not None else _rule_field(sched.rule)


def _rule_field(rule: Rule) -> str:
    return {
        Every: "every",
        Cron: "cron",
        Daily: "daily_at",
        Weekly: "weekly",
        Monthly: "monthly",
        RRule: "rrule",
        Once: "once_at",
        OnDemand: "on_demand",
    }[type(rule)]


def _possible_form(field_name: str) -> str:
    return {
        "window": f"a window that contains some of the schedule's times ({WINDOW_FORM})",
        "weekdays": f"weekdays on which the schedule has times ({WEEKDAYS_FORM})",
        "end": "an end after the first occurrence",
        "rrule": RRULE_FORM,
        "cron": CRON_FORM,
    }.get(field_name, "a schedule with a future occurrence")


def _time(text: str, field_name: str) -> time:
    match = _HHMM.match(text.strip())
    if not match:
        raise InvalidInput(field_name, f"{text!r} is not a time of day", TIME_FORM)
    return time(int(match[1]), int(match[2]))


def _weekdays(days: list[str] | None, field_name: str) -> list[str]:
    bad = [d for d in days or [] if d not in WEEKDAYS]
    if not days or bad:
        raise InvalidInput(field_name, f"{days!r} is not a list of weekdays", WEEKDAYS_FORM)
    return days


def _at_times(times: list[str], field_name: str) -> list[tuple[int, int]]:
    if not times:
        raise InvalidInput(field_name, "no time given", TIMES_FORM)
    out = []
    for text in times:
        t = _time(text, field_name)
        out.append((t.hour, t.minute))
    return list(dict.fromkeys(out))


def _sources(schedule: Schedule, tzinfo: ZoneInfo) -> tuple[_Source, ...]:
    rule = schedule.rule
    if isinstance(rule, Every):
        if rule.seconds < 1:
            raise InvalidInput(
                "every", f"{rule.seconds} seconds is shorter than one second", EVERY_FORM
            )
        return ()
    if isinstance(rule, Once):
        if rule.at.tzinfo is None:
            raise InvalidInput("once_at", "has no time zone offset", DATETIME_FORM)
        return ()
    if isinstance(rule, OnDemand):
        return ()
    if isinstance(rule, Cron):
        expr = _check_cron(rule.expr)
        fields = expr.split()
        minute, hour = fields[-5], fields[-4]
        wild = minute.startswith("*") or hour.startswith("*")
        return (_Source(f"cron '{expr}'", cron=expr, follows_wall_clock=wild),)
    if isinstance(rule, Daily):
        times = _at_times(rule.times, "daily_at")
        days = _weekdays(rule.weekdays, "weekdays") if rule.weekdays is not None else None
        dow = ",".join(str(_CRON_DOW[d]) for d in days) if days else "*"
        return tuple(_Source(f"daily {h:02d}:{m:02d}", cron=f"{m} {h} * * {dow}") for h, m in times)
    if isinstance(rule, Weekly):
        days = _weekdays(rule.weekdays, "weekly")
        times = _at_times(rule.times, "at")
        dow = ",".join(str(_CRON_DOW[d]) for d in days)
        label = ",".join(days)
        return tuple(
            _Source(f"weekly {label} {h:02d}:{m:02d}", cron=f"{m} {h} * * {dow}") for h, m in times
        )
    if isinstance(rule, Monthly):
        times = _at_times(rule.times, "at")
        dom, dow, label = _monthly_fields(rule)
        return tuple(
            _Source(f"monthly {label} {h:02d}:{m:02d}", cron=f"{m} {h} {dom} * {dow}")
            for h, m in times
        )
    if isinstance(rule, RRule):
        parsed = _parse_rrule(rule.rule, schedule, tzinfo)
        wild = parsed._freq in (_rrule.HOURLY, _rrule.MINUTELY, _rrule.SECONDLY)
        return (
            _Source(f"rrule '{_rrule_text(rule.rule)}'", rrule=parsed, follows_wall_clock=wild),
        )
    raise InvalidInput(
        "schedule",
        f"unknown rule {rule!r}",
        "every, cron, daily, weekly, monthly, rrule, once or on_demand",
    )


def _parse_rrule(text: str, schedule: Schedule, tzinfo: ZoneInfo) -> _rrule.rrule:
    """One RRULE, read as wall-clock times in the schedule's zone from its start."""
    body = _rrule_text(text)
    if not body or "\n" in text.strip() or "DTSTART" in body.upper():
        raise InvalidInput(
            "rrule", f"{text!r} is not a single RRULE (give DTSTART as the start)", RRULE_FORM
        )
    anchor = (
        schedule.start.astimezone(tzinfo).replace(tzinfo=None)
        if schedule.start
        else _DEFAULT_RRULE_ANCHOR
    )

    def local_until(match: re.Match[str]) -> str:
        raw = match[1]
        fmt = "%Y%m%dT%H%M%S" if "T" in raw.upper() else "%Y%m%d"
        instant = datetime.strptime(raw.upper(), fmt).replace(tzinfo=UTC)
        return "UNTIL=" + instant.astimezone(tzinfo).strftime("%Y%m%dT%H%M%S")

    body = _UNTIL.sub(local_until, body)
    try:
        parsed = _rrule.rrulestr(body, dtstart=anchor)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        reason = str(exc)
        if isinstance(exc, TypeError) and "freq" in reason:
            reason = "FREQ is missing"
        raise InvalidInput(
            "rrule", f"{text!r} is not a valid RRULE: {reason}", RRULE_FORM
        ) from None
    if not isinstance(parsed, _rrule.rrule):
        raise InvalidInput("rrule", f"{text!r} is not a single RRULE", RRULE_FORM)
    return parsed


def _check_cron(expr: str) -> str:
    text = " ".join(expr.split())
    _check_cron_text(text, expr)
    return text


@lru_cache(maxsize=4096)
def _check_cron_text(text: str, expr: str) -> None:
    """Whether cronsim parses ``text`` (the time zone plays no part in that), once per
    expression: a scheduler loading a million jobs compiles thousands of schedules that share
    a few thousand cron expressions in different zones. Refusals are not cached."""
    try:
        CronSim(text, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        reason = str(exc).rstrip(".")
        if "day-of-month" in reason and _valid_without_month(text):
            reason = (
                "that day of the month never occurs in the months given, so the job could never run"
            )
        raise InvalidInput(
            "cron", f"{expr!r} is not a valid cron expression: {reason}", CRON_FORM
        ) from None


def _valid_without_month(text: str) -> bool:
    fields = text.split()
    month = len(fields) - 2
    try:
        CronSim(" ".join([*fields[:month], "*", fields[-1]]), datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError:
        return False
    return True
