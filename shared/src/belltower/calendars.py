"""School calendars' non-school days, as people type them and as iCalendar files hold them.

Pure parsing, shared by the CLI (which reads the file or URL) and tests: the scheduler only ever
receives a list of dates. iCalendar is read by the ``icalendar`` package, recurring holidays are
expanded by dateutil's rrule within a horizon.
"""

from __future__ import annotations

import urllib.request
from datetime import date, datetime, timedelta
from pathlib import Path

from dateutil import rrule as _rrule

from .errors import InvalidInput

DAYS_FORM = (
    "dates as YYYY-MM-DD, or ranges YYYY-MM-DD..YYYY-MM-DD (both ends included), "
    "e.g. 2026-12-24 or 2026-12-21..2027-01-01"
)
ICS_FORM = "an iCalendar (.ics) file or an http(s) URL of one, with VEVENTs for the non-school days"
MAX_DAYS = 5_000
"""More days than this in one request is surely a mistake (a range typed the wrong way round)."""
DAILY_OR_COARSER = frozenset({"DAILY", "WEEKLY", "MONTHLY", "YEARLY"})


def parse_days(items: list[str], field: str = "days") -> list[date]:
    """``2026-12-24`` or ``2026-12-21..2027-01-01`` items into the sorted distinct days."""
    out: set[date] = set()
    for raw in items:
        for part in raw.split(","):
            text = part.strip()
            if not text:
                continue
            first, sep, last = text.partition("..")
            try:
                begin = date.fromisoformat(first.strip())
                end = date.fromisoformat(last.strip()) if sep else begin
            except ValueError:
                raise InvalidInput(field, f"{text!r} is not a date or a range", DAYS_FORM) from None
            if end < begin:
                raise InvalidInput(field, f"{text!r} ends before it starts", DAYS_FORM)
            out.update(begin + timedelta(days=i) for i in range((end - begin).days + 1))
            if len(out) > MAX_DAYS:
                raise InvalidInput(field, f"more than {MAX_DAYS} days", DAYS_FORM)
    if not out:
        raise InvalidInput(field, "no day given", DAYS_FORM)
    return sorted(out)


def read_ics(source: str, timeout_s: float = 30.0) -> bytes:
    """The bytes of an .ics file path or http(s) URL."""
    if source.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(source, timeout=timeout_s) as response:
                return response.read()
        except OSError as exc:
            raise InvalidInput("ics", f"could not fetch {source}: {exc}", ICS_FORM) from None
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise InvalidInput("ics", f"could not read {source}: {exc.strerror}", ICS_FORM) from None


def days_from_ics(
    data: bytes, *, since: date, horizon_days: int = 3 * 366
) -> list[tuple[date, str]]:
    """Every day covered by an event of the calendar, with the event's summary as its label.

    All-day events cover their start to the day before DTEND (iCalendar's end is exclusive);
    timed events cover the days they touch. Recurring events (RRULE, less EXDATE) are expanded
    from ``since`` up to ``horizon_days`` later; one-off events are kept wherever they fall.
    """
    import icalendar

    try:
        cal = icalendar.Calendar.from_ical(data)
        events = list(cal.walk("VEVENT"))
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise InvalidInput("ics", f"is not an iCalendar file: {exc}", ICS_FORM) from None
    if not events:
        raise InvalidInput("ics", "has no events (VEVENT)", ICS_FORM)
    until = since + timedelta(days=horizon_days)
    out: dict[date, str] = {}
    for event in events:
        try:
            start = event.decoded("DTSTART")
        except KeyError:
            raise InvalidInput(
                "ics", f"event {event.get('SUMMARY', '?')!r} has no DTSTART", ICS_FORM
            ) from None
        label = str(event.get("SUMMARY", "")).strip()[:200]
        length = _length(event, start)
        for first in _starts(event, start, since, until):
            for day in _covered(first, length):
                out.setdefault(day, label)
    return sorted(out.items())


def _length(event, start: date | datetime) -> timedelta:
    if "DTEND" in event:
        length = max(event.decoded("DTEND") - start, timedelta(0))
    elif "DURATION" in event:
        length = event.decoded("DURATION")
    else:
        length = timedelta(days=1) if not isinstance(start, datetime) else timedelta(0)
    if length > timedelta(days=MAX_DAYS):
        raise InvalidInput(
            "ics", f"event {event.get('SUMMARY', '?')!r} lasts more than {MAX_DAYS} days", ICS_FORM
        )
    return length


def _starts(event, start: date | datetime, since: date, until: date) -> list[date | datetime]:
    rule = event.get("RRULE")
    if rule is None:
        return [start]
    freq = [str(f).upper() for f in rule.get("FREQ", [])]
    if not set(freq) <= DAILY_OR_COARSER:
        # Finer rules would expand into millions of starts within the horizon.
        raise InvalidInput(
            "ics",
            f"event {event.get('SUMMARY', '?')!r} repeats {', '.join(freq).lower()}",
            "events that repeat daily, weekly, monthly or yearly",
        )
    naive = start if isinstance(start, datetime) else datetime.combine(start, datetime.min.time())
    naive = naive.replace(tzinfo=None)
    text = rule.to_ical().decode()
    try:
        expanded = _rrule.rrulestr(text, dtstart=naive, ignoretz=True)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(
            "ics", f"event {event.get('SUMMARY', '?')!r} has a bad RRULE: {exc}", ICS_FORM
        ) from None
    excluded = _exdates(event)
    low = datetime.combine(since, datetime.min.time())
    high = datetime.combine(until, datetime.min.time())
    found = [t for t in expanded.between(low, high, inc=True) if t.date() not in excluded]
    return [t if isinstance(start, datetime) else t.date() for t in found]


def _exdates(event) -> set[date]:
    raw = event.get("EXDATE")
    if raw is None:
        return set()
    out: set[date] = set()
    for group in raw if isinstance(raw, list) else [raw]:
        for item in group.dts:
            value = item.dt
            out.add(value.date() if isinstance(value, datetime) else value)
    return out


def _covered(first: date | datetime, length: timedelta) -> list[date]:
    if isinstance(first, datetime):
        last = (first + length - timedelta(microseconds=1)) if length else first
        begin, end = first.date(), last.date()
    else:
        begin = first
        end = first + timedelta(days=max(length.days, 1) - 1)
    return [begin + timedelta(days=i) for i in range((end - begin).days + 1)]
