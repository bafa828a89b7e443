"""A schedule in words, as lists, previews and error messages show it."""

from __future__ import annotations

from .model import ON_DEMAND_TEXT, Cron, Every, Monthly, Once, OnDemand, RRule, Schedule, Weekly
from .parse import _monthly_fields, _rrule_text, zone


def describe(schedule: Schedule) -> str:
    """The schedule in words, as the jobs list shows it."""
    rule = schedule.rule
    if isinstance(rule, OnDemand):
        return ON_DEMAND_TEXT
    tz = f" ({schedule.tz})"
    extras = ""
    if schedule.window is not None:
        extras += f", between {schedule.window.start} and {schedule.window.end}"
    if schedule.weekdays:
        extras += f", only on {', '.join(schedule.weekdays)}"
    if schedule.jitter_s:
        extras += f", jitter up to {_words(schedule.jitter_s)}"
    if schedule.calendar:
        action = (
            "moved to the next school day"
            if schedule.on_non_school_day == "next_school_day"
            else "skipped"
        )
        extras += f", non-school days of {schedule.calendar!r} {action}"
    if isinstance(rule, Every):
        return "every " + _words(rule.seconds) + extras
    if isinstance(rule, Once):
        return "once at " + rule.at.astimezone(zone(schedule.tz)).isoformat() + extras
    if isinstance(rule, Cron):
        return f"cron '{rule.expr}'{tz}{extras}"
    if isinstance(rule, Weekly):
        return f"weekly on {', '.join(rule.weekdays)} at {', '.join(rule.times)}{tz}{extras}"
    if isinstance(rule, Monthly):
        _, _, label = _monthly_fields(rule)
        return f"monthly on the {label} at {', '.join(rule.times)}{tz}{extras}"
    if isinstance(rule, RRule):
        return f"rrule '{_rrule_text(rule.rule)}'{tz}{extras}"
    days = f" on {', '.join(rule.weekdays)}" if rule.weekdays else ""
    return f"daily at {', '.join(rule.times)}{days}{tz}{extras}"


def _words(seconds: int) -> str:
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}" + ("s" if n != 1 else "") if n != 1 else unit
    return f"{seconds} seconds" if seconds != 1 else "second"
