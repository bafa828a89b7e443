"""A schedule as the CLI's flags and the console's form give it: text fields, read and checked
into a Schedule. One object, so `jobs create`, `schedule preview` and the console's job form
refuse the same things with the same messages (naming the flag)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidInput
from .compile import compile_schedule
from .model import (
    DST_GAP_FORM,
    DST_REPEAT_FORM,
    JITTER_FORM,
    ON_DEMAND_FORM,
    Cron,
    Daily,
    Every,
    Once,
    OnDemand,
    RRule,
    Rule,
    Schedule,
    Weekly,
)
from .parse import (
    parse_datetime,
    parse_every,
    parse_monthly,
    parse_times,
    parse_weekdays,
    parse_window,
    zone,
)

KIND_FLAGS = ("every", "cron", "daily_at", "weekly", "monthly", "rrule", "once_at")
"""The flags that each give a schedule its rule: exactly one of them, or ``on_demand``."""


@dataclass(frozen=True, kw_only=True)
class ScheduleFlags:
    """The schedule flags as typed, before they are read. ``default_calendar`` is the site's
    default calendar (``BELLTOWER_DEFAULT_CALENDAR``): a ``calendar`` equal to it was not asked
    for, so an on-demand schedule drops it instead of refusing it."""

    every: str | None = None
    cron: str | None = None
    daily_at: str | None = None
    weekly: str | None = None
    monthly: str | None = None
    at: str | None = None
    rrule: str | None = None
    weekdays: str | None = None
    once_at: str | None = None
    on_demand: bool = False
    tz: str = "UTC"
    start: str | None = None
    end: str | None = None
    window: str | None = None
    jitter: str | None = None
    dst_gap: str | None = None
    dst_repeat: str | None = None
    calendar: str | None = None
    on_non_school_day: str = "skip"
    default_calendar: str | None = None

    def build(self) -> Schedule:
        """The schedule the flags describe, validated; raises InvalidInput naming the flag."""
        kinds = [name for name in KIND_FLAGS if getattr(self, name)]
        if self.on_demand:
            return self._on_demand(kinds)
        given = kinds
        if len(given) != 1:
            raise InvalidInput(
                "schedule",
                "give exactly one of --every, --cron, --daily-at, --weekly, --monthly, --rrule, "
                "--once-at, --on-demand" + (f" (got {', '.join(given)})" if given else ""),
                "--every 30s | --cron '0 7 * * mon-fri' | --daily-at 07:30 [--weekdays mon,wed] | "
                "--weekly mon,wed --at 07:30 | --monthly 2nd-tue --at 07:30 | "
                "--rrule 'FREQ=DAILY;BYHOUR=7' | --once-at 2026-09-01T07:30 | --on-demand",
            )
        if self.at and not (self.weekly or self.monthly):
            raise InvalidInput(
                "at", "only goes with --weekly or --monthly", "--weekly mon --at 07:30"
            )
        if (self.weekly or self.monthly) and not self.at:
            raise InvalidInput(
                "at", f"--{given[0]} needs the times it runs at", "--at 07:30 or --at 07:30,12:00"
            )
        tz = self.tz
        zone(tz)
        day_filter: list[str] | None = None
        if self.weekdays and not self.daily_at:
            day_filter = parse_weekdays(self.weekdays)
        rule = self._rule()
        for name, value, form in (
            ("dst_gap", self.dst_gap, DST_GAP_FORM),
            ("dst_repeat", self.dst_repeat, DST_REPEAT_FORM),
        ):
            if value is not None and not value.strip():
                raise InvalidInput(name, "is empty", form)
        calendar = self.calendar
        schedule = Schedule(
            rule=rule,
            tz=tz,
            start=parse_datetime(self.start, tz, field="start") if self.start else None,
            end=parse_datetime(self.end, tz, field="end") if self.end else None,
            window=parse_window(self.window) if self.window else None,
            weekdays=day_filter,
            jitter_s=parse_every(self.jitter, "jitter", JITTER_FORM) if self.jitter else 0,
            dst_gap=self.dst_gap.strip().lower() if self.dst_gap else None,
            dst_repeat=self.dst_repeat.strip().lower() if self.dst_repeat else None,
            calendar=calendar.strip() if calendar and calendar.strip() else None,
            on_non_school_day=_choice(self.on_non_school_day),
        )
        if schedule.on_non_school_day != "skip" and schedule.calendar is None:
            raise InvalidInput(
                "on_non_school_day",
                "only goes with --calendar",
                "--calendar NAME --on-non-school-day next_school_day",
            )
        compile_schedule(schedule)
        return schedule

    def _rule(self) -> Rule:
        if self.every:
            return Every(seconds=parse_every(self.every))
        if self.cron:
            return Cron(expr=self.cron)
        if self.daily_at:
            times = [t.strip() for t in self.daily_at.split(",") if t.strip()]
            weekdays = parse_weekdays(self.weekdays) if self.weekdays else None
            return Daily(times=times, weekdays=weekdays)
        if self.weekly:
            return Weekly(
                weekdays=parse_weekdays(self.weekly, "weekly"),
                times=parse_times(self.at or "", "at"),
            )
        if self.monthly:
            return parse_monthly(self.monthly, parse_times(self.at or "", "at"))
        if self.rrule:
            return RRule(rule=self.rrule)
        return Once(at=parse_datetime(self.once_at or "", self.tz, field="once_at"))

    def _on_demand(self, kinds: list[str]) -> Schedule:
        """``--on-demand``: refuses every other schedule flag, naming the first one given."""
        if kinds:
            flag = "--" + kinds[0].replace("_", "-")
            raise InvalidInput(
                "on_demand",
                f"cannot be combined with {flag}: an on-demand job has no schedule of its own",
                ON_DEMAND_FORM,
            )
        calendar = self.calendar
        if calendar and calendar == self.default_calendar:
            calendar = None  # the site's default calendar, not asked for: nothing to skip
        others = {
            "start": self.start,
            "end": self.end,
            "weekdays": self.weekdays,
            "at": self.at,
            "window": self.window,
            "jitter": self.jitter,
            "dst_gap": self.dst_gap,
            "dst_repeat": self.dst_repeat,
        }
        extra = [name for name, value in others.items() if value] + (
            ["calendar"] if calendar else []
        )
        if _choice(self.on_non_school_day) != "skip":
            extra.append("on_non_school_day")
        if extra:
            flag = "--" + extra[0].replace("_", "-")
            raise InvalidInput(
                extra[0],
                f"{flag} does not apply to --on-demand: the job has no occurrences of its own to "
                "bound or filter",
                ON_DEMAND_FORM,
            )
        zone(self.tz)
        schedule = Schedule(rule=OnDemand(), tz=self.tz)
        compile_schedule(schedule)
        return schedule


def _choice(text: str) -> str:
    return text.strip().lower().replace("-", "_")
