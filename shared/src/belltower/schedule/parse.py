"""The forms people type (durations, weekdays, times, windows, month days, zones, date-times)
read into schedule values; each refusal names the field and the accepted form."""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from ..errors import InvalidInput
from .model import (
    DATETIME_FORM,
    EVERY_FORM,
    MONTHLY_FORM,
    TIMES_FORM,
    TZ_FORM,
    WEEKDAYS,
    WEEKDAYS_FORM,
    WINDOW_FORM,
    Monthly,
    Window,
)
from .spread import HASH_TIME_FORM, is_spread_time

_CRON_DOW = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
_DURATION = re.compile(r"(\d+)\s*(d|h|m|s)", re.IGNORECASE)
_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)\Z")
_ORDINALS = {"1st": 1, "2nd": 2, "3rd": 3, "4th": 4, "5th": 5, "last": -1}


def parse_every(text: str, field: str = "every", form: str = EVERY_FORM) -> int:
    """``30s``, ``5m``, ``1h30m``, ``2d`` or a bare number of seconds, into whole seconds."""
    value = text.strip()
    if value.isdigit():
        seconds = int(value)
    else:
        parts = _DURATION.findall(value)
        if not parts or _DURATION.sub("", value).strip():
            raise InvalidInput(field, f"{text!r} is not a duration", form)
        unit = {"d": 86400, "h": 3600, "m": 60, "s": 1}
        seconds = sum(int(n) * unit[u.lower()] for n, u in parts)
    if seconds < 1:
        raise InvalidInput(field, f"{text!r} is shorter than one second", form)
    return seconds


def parse_weekdays(text: str, field: str = "weekdays") -> list[str]:
    days = [d.strip().lower()[:3] for d in text.split(",") if d.strip()]
    bad = [d for d in days if d not in WEEKDAYS]
    if not days or bad:
        raise InvalidInput(field, f"{text!r} is not a list of weekdays", WEEKDAYS_FORM)
    return sorted(set(days), key=WEEKDAYS.index)


def parse_times(text: str, field: str) -> list[str]:
    times = [t.strip() for t in text.split(",") if t.strip()]
    for t in times:
        if not _HHMM.match(t) and not is_spread_time(t):
            raise InvalidInput(field, f"{t!r} is not a time of day", HASH_TIME_FORM)
    if not times:
        raise InvalidInput(field, "no time given", TIMES_FORM)
    return times


def parse_window(text: str) -> Window:
    start, sep, end = text.partition("-")
    if not sep or not _HHMM.match(start.strip()) or not _HHMM.match(end.strip()):
        raise InvalidInput("window", f"{text!r} is not a time window", WINDOW_FORM)
    return Window(start=start.strip(), end=end.strip())


def parse_monthly(text: str, times: list[str]) -> Monthly:
    """``15``, ``last``, ``2nd-tue`` or ``last-fri`` into a Monthly rule at ``times``."""
    value = text.strip().lower()
    if value.isdigit():
        return Monthly(times=times, day=int(value))
    if value == "last":
        return Monthly(times=times, day=-1)
    nth, _, day = value.replace(" ", "-").partition("-")
    if nth in _ORDINALS and day[:3] in WEEKDAYS:
        return Monthly(times=times, nth=_ORDINALS[nth], weekday=day[:3])
    raise InvalidInput("monthly", f"{text!r} is not a day of the month", MONTHLY_FORM)


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


def _monthly_fields(rule: Monthly) -> tuple[str, str, str]:
    if rule.day is not None:
        if rule.nth is not None or rule.weekday is not None:
            raise InvalidInput("monthly", "give a day or an nth weekday, not both", MONTHLY_FORM)
        if rule.day == -1:
            return "L", "*", "last day"
        if not 1 <= rule.day <= 31:
            raise InvalidInput("monthly", f"day {rule.day} is not a day of the month", MONTHLY_FORM)
        return str(rule.day), "*", f"day {rule.day}"
    if rule.nth is None or rule.weekday not in WEEKDAYS:
        raise InvalidInput("monthly", "needs a day, or an nth and a weekday", MONTHLY_FORM)
    if rule.nth not in (1, 2, 3, 4, 5, -1):
        raise InvalidInput("monthly", f"{rule.nth} is not an ordinal", MONTHLY_FORM)
    dow = _CRON_DOW[rule.weekday]
    if rule.nth == -1:
        return "*", f"{dow}L", f"last {rule.weekday}"
    ordinal = {v: k for k, v in _ORDINALS.items()}[rule.nth]
    return "*", f"{dow}#{rule.nth}", f"{ordinal} {rule.weekday}"


def _rrule_text(text: str) -> str:
    value = " ".join(text.split())
    return value[6:] if value.upper().startswith("RRULE:") else value
