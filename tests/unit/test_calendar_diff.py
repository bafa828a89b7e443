"""The calendar what-if (belltower.calendar_diff): runs skipped, moved or added by a change."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from belltower.calendar_diff import changed_days, diff_runs
from belltower.schedule import Daily, Every, Schedule, compile_schedule

pytestmark = pytest.mark.unit

SINCE = datetime(2026, 11, 23, tzinfo=UTC)  # a Monday
UNTIL = datetime(2026, 12, 1, tzinfo=UTC)


def school_mornings(on: str = "skip") -> Schedule:
    return Schedule(
        rule=Daily(times=["08:00"], weekdays=["mon", "tue", "wed", "thu", "fri"]),
        tz="America/New_York",
        calendar="district",
        on_non_school_day=on,
    )


def test_a_snow_day_skips_the_run_and_a_day_given_back_adds_one() -> None:
    old = {date(2026, 11, 26), date(2026, 11, 27)}
    new = changed_days(old, [date(2026, 11, 24)], [date(2026, 11, 27)], replace=False)
    assert new == {date(2026, 11, 24), date(2026, 11, 26)}
    before = compile_schedule(school_mornings(), non_school_days=old)
    after = compile_schedule(school_mornings(), non_school_days=new)
    outcome = diff_runs(before, after, SINCE, UNTIL)
    assert [(c.change, c.nominal.date()) for c in outcome.changes] == [
        ("skipped", date(2026, 11, 24)),
        ("added", date(2026, 11, 27)),
    ]
    skipped, added = outcome.changes
    assert skipped.before == datetime(2026, 11, 24, 13, tzinfo=UTC) and skipped.after is None
    assert skipped.reason and "non-school" in skipped.reason
    assert added.after == datetime(2026, 11, 27, 13, tzinfo=UTC) and not outcome.truncated
    assert diff_runs(before, before, SINCE, UNTIL).changes == [], "no change, no difference"


def test_a_job_that_runs_on_the_next_school_day_is_moved() -> None:
    sched = school_mornings("next_school_day")
    before = compile_schedule(sched, non_school_days=set())
    after = compile_schedule(sched, non_school_days={date(2026, 11, 25)})
    outcome = diff_runs(before, after, SINCE, UNTIL)
    thu = datetime(2026, 11, 26, 13, tzinfo=UTC)
    assert [(c.change, c.before, c.after) for c in outcome.changes] == [
        ("moved", datetime(2026, 11, 25, 13, tzinfo=UTC), thu),
        ("skipped", thu, None),
    ], "Wednesday's run moves onto Thursday's, which the engine runs once"
    assert "moved onto the same time" in (outcome.changes[1].reason or "")


def test_replace_keeps_only_the_new_days_and_busy_schedules_stop_at_the_bound() -> None:
    assert changed_days({date(2026, 1, 1)}, [date(2027, 1, 1)], [], replace=True) == {
        date(2027, 1, 1)
    }
    every = Schedule(rule=Every(seconds=1), calendar="district")
    before = compile_schedule(every)
    after = compile_schedule(every, non_school_days={date(2026, 11, 30)})
    assert diff_runs(before, after, SINCE, UNTIL).truncated
