"""The engine against independent oracles, across many zones and both DST transitions.

croniter (for cron lines) and dateutil's rrule (for weekly and monthly rules) say which local
wall-clock times match; this file turns those into instants by brute force over the zone's own
conversions, applying the DST policy as the README states it. Nothing here calls the engine's
DST code, cronsim or the engine's cron translation.
"""

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from croniter import croniter
from dateutil import rrule
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from belltower.schedule import (
    WEEKDAYS,
    Cron,
    Monthly,
    RRule,
    Schedule,
    Weekly,
    compile_schedule,
)

ZONES = [
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",  # 30-minute DST
    "America/Santiago",
    "Asia/Kolkata",  # no DST, +05:30
    "Pacific/Chatham",  # +12:45 / +13:45
    "Europe/Dublin",  # "negative" DST in tzdata
    "America/St_Johns",
    "UTC",
]
COUNT = 6
SETTINGS = settings(max_examples=70, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@lru_cache(maxsize=64)
def transitions(zone: str, year: int) -> tuple[datetime, ...]:
    """Instants (to the minute) where the zone's UTC offset changes during ``year``."""
    tz = ZoneInfo(zone)
    out = []
    t = datetime(year, 1, 1, tzinfo=UTC)
    prev = t.astimezone(tz).utcoffset()
    while t.year == year:
        nxt = t + timedelta(hours=1)
        off = nxt.astimezone(tz).utcoffset()
        if off != prev:
            m = t
            while m.astimezone(tz).utcoffset() == prev:
                m += timedelta(minutes=1)
            out.append(m)
            prev = off
        t = nxt
    return tuple(out)


@st.composite
def starts(draw: st.DrawFn, zone: str) -> tuple[datetime, list[int]]:
    """A start, mostly within a day and a half before a DST transition of the zone, and the
    local hours around that transition (where gap and repeated-hour rules matter)."""
    year = draw(st.integers(2024, 2030))
    near = transitions(zone, year)
    if near and draw(st.integers(0, 4)) > 0:
        pivot = draw(st.sampled_from(near))
        tz = ZoneInfo(zone)
        hot = sorted(
            {(pivot + timedelta(minutes=m)).astimezone(tz).hour for m in (-61, -1, 0, 1, 61)}
        )
        return pivot - timedelta(minutes=draw(st.integers(0, 36 * 60))), hot
    start = datetime(year, 1, 1, tzinfo=UTC) + timedelta(minutes=draw(st.integers(0, 525_000)))
    return start, []


def offsets_near(wall: datetime, tz: ZoneInfo) -> set[timedelta]:
    """The UTC offsets the zone uses within a day of ``wall``."""
    return {
        (wall + timedelta(hours=h)).replace(tzinfo=UTC).astimezone(tz).utcoffset() or timedelta(0)
        for h in range(-30, 31, 3)
    }


def instants(wall: datetime, tz: ZoneInfo) -> list[datetime]:
    """Every UTC instant whose local time in ``tz`` is ``wall``, found by trying each offset."""
    out = set()
    for offset in offsets_near(wall, tz):
        u = (wall - offset).replace(tzinfo=UTC)
        if u.astimezone(tz).replace(tzinfo=None) == wall:
            out.add(u)
    return sorted(out)


def end_of_gap(wall: datetime, tz: ZoneInfo) -> datetime:
    """The first instant whose local time is later than ``wall`` (which the clock skipped)."""
    u = (wall - max(offsets_near(wall, tz)) - timedelta(hours=1)).replace(tzinfo=UTC, second=0)
    while u.astimezone(tz).replace(tzinfo=None) <= wall:
        u += timedelta(minutes=1)
    while (u - timedelta(seconds=1)).astimezone(tz).replace(tzinfo=None) > wall:
        u -= timedelta(seconds=1)
    return u


def expected(walls, tz: ZoneInfo, after: datetime, gap: str, repeat: str) -> list[datetime]:  # type: ignore[no-untyped-def]
    """The instants the README promises for a stream of matching wall times."""
    out: list[datetime] = []
    for wall in walls:
        found = instants(wall, tz)
        if not found:
            chosen = [end_of_gap(wall, tz)] if gap == "run" else []
        elif len(found) == 1:
            chosen = found
        else:
            chosen = {"first": found[:1], "second": found[1:], "both": found}[repeat]
        for t in chosen:
            if t > after and t not in out:
                out.append(t)
        if len(out) >= COUNT:
            out = sorted(out)[:COUNT]
            if wall.replace(tzinfo=UTC) > out[-1] + timedelta(days=1):
                break
    return sorted(out)[:COUNT]


MINUTES = st.sampled_from(["*", "*/15", "0", "30", "0,30", "5-10", "45", "*/20"])
HOURS = st.sampled_from(["*", "*/2", "0", "1", "2", "3", "1-3", "0,12", "23", "*/5"])
SECONDS = st.sampled_from(["0", "30", "0,30", "*/20"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    zone=st.sampled_from(ZONES),
    minute=MINUTES,
    hour=st.one_of(HOURS, st.just("hot")),
    dom=st.sampled_from(["*", "*", "1", "15", "31", "L"][:5]),
    dow=st.sampled_from(["*", "*", "1-5", "0", "6", "2,4"]),
    seconds=st.one_of(st.none(), SECONDS),
    gap=st.sampled_from([None, "run", "skip"]),
    repeat=st.sampled_from([None, "first", "second", "both"]),
)
def test_cron_matches_croniter(  # type: ignore[no-untyped-def]
    data, zone, minute, hour, dom, dow, seconds, gap, repeat
) -> None:
    if dom != "*" and dow != "*":
        dom = "*"  # croniter and cron differ on day-of-month OR day-of-week; keep to one
    after, hot = data.draw(starts(zone))
    if hour == "hot":
        hour = str(data.draw(st.sampled_from(hot))) if hot else "2"
    expr = f"{minute} {hour} {dom} * {dow}"
    if seconds is not None:
        expr = f"{seconds} {expr}"
    tz = ZoneInfo(zone)
    sched = compile_schedule(
        Schedule(rule=Cron(expr=expr), tz=zone, dst_gap=gap, dst_repeat=repeat)
    )
    wild = minute.startswith("*") or hour.startswith("*")
    policy_gap = gap or ("skip" if wild else "run")
    policy_repeat = repeat or ("both" if wild else "first")
    start_wall = (after - timedelta(hours=4)).astimezone(tz).replace(tzinfo=None)
    oracle = croniter(expr, start_wall, second_at_beginning=True)
    walls = (oracle.get_next(datetime) for _ in range(2000))
    want = expected(walls, tz, after, policy_gap, policy_repeat)
    assert sched.upcoming(after, COUNT) == want, expr


def _rrule_walls(rule: rrule.rrule, after: datetime, tz: ZoneInfo):  # type: ignore[no-untyped-def]
    start_wall = (after - timedelta(hours=4)).astimezone(tz).replace(tzinfo=None)
    return rule.xafter(start_wall, count=200)


TIMES = st.lists(
    st.tuples(st.integers(0, 23), st.sampled_from([0, 15, 30, 45])), min_size=1, max_size=3
)


@SETTINGS
@given(
    data=st.data(),
    zone=st.sampled_from(ZONES),
    days=st.sets(st.integers(0, 6), min_size=1, max_size=7),
    times=TIMES,
    gap=st.sampled_from([None, "run", "skip"]),
    repeat=st.sampled_from([None, "first", "second", "both"]),
)
def test_weekly_matches_rrule(data, zone, days, times, gap, repeat) -> None:  # type: ignore[no-untyped-def]
    tz = ZoneInfo(zone)
    after, hot = data.draw(starts(zone))
    if hot:
        times = [(data.draw(st.sampled_from(hot)), m) for _, m in times]
    sched = compile_schedule(
        Schedule(
            rule=Weekly(
                weekdays=[WEEKDAYS[d] for d in sorted(days)],
                times=[f"{h:02d}:{m:02d}" for h, m in times],
            ),
            tz=zone,
            dst_gap=gap,
            dst_repeat=repeat,
        )
    )
    oracle = rrule.rrule(
        rrule.WEEKLY,
        dtstart=datetime(2000, 1, 3),
        byweekday=sorted(days),
        byhour=sorted({h for h, _ in times}),
        byminute=sorted({m for _, m in times}),
        bysecond=0,
    )
    walls = [w for w in _rrule_walls(oracle, after, tz) if (w.hour, w.minute) in set(times)]
    want = expected(walls, tz, after, gap or "run", repeat or "first")
    assert sched.upcoming(after, COUNT) == want


@SETTINGS
@given(
    data=st.data(),
    zone=st.sampled_from(ZONES),
    which=st.one_of(
        st.tuples(st.just("day"), st.sampled_from([1, 2, 15, 28, 29, 30, 31, -1])),
        st.tuples(st.sampled_from([1, 2, 3, 4, 5, -1]), st.integers(0, 6)),
    ),
    hour=st.integers(0, 23),
    minute=st.sampled_from([0, 30]),
)
def test_monthly_matches_rrule(data, zone, which, hour, minute) -> None:  # type: ignore[no-untyped-def]
    tz = ZoneInfo(zone)
    after, _ = data.draw(starts(zone))
    at = [f"{hour:02d}:{minute:02d}"]
    if which[0] == "day":
        rule = Monthly(times=at, day=which[1])
        by = {"bymonthday": which[1]}
    else:
        rule = Monthly(times=at, nth=which[0], weekday=WEEKDAYS[which[1]])
        by = {"byweekday": rrule.weekday(which[1], which[0])}
    sched = compile_schedule(Schedule(rule=rule, tz=zone))
    oracle = rrule.rrule(
        rrule.MONTHLY, dtstart=datetime(2000, 1, 1), byhour=hour, byminute=minute, bysecond=0, **by
    )
    want = expected(_rrule_walls(oracle, after, tz), tz, after, "run", "first")
    assert sched.upcoming(after, COUNT) == want


@SETTINGS
@given(
    data=st.data(),
    zone=st.sampled_from(ZONES),
    freq=st.sampled_from(["MINUTELY", "HOURLY", "DAILY", "WEEKLY"]),
    interval=st.integers(1, 40),
)
def test_rrule_far_from_its_start_keeps_its_alignment(data, zone, freq, interval) -> None:  # type: ignore[no-untyped-def]
    """The engine moves DTSTART forward for speed; the wall times must stay dateutil's own."""
    tz = ZoneInfo(zone)
    after, _ = data.draw(starts(zone))
    reach = {"MINUTELY": 3, "HOURLY": 90, "DAILY": 2000, "WEEKLY": 5000}[freq]
    back = timedelta(seconds=data.draw(st.integers(0, reach * 86400)))
    anchor = (after - back).astimezone(tz).replace(tzinfo=None, microsecond=0)
    text = f"FREQ={freq};INTERVAL={interval}"
    sched = compile_schedule(
        Schedule(rule=RRule(rule=text), tz=zone, start=anchor.replace(tzinfo=tz))
    )
    oracle = rrule.rrulestr(text, dtstart=anchor)
    start_wall = (after - timedelta(hours=4)).astimezone(tz).replace(tzinfo=None)
    walls = oracle.xafter(start_wall, count=400)
    wild = freq in ("MINUTELY", "HOURLY")
    want = expected(walls, tz, after, "skip" if wild else "run", "both" if wild else "first")
    start = sched.schedule.start
    assert start is not None
    assert sched.upcoming(after, COUNT) == [t for t in want if t >= start][:COUNT]
