"""Stable spreading (Jenkins' ``H``): a cron field or a time of day written ``H`` takes a value
picked from a hash of the job's id, so 500 nightly jobs written ``H 2 * * *`` start across the
hour instead of all at 02:00, and each job keeps its minute across restarts, replicas and
export/import (the id travels with the job).

Forms, in any cron field (seconds, minute, hour, day of month, month, day of week):

- ``H``: one value in the field's range (day of month 1-28, so every month has it);
- ``H(a-b)``: one value from ``a`` to ``b``;
- ``H/n`` and ``H(a-b)/n``: every ``n`` from a hashed offset below ``n`` (``H/15`` in the
  minute is e.g. ``7-59/15``: 07, 22, 37, 52).

In a time of day (daily, weekly and monthly schedules): ``02:H`` (hour 2, hashed minute),
``H:30``, ``H:H``, ``H(1-5):H``; ``H2:H`` reads as ``02:H``.

The stored schedule keeps the ``H``; :func:`resolve` turns it into plain values for one job
key just before compiling. Each field and each time has its own slot in the hash, so a job's
minute and hour are not the same number.
"""

from __future__ import annotations

import hashlib
import re

import msgspec

from ..errors import InvalidInput
from .model import TIMES_FORM, Cron, Daily, Monthly, Schedule, Weekly

_TOKEN = re.compile(r"H(?:\((\d{1,2})-(\d{1,2})\))?(?:/(\d{1,2}))?\Z")
_HASHED = re.compile(r"H(?:[(/]|\Z)")
"""A cron list item that asks for spreading (``THU`` and ``MARCH`` do not: ``H`` leads)."""
_TIME = re.compile(
    r"(?P<hour>H\(\d{1,2}-\d{1,2}\)|H\d{1,2}|H|\d{1,2}):(?P<minute>H\(\d{1,2}-\d{1,2}\)|H|\d{2})\Z"
)
_CRON_RANGES_5 = ((0, 59), (0, 23), (1, 28), (1, 12), (0, 6))
_CRON_RANGES_6 = ((0, 59), *_CRON_RANGES_5)
_CRON_NAMES_5 = ("minute", "hour", "day of month", "month", "day of week")
_CRON_NAMES_6 = ("second", *_CRON_NAMES_5)

HASH_FORM = (
    "H (a value picked from the job's id), H(a-b), H/n or H(a-b)/n, e.g. 'H 2 * * *' or "
    "'H/15 * * * *'"
)
HASH_TIME_FORM = f"{TIMES_FORM}; H for a spread hour or minute, e.g. 02:H or H(1-5):H"


def is_spread(schedule: Schedule) -> bool:
    """Whether the schedule has an ``H`` anywhere (then it is compiled per job)."""
    rule = schedule.rule
    if isinstance(rule, Cron):
        return any(_hashed(field) for field in rule.expr.split())
    if isinstance(rule, Daily | Weekly | Monthly):
        return any("H" in t for t in rule.times)
    return False


def is_spread_time(text: str) -> bool:
    return "H" in text and _TIME.match(text.strip()) is not None


def _hashed(field: str) -> bool:
    return any(_HASHED.match(part) for part in field.split(","))


def resolve(schedule: Schedule, key: str) -> Schedule:
    """The schedule with every ``H`` replaced by its value for ``key`` (a job id); a schedule
    without ``H`` is returned as it is. Refuses a malformed ``H`` naming the field."""
    if not is_spread(schedule):
        return schedule
    rule = schedule.rule
    if isinstance(rule, Cron):
        return msgspec.structs.replace(schedule, rule=Cron(expr=resolve_cron(rule.expr, key)))
    assert isinstance(rule, Daily | Weekly | Monthly)
    field = "daily_at" if isinstance(rule, Daily) else "at"
    times = [resolve_time(t, key, i, field) for i, t in enumerate(rule.times)]
    return msgspec.structs.replace(schedule, rule=msgspec.structs.replace(rule, times=times))


def resolve_cron(expr: str, key: str) -> str:
    fields = expr.split()
    if len(fields) not in (5, 6):
        return expr  # cronsim names the real fault
    ranges, names = (
        (_CRON_RANGES_5, _CRON_NAMES_5) if len(fields) == 5 else (_CRON_RANGES_6, _CRON_NAMES_6)
    )
    out = []
    for slot, (text, bounds, name) in enumerate(zip(fields, ranges, names, strict=True)):
        if not _hashed(text):
            out.append(text)
            continue
        out.append(
            ",".join(
                _resolve_token(part, bounds, name, key, slot) if _HASHED.match(part) else part
                for part in text.split(",")
            )
        )
    return " ".join(out)


def _resolve_token(text: str, bounds: tuple[int, int], name: str, key: str, slot: int) -> str:
    match = _TOKEN.match(text)
    if not match:
        raise InvalidInput("cron", f"{text!r} in the {name} field is not a spread value", HASH_FORM)
    low, high = bounds
    if match[1] is not None:
        low, high = int(match[1]), int(match[2])
        if not bounds[0] <= low <= high <= bounds[1]:
            raise InvalidInput(
                "cron",
                f"{text!r}: the {name} range must lie within {bounds[0]}-{bounds[1]}",
                HASH_FORM,
            )
    step = int(match[3]) if match[3] else None
    if step is not None:
        if not 1 <= step <= high - low + 1:
            raise InvalidInput(
                "cron", f"{text!r}: step {step} does not fit the {name} range", HASH_FORM
            )
        return f"{low + pick(key, slot, step)}-{high}/{step}"
    return str(low + pick(key, slot, high - low + 1))


def resolve_time(text: str, key: str, index: int, field: str) -> str:
    """``02:H`` -> ``02:37`` for this key; a plain time is returned as it is."""
    value = text.strip()
    if "H" not in value:
        return text
    match = _TIME.match(value)
    if not match:
        raise InvalidInput(field, f"{text!r} is not a time of day", HASH_TIME_FORM)
    hour = _time_part(match["hour"], (0, 23), key, 100 + 2 * index, text, field)
    minute = _time_part(match["minute"], (0, 59), key, 101 + 2 * index, text, field)
    return f"{hour:02d}:{minute:02d}"


def _time_part(
    part: str, bounds: tuple[int, int], key: str, slot: int, text: str, field: str
) -> int:
    if part.startswith("H("):
        low, high = (int(n) for n in part[2:-1].split("-"))
        if not bounds[0] <= low <= high <= bounds[1]:
            raise InvalidInput(field, f"{text!r}: {part} is out of range", HASH_TIME_FORM)
        return low + pick(key, slot, high - low + 1)
    if part == "H":
        return bounds[0] + pick(key, slot, bounds[1] - bounds[0] + 1)
    number = int(part.removeprefix("H"))
    if not bounds[0] <= number <= bounds[1]:
        raise InvalidInput(field, f"{text!r} is not a time of day", HASH_TIME_FORM)
    return number


def pick(key: str, slot: int, size: int) -> int:
    """A number below ``size``, the same for the same key and slot on every machine."""
    digest = hashlib.sha256(f"{key}\x00{slot}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % size


__all__ = ["HASH_FORM", "HASH_TIME_FORM", "is_spread", "is_spread_time", "pick", "resolve"]
