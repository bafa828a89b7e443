"""Weekly, monthly, RRULE and seconds cron; windows, weekday filters, jitter, DST policies and
refusals of schedules that can never run, with the reasons previews show."""

import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec
import pytest

from belltower.errors import InvalidInput
from belltower.schedule import (
    AFTER_END,
    BEFORE_START,
    DST_GAP_SKIPPED,
    NON_SCHOOL_DAY,
    OUTSIDE_WINDOW,
    WEEKDAY_FILTERED,
    Cron,
    Daily,
    Every,
    Monthly,
    Once,
    RRule,
    Schedule,
    Weekly,
    Window,
    compile_schedule,
    parse_monthly,
    schedule_decoder,
)

NY = ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local(times: list[datetime], tz: ZoneInfo = NY) -> list[str]:
    return [t.astimezone(tz).isoformat() for t in times]


def test_old_documents_still_decode() -> None:
    doc = b'{"rule":{"kind":"daily","times":["07:30"],"weekdays":null},"tz":"UTC","start":null,"end":null}'
    sched = schedule_decoder.decode(doc)
    assert sched.rule == Daily(times=["07:30"]) and sched.window is None and sched.jitter_s == 0


def test_weekly_on_weekdays_at_several_times() -> None:
    sched = compile_schedule(
        Schedule(
            rule=Weekly(weekdays=["tue", "thu"], times=["12:00", "07:30"]), tz="America/New_York"
        )
    )
    assert local(sched.upcoming(utc(2026, 9, 1), 4)) == [  # 2026-09-01 is a Tuesday
        "2026-09-01T07:30:00-04:00",
        "2026-09-01T12:00:00-04:00",
        "2026-09-03T07:30:00-04:00",
        "2026-09-03T12:00:00-04:00",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("15", ["2026-01-15", "2026-02-15", "2026-03-15"]),
        ("last", ["2026-01-31", "2026-02-28", "2026-03-31"]),
        ("31", ["2026-01-31", "2026-03-31", "2026-05-31"]),  # months without a 31st are skipped
        ("2nd-tue", ["2026-01-13", "2026-02-10", "2026-03-10"]),
        ("last-fri", ["2026-01-30", "2026-02-27", "2026-03-27"]),
    ],
)
def test_monthly_forms(text: str, expected: list[str]) -> None:
    sched = compile_schedule(Schedule(rule=parse_monthly(text, ["06:00"]), tz="Europe/London"))
    got = sched.upcoming(utc(2026, 1, 1), 3)
    assert [t.astimezone(ZoneInfo("Europe/London")).date().isoformat() for t in got] == expected


@pytest.mark.parametrize("text", ["0", "32", "6th-mon", "2nd-funday", "someday"])
def test_monthly_refuses_what_is_not_a_day(text: str) -> None:
    with pytest.raises(InvalidInput) as err:
        compile_schedule(Schedule(rule=parse_monthly(text, ["06:00"])))
    assert err.value.field == "monthly"
    assert "2nd-tue" in (err.value.accepted or "")


def test_cron_with_seconds() -> None:
    sched = compile_schedule(Schedule(rule=Cron(expr="15,45 30 7 * * mon")))
    assert sched.upcoming(utc(2026, 11, 30), 3) == [  # a Monday
        utc(2026, 11, 30, 7, 30, 15),
        utc(2026, 11, 30, 7, 30, 45),
        utc(2026, 12, 7, 7, 30, 15),
    ]


def test_rrule_in_a_zone_from_the_start() -> None:
    sched = compile_schedule(
        Schedule(
            rule=RRule(rule="RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=MO;BYHOUR=7;BYMINUTE=45"),
            tz="America/New_York",
            start=datetime(2026, 10, 26, tzinfo=NY),
        )
    )
    assert local(sched.upcoming(utc(2026, 1, 1), 3)) == [
        "2026-10-26T07:45:00-04:00",
        "2026-11-09T07:45:00-05:00",  # wall clock kept across the DST change
        "2026-11-23T07:45:00-05:00",
    ]


def test_rrule_until_in_utc_and_count() -> None:
    until = compile_schedule(
        Schedule(
            rule=RRule(rule="FREQ=DAILY;BYHOUR=9;UNTIL=20260103T235959Z"), start=utc(2026, 1, 1)
        )
    )
    assert until.upcoming(utc(2025, 1, 1), 10) == [utc(2026, 1, d, 9) for d in (1, 2, 3)]
    counted = compile_schedule(
        Schedule(rule=RRule(rule="FREQ=MINUTELY;INTERVAL=5;COUNT=3"), start=utc(2026, 1, 1))
    )
    assert counted.upcoming(utc(2025, 1, 1), 10) == [utc(2026, 1, 1, 0, m) for m in (0, 5, 10)]


def test_rrule_far_from_its_start_is_still_quick_and_aligned() -> None:
    sched = compile_schedule(
        Schedule(rule=RRule(rule="FREQ=MINUTELY;INTERVAL=7"), start=utc(2000, 1, 1))
    )
    got = sched.next_after(utc(2030, 6, 1))
    assert got is not None and (got - utc(2000, 1, 1)) % timedelta(minutes=7) == timedelta(0)
    assert timedelta(0) < got - utc(2030, 6, 1) <= timedelta(minutes=7)


@pytest.mark.parametrize(
    ("rule", "words"),
    [
        ("FREQ=DAYLY", "invalid 'FREQ'"),
        ("FREQ=DAILY;BYHOUR=25", "hour must be in 0..23"),
        ("BYDAY=MO", "FREQ is missing"),
        ("FREQ=WEEKLY;BYDAY=XX", "BYDAY"),
        ("DTSTART:20260101T000000\nRRULE:FREQ=DAILY", "single RRULE"),
        ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", "could never run"),
        ("FREQ=DAILY;UNTIL=19990101", "could never run"),
    ],
)
def test_bad_rrule_is_refused_naming_the_field(rule: str, words: str) -> None:
    with pytest.raises(InvalidInput) as err:
        compile_schedule(Schedule(rule=RRule(rule=rule)))
    assert err.value.field == "rrule"
    assert words in err.value.message
    assert "FREQ=WEEKLY" in (err.value.accepted or "")


def test_window_skips_with_the_reason_and_may_cross_midnight() -> None:
    sched = compile_schedule(
        Schedule(rule=Cron(expr="0 * * * *"), window=Window(start="22:00", end="01:00"))
    )
    got = sched.preview(utc(2026, 5, 1, 20, 30), 4)
    assert [(o.at.hour, o.skipped) for o in got] == [
        (21, OUTSIDE_WINDOW),
        (22, None),
        (23, None),
        (0, None),
        (1, None),
    ]


def test_weekday_filter_applies_to_any_kind() -> None:
    sched = compile_schedule(Schedule(rule=Every(seconds=86400), weekdays=["sat", "sun"]))
    got = sched.preview(utc(2026, 11, 26), 2)  # a Thursday
    assert [(o.at.strftime("%a"), o.skipped) for o in got] == [
        ("Fri", WEEKDAY_FILTERED),
        ("Sat", None),
        ("Sun", None),
    ]


def test_long_stretches_of_skips_are_jumped_over() -> None:
    sched = compile_schedule(
        Schedule(rule=Cron(expr="* * * * * *"), window=Window(start="07:00", end="07:01"))
    )
    nxt, skipped = sched.next_runnable(utc(2026, 1, 1, 8))
    assert nxt == utc(2026, 1, 2, 7)
    assert 0 < len(skipped) <= 20 and {s.skipped for s in skipped} == {OUTSIDE_WINDOW}


def test_jitter_is_deterministic_per_occurrence_and_bounded() -> None:
    def build(seed: str):  # type: ignore[no-untyped-def]
        return compile_schedule(
            Schedule(rule=Daily(times=["07:00"]), jitter_s=600, tz="America/New_York"), seed=seed
        )

    first = build("job-1").upcoming(utc(2026, 1, 1), 20)
    assert first == build("job-1").upcoming(utc(2026, 1, 1), 20)  # another replica agrees
    assert first != build("job-2").upcoming(utc(2026, 1, 1), 20)
    offsets = {
        (t.astimezone(NY) - t.astimezone(NY).replace(hour=7, minute=0, second=0, microsecond=0))
        for t in first
    }
    assert all(timedelta(0) <= o < timedelta(minutes=10) for o in offsets) and len(offsets) > 10
    # asking from just before a jittered instant finds that same instant again
    assert build("job-1").next_after(first[3] - timedelta(microseconds=1)) == first[3]


# -- DST policies on known dates: 2026-03-08 (spring forward) and 2026-11-01 (fall back), New York


def ny(rule, **kw):  # type: ignore[no-untyped-def]
    return compile_schedule(Schedule(rule=rule, tz="America/New_York", **kw))


def test_gap_default_runs_once_at_the_end_of_the_gap() -> None:
    got = ny(Daily(times=["02:30"])).preview(utc(2026, 3, 7, 12), 2)
    assert local([o.at for o in got]) == ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]
    assert got[0].skipped is None and "DST gap" in (got[0].note or "")


def test_gap_skip_policy() -> None:
    got = ny(Daily(times=["02:30"]), dst_gap="skip").preview(utc(2026, 3, 7, 12), 1)
    assert [(o.skipped, o.note) for o in got] == [
        (DST_GAP_SKIPPED, "2026-03-08T02:30:00 does not exist (DST gap)"),
        (None, None),
    ]
    assert local([got[1].at]) == ["2026-03-09T02:30:00-04:00"]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (None, ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]),
        ("first", ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]),
        ("second", ["2026-11-01T01:30:00-05:00", "2026-11-02T01:30:00-05:00"]),
        ("both", ["2026-11-01T01:30:00-04:00", "2026-11-01T01:30:00-05:00"]),
    ],
)
def test_repeated_hour_policies(policy: str | None, expected: list[str]) -> None:
    sched = ny(
        Weekly(weekdays=list(("mon", "tue", "wed", "thu", "fri", "sat", "sun")), times=["01:30"]),
        dst_repeat=policy,
    )
    assert local(sched.upcoming(utc(2026, 10, 31, 12), 2)) == expected


def test_wildcard_hour_cron_follows_the_wall_clock() -> None:
    autumn = ny(Cron(expr="30 * * * *")).upcoming(utc(2026, 11, 1, 4), 4)
    assert local(autumn) == [
        "2026-11-01T00:30:00-04:00",
        "2026-11-01T01:30:00-04:00",
        "2026-11-01T01:30:00-05:00",
        "2026-11-01T02:30:00-05:00",
    ]
    spring = ny(Cron(expr="30 * * * *")).preview(utc(2026, 3, 8, 6), 2)
    assert [(o.at.astimezone(NY).strftime("%H:%M%z"), o.skipped) for o in spring] == [
        ("01:30-0500", None),
        ("03:00-0400", DST_GAP_SKIPPED),
        ("03:30-0400", None),
    ]


def test_intervals_ignore_dst() -> None:
    got = ny(Every(seconds=1800)).upcoming(utc(2026, 11, 1, 5), 4)
    assert all(b - a == timedelta(minutes=30) for a, b in itertools.pairwise(got))


def test_half_hour_dst_of_lord_howe() -> None:
    """Lord Howe springs forward 02:00 -> 02:30 (on 2026-10-04) and falls back 02:00 -> 01:30."""
    tz = ZoneInfo("Australia/Lord_Howe")
    sched = compile_schedule(Schedule(rule=Daily(times=["02:15"]), tz="Australia/Lord_Howe"))
    got = sched.upcoming(datetime(2026, 10, 3, 12, tzinfo=tz), 2)
    assert [t.astimezone(tz).isoformat() for t in got] == [
        "2026-10-04T02:30:00+11:00",
        "2026-10-05T02:15:00+11:00",
    ]


# -- refusals


@pytest.mark.parametrize(
    ("schedule", "field", "words"),
    [
        (
            Schedule(rule=Daily(times=["03:00"]), window=Window(start="07:00", end="17:00")),
            "window",
            "never run",
        ),
        (
            Schedule(rule=Weekly(weekdays=["sat"], times=["07:00"]), weekdays=["mon"]),
            "weekdays",
            "never run",
        ),
        (
            Schedule(rule=Every(seconds=60), window=Window(start="07:00", end="07:00")),
            "window",
            "same time",
        ),
        (
            Schedule(rule=Every(seconds=7 * 86400), weekdays=["mon"], start=utc(2026, 1, 6)),
            "weekdays",
            "never run",
        ),
        (
            Schedule(
                rule=Weekly(weekdays=["sat"], times=["09:00"]),
                weekdays=["sat", "sun"],
                window=Window(start="10:00", end="12:00"),
            ),
            "window",
            "never run",
        ),
        (
            Schedule(
                rule=Weekly(weekdays=["sat"], times=["11:00"]),
                weekdays=["sun"],
                window=Window(start="10:00", end="12:00"),
            ),
            "weekdays",
            "never run",
        ),
        (
            Schedule(rule=Every(seconds=60), window=Window(start="7am", end="17:00")),
            "window",
            "not a time",
        ),
        (Schedule(rule=Every(seconds=60), dst_gap="later"), "dst_gap", "not a DST policy"),
        (Schedule(rule=Every(seconds=60), dst_repeat="twice"), "dst_repeat", "not a DST policy"),
        (Schedule(rule=Every(seconds=60), jitter_s=86400), "jitter", "out of range"),
        (Schedule(rule=Every(seconds=60), weekdays=["mon", "funday"]), "weekdays", "not a list"),
        (Schedule(rule=Every(seconds=60), tz="Europe/Atlantis"), "tz", "unknown time zone"),
        (Schedule(rule=Once(at=utc(2026, 1, 1)), start=utc(2026, 2, 1)), "once_at", "never run"),
        (
            Schedule(
                rule=Cron(expr="0 9 * * *"), start=utc(2026, 1, 1, 10), end=utc(2026, 1, 2, 8)
            ),
            "end",
            "never run",
        ),
    ],
)
def test_impossible_or_malformed_schedules_are_refused(
    schedule: Schedule, field: str, words: str
) -> None:
    with pytest.raises(InvalidInput) as err:
        compile_schedule(schedule)
    assert err.value.field == field
    assert words in err.value.message


def test_impossible_check_does_not_depend_on_the_clock() -> None:
    """A schedule already stored must still compile when the scheduler reloads it years later."""
    sched = Schedule(rule=Cron(expr="0 9 * * *"), start=utc(2020, 1, 1), end=utc(2020, 2, 1))
    assert compile_schedule(sched).next_after(utc(2026, 1, 1)) is None


# -- the dispatcher's fast path agrees with the explaining engine


@pytest.mark.parametrize(
    "rule",
    [
        Cron(expr="30 2 * * *"),
        Cron(expr="*/20 1-3 * * *"),
        Daily(times=["01:30", "02:30"]),
        Weekly(weekdays=["sun"], times=["01:00", "02:00"]),
        Monthly(times=["02:30"], nth=2, weekday="sun"),
        Every(seconds=5400),
    ],
)
def test_fast_path_equals_the_engine_across_dst(rule) -> None:  # type: ignore[no-untyped-def]
    sched = ny(rule)
    assert sched.fast
    for after in (utc(2026, 3, 7, 20), utc(2026, 10, 31, 20), utc(2026, 11, 1, 5, 45)):
        fast, engine = [], sched.upcoming(after, 12)
        cursor = after
        for _ in range(12):
            cursor = sched.next_after(cursor)
            fast.append(cursor)
        assert fast == engine


def test_non_school_days_skip_or_move() -> None:
    holidays = {date(2026, 12, 24), date(2026, 12, 25)}
    rule = Weekly(weekdays=["thu"], times=["08:00"])
    skip = compile_schedule(Schedule(rule=rule), non_school_days=holidays)
    got = skip.preview(utc(2026, 12, 20), 1)
    assert [(o.at.date().isoformat(), o.skipped) for o in got] == [
        ("2026-12-24", NON_SCHOOL_DAY),
        ("2026-12-31", None),
    ]
    move = compile_schedule(
        Schedule(rule=rule, weekdays=["mon", "tue", "wed", "thu", "fri"]),
        non_school_days=holidays,
        on_non_school_day="next_school_day",
    )
    got = move.preview(utc(2026, 12, 20), 2)
    assert [(o.at.isoformat(), o.skipped) for o in got] == [
        ("2026-12-28T08:00:00+00:00", None),  # Thu 24th and Fri 25th closed, weekend filtered
        ("2026-12-31T08:00:00+00:00", None),
    ]
    assert got[0].note == "moved to next school day from 2026-12-24"
    assert got[0].nominal == utc(2026, 12, 24, 8)


def test_new_fields_round_trip_through_json() -> None:
    sched = Schedule(
        rule=Monthly(times=["07:00"], nth=-1, weekday="fri"),
        tz="Asia/Kolkata",
        window=Window(start="06:00", end="18:00"),
        weekdays=["fri"],
        jitter_s=30,
        dst_gap="skip",
        dst_repeat="both",
    )
    assert schedule_decoder.decode(msgspec.json.encode(sched)) == sched


def test_preview_shows_a_few_occurrences_before_the_start_and_one_after_the_end() -> None:
    sched = compile_schedule(
        Schedule(
            rule=Daily(times=["07:00"]),
            start=utc(2026, 9, 1),
            end=utc(2026, 9, 2, 12),
        )
    )
    got = sched.preview(utc(2026, 8, 1), 5)
    assert [(o.at.date().isoformat(), o.skipped) for o in got] == [
        ("2026-08-01", BEFORE_START),
        ("2026-08-02", BEFORE_START),
        ("2026-08-03", BEFORE_START),
        ("2026-09-01", None),
        ("2026-09-02", None),
        ("2026-09-03", AFTER_END),
    ]
    assert sched.upcoming(utc(2026, 8, 1), 5) == [utc(2026, 9, 1, 7), utc(2026, 9, 2, 7)]


def test_a_jump_just_after_midnight_near_a_dst_change_makes_progress() -> None:
    """Skips reached back across midnight (DST lookback) must not send the search round again."""
    sched = compile_schedule(
        Schedule(rule=Cron(expr="* * * * *"), tz="America/New_York", weekdays=["mon"])
    )
    nxt, skipped = sched.next_runnable(datetime(2026, 11, 1, 0, 30, tzinfo=NY))
    assert nxt == datetime(2026, 11, 2, 0, 0, tzinfo=NY)
    assert len(skipped) == len({(s.at, s.rule) for s in skipped})  # none reported twice
