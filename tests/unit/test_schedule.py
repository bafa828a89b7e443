"""The schedule engine: what users type, what is refused, and when jobs fire (DST included)."""

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim
from hypothesis import given, settings
from hypothesis import strategies as st

from belltower.errors import InvalidInput
from belltower.schedule import (
    Cron,
    Daily,
    Every,
    Once,
    Schedule,
    compile_schedule,
    describe,
    parse_datetime,
    parse_every,
    parse_weekdays,
)

NY = ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("5m", 300), ("1h30m", 5400), ("2d", 172800), ("45", 45)]
)
def test_every_accepts_durations(text: str, seconds: int) -> None:
    assert parse_every(text) == seconds


@pytest.mark.parametrize("text", ["", "0s", "5x", "m5", "1h and more", "-3s"])
def test_every_refuses_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_every(text)
    assert err.value.field == "every"
    assert "30s" in (err.value.accepted or "")


def test_weekdays_are_normalised_and_checked() -> None:
    assert parse_weekdays("fri, Mon,wednesday") == ["mon", "wed", "fri"]
    with pytest.raises(InvalidInput, match="weekdays"):
        parse_weekdays("mon,funday")


def test_naive_datetimes_are_read_in_the_schedule_zone() -> None:
    assert parse_datetime("2026-03-01T07:30", "America/New_York") == datetime(
        2026, 3, 1, 7, 30, tzinfo=NY
    )
    assert parse_datetime("2026-03-01T07:30+02:00").utcoffset() == timedelta(hours=2)
    with pytest.raises(InvalidInput, match="start"):
        parse_datetime("yesterday", field="start")


@pytest.mark.parametrize(
    ("expr", "words"),
    [
        ("61 * * * *", "Bad minute"),
        ("* 24 * * *", "Bad hour"),
        ("0 0 30 2 *", "never occurs"),
        ("* * *", "Wrong number of fields"),
    ],
)
def test_bad_cron_is_refused_naming_the_field(expr: str, words: str) -> None:
    with pytest.raises(InvalidInput) as err:
        compile_schedule(Schedule(rule=Cron(expr=expr)))
    assert err.value.field == "cron"
    assert words in err.value.message


def test_a_cron_expression_is_judged_alike_every_time_and_in_every_zone() -> None:
    """The check is cached per expression: a refusal is not, and the zone plays no part."""
    for tz in ("UTC", "America/New_York", "UTC"):
        with pytest.raises(InvalidInput, match="Bad minute"):
            compile_schedule(Schedule(rule=Cron(expr="61 * * * *"), tz=tz))
        compiled = compile_schedule(Schedule(rule=Cron(expr="30  7 * * 1-5"), tz=tz))
        assert compiled.crons == ("30 7 * * 1-5",)


def test_unknown_zone_and_end_before_start_are_refused() -> None:
    with pytest.raises(InvalidInput) as err:
        compile_schedule(Schedule(rule=Every(seconds=5), tz="Mars/Olympus_Mons"))
    assert err.value.field == "tz"
    with pytest.raises(InvalidInput) as err:
        compile_schedule(
            Schedule(rule=Every(seconds=5), start=utc(2026, 2, 1), end=utc(2026, 1, 1))
        )
    assert err.value.field == "end"
    assert "never run" in err.value.message


def test_every_is_aligned_to_start_and_bounded_by_end() -> None:
    sched = compile_schedule(
        Schedule(rule=Every(seconds=90), start=utc(2026, 1, 1, 8, 0, 15), end=utc(2026, 1, 1, 8, 5))
    )
    assert sched.upcoming(utc(2026, 1, 1), 10) == [
        utc(2026, 1, 1, 8, 0, 15),
        utc(2026, 1, 1, 8, 1, 45),
        utc(2026, 1, 1, 8, 3, 15),
        utc(2026, 1, 1, 8, 4, 45),
    ]


def test_every_without_start_lands_on_clock_multiples() -> None:
    sched = compile_schedule(Schedule(rule=Every(seconds=30)))
    assert sched.next_after(utc(2026, 5, 5, 10, 0, 7)) == utc(2026, 5, 5, 10, 0, 30)
    assert sched.next_after(utc(2026, 5, 5, 10, 0, 30)) == utc(2026, 5, 5, 10, 1, 0)


def test_daily_on_weekdays_in_a_zone() -> None:
    sched = compile_schedule(
        Schedule(rule=Daily(times=["07:30"], weekdays=["mon", "wed"]), tz="America/New_York")
    )
    # 2026-11-20 is a Friday.
    got = sched.upcoming(utc(2026, 11, 20), 3)
    assert [d.astimezone(NY).strftime("%a %H:%M") for d in got] == [
        "Mon 07:30",
        "Wed 07:30",
        "Mon 07:30",
    ]
    assert got[0] == utc(2026, 11, 23, 12, 30)


def test_daily_time_in_the_spring_gap_runs_once_at_the_end_of_the_gap() -> None:
    sched = compile_schedule(Schedule(rule=Daily(times=["02:30"]), tz="America/New_York"))
    got = sched.upcoming(utc(2026, 3, 7, 12), 3)
    assert [d.astimezone(NY).isoformat() for d in got] == [
        "2026-03-08T03:00:00-04:00",
        "2026-03-09T02:30:00-04:00",
        "2026-03-10T02:30:00-04:00",
    ]


def test_daily_time_in_the_repeated_autumn_hour_runs_once_on_its_first_pass() -> None:
    sched = compile_schedule(Schedule(rule=Daily(times=["01:30"]), tz="America/New_York"))
    got = sched.upcoming(utc(2026, 10, 31, 12), 2)
    assert got == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]


def test_every_ignores_dst() -> None:
    sched = compile_schedule(Schedule(rule=Every(seconds=3600), tz="America/New_York"))
    got = sched.upcoming(utc(2026, 3, 8, 5, 30), 3)
    assert [b - a for a, b in itertools.pairwise(got)] == [timedelta(hours=1)] * 2


def test_once_fires_once() -> None:
    sched = compile_schedule(Schedule(rule=Once(at=utc(2026, 9, 1, 7))))
    assert sched.upcoming(utc(2026, 1, 1), 5) == [utc(2026, 9, 1, 7)]
    assert sched.next_after(utc(2026, 9, 1, 7)) is None


def test_describe_in_words() -> None:
    assert describe(Schedule(rule=Every(seconds=30))) == "every 30 seconds"
    assert describe(Schedule(rule=Every(seconds=7200))) == "every 2 hours"
    assert describe(Schedule(rule=Every(seconds=60))) == "every minute"
    assert describe(
        Schedule(rule=Daily(times=["07:00"], weekdays=["mon", "fri"]), tz="Europe/London")
    ) == ("daily at 07:00 on mon, fri (Europe/London)")


ZONES = [
    "UTC",
    "America/New_York",
    "Europe/London",
    "Australia/Sydney",
    "Asia/Kolkata",
    "America/Santiago",
]


@settings(max_examples=150, deadline=None)
@given(
    minute=st.integers(0, 59),
    hour=st.integers(0, 23),
    dow=st.sets(st.integers(0, 6), min_size=1, max_size=7),
    zone=st.sampled_from(ZONES),
    start=st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31)),
)
def test_daily_matches_cron_oracle(
    minute: int, hour: int, dow: set[int], zone: str, start: datetime
) -> None:
    """ "Daily at HH:MM on weekdays" fires exactly when the equivalent cron line does."""
    names = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
    sched = compile_schedule(
        Schedule(
            rule=Daily(
                times=[f"{hour:02d}:{minute:02d}"], weekdays=[names[d] for d in sorted(dow)]
            ),
            tz=zone,
        )
    )
    after = start.replace(tzinfo=UTC)
    oracle = CronSim(
        f"{minute} {hour} * * {','.join(map(str, sorted(dow)))}", after.astimezone(ZoneInfo(zone))
    )
    assert sched.upcoming(after, 5) == [next(oracle).astimezone(UTC) for _ in range(5)]


@settings(max_examples=150, deadline=None)
@given(
    seconds=st.integers(1, 10 * 86400),
    offset=st.integers(0, 10**8),
    start=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)),
)
def test_every_is_periodic_and_strictly_increasing(
    seconds: int, offset: int, start: datetime
) -> None:
    anchor = start.replace(tzinfo=UTC)
    sched = compile_schedule(Schedule(rule=Every(seconds=seconds), start=anchor))
    after = anchor + timedelta(seconds=offset, microseconds=offset % 999_983)
    got = sched.upcoming(after, 4)
    assert got[0] > after
    assert got[0] - after <= timedelta(seconds=seconds)
    assert all(b - a == timedelta(seconds=seconds) for a, b in itertools.pairwise(got))
    assert all((t - anchor).total_seconds() % seconds == 0 for t in got)
