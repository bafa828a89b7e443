"""Stable spreading (Jenkins' ``H``): values picked from the job id, the same on every call and
machine, different across jobs, within the field's range, and refused clearly when malformed."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

import pytest
from cronsim import CronSim

from belltower.errors import InvalidInput
from belltower.schedule import Cron, Daily, Schedule, compile_schedule, is_spread, parse_times
from belltower.schedule.spread import pick, resolve, resolve_cron, resolve_time

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def test_the_same_job_gets_the_same_minute_every_time() -> None:
    job = "0b4c0d2e-6a44-4f0f-9b1c-6b7c8d9e0f11"
    first = resolve_cron("H 2 * * *", job)
    assert first == resolve_cron("H 2 * * *", job)
    minute = int(first.split()[0])
    assert first == f"{minute} 2 * * *" and 0 <= minute <= 59
    # pinned: the pick is sha256-based, so it is the same on every machine and release
    assert (
        pick(job, 0, 60)
        == int.from_bytes(hashlib.sha256(f"{job}\x000".encode()).digest()[:8], "big") % 60
    )


def test_five_hundred_nightly_jobs_spread_across_the_hour() -> None:
    minutes = [int(resolve_cron("H 2 * * *", str(uuid.uuid4())).split()[0]) for _ in range(500)]
    assert len(set(minutes)) >= 55, "500 jobs use most of the 60 minutes"
    assert max(minutes.count(m) for m in set(minutes)) <= 25, "no minute gets a crowd"


@pytest.mark.parametrize(
    ("expr", "check"),
    [
        ("H(0-29) 3 * * *", lambda f: 0 <= int(f[0]) <= 29),
        ("H/15 * * * *", lambda f: f[0].endswith("-59/15") and 0 <= int(f[0].split("-")[0]) < 15),
        ("0 H(8-16) * * mon-fri", lambda f: 8 <= int(f[1]) <= 16 and f[4] == "mon-fri"),
        ("0 0 H * *", lambda f: 1 <= int(f[2]) <= 28),
        ("0 0 1 H *", lambda f: 1 <= int(f[3]) <= 12),
        ("0 0 * * H", lambda f: 0 <= int(f[4]) <= 6),
        ("H H * * *", lambda f: 0 <= int(f[0]) <= 59 and 0 <= int(f[1]) <= 23),
        ("H 30 7 * * *", lambda f: 0 <= int(f[0]) <= 59 and f[1:] == ["30", "7", "*", "*", "*"]),
    ],
)
def test_each_form_resolves_inside_its_range_and_cronsim_accepts_it(expr, check) -> None:
    for key in ("a", "b", "c", str(uuid.uuid4())):
        resolved = resolve_cron(expr, key)
        assert check(resolved.split()), resolved
        CronSim(resolved, T0)  # the oracle parses what the engine will run


def test_names_that_contain_an_h_are_not_spread() -> None:
    assert not is_spread(Schedule(rule=Cron(expr="0 7 * * THU")))
    assert resolve_cron("0 7 * MAR THU", "k") == "0 7 * MAR THU"
    assert is_spread(Schedule(rule=Cron(expr="H 7 * * THU")))


def test_the_hour_and_minute_of_one_job_are_picked_separately() -> None:
    pairs = {tuple(resolve_cron("H H * * *", str(i)).split()[:2]) for i in range(200)}
    assert sum(1 for m, h in pairs if int(m) == int(h)) < 30


@pytest.mark.parametrize(
    ("text", "ok"),
    [("02:H", lambda h, m: h == 2), ("H:30", lambda h, m: m == 30), ("H2:H", lambda h, m: h == 2),
     ("H(1-5):H", lambda h, m: 1 <= h <= 5), ("H:H", lambda h, m: True)],
)  # fmt: skip
def test_times_of_day_take_h_in_the_hour_or_minute(text, ok) -> None:
    assert parse_times(text, "daily_at") == [text]
    for key in ("x", "y", "z"):
        hour, minute = (int(n) for n in resolve_time(text, key, 0, "daily_at").split(":"))
        assert 0 <= hour <= 23 and 0 <= minute <= 59 and ok(hour, minute)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("H(50-70) * * * *", "the minute range must lie within 0-59"),
        ("H/99 * * * *", "step 99 does not fit the minute range"),
        ("H(5-1) * * * *", "the minute range must lie within 0-59"),
        ("0 H(0-30) * * *", "the hour range must lie within 0-23"),
    ],
)
def test_a_malformed_h_is_refused_naming_the_field(expr, message) -> None:
    with pytest.raises(InvalidInput) as refused:
        compile_schedule(Schedule(rule=Cron(expr=expr)), spread_key="k")
    assert refused.value.field == "cron"
    assert message in refused.value.reason
    assert "H(a-b)" in (refused.value.accepted or "")


@pytest.mark.parametrize("text", ["24:H", "H:60", "H(20-30):H", "H:7", "HH:00"])
def test_a_malformed_spread_time_is_refused(text) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_times(text, "daily_at") if text in ("H:7", "HH:00") else resolve_time(
            text, "k", 0, "daily_at"
        )
    assert refused.value.field == "daily_at"


def test_a_compiled_schedule_runs_at_the_picked_instants_and_says_so() -> None:
    schedule = Schedule(rule=Daily(times=["02:H"]), tz="America/New_York")
    job = "6f1f5a52-2d6a-4f47-8f8c-1f2e3d4c5b6a"
    compiled = compile_schedule(schedule, spread_key=job)
    minute = int(resolve(schedule, job).rule.times[0].split(":")[1])  # type: ignore[union-attr]
    runs = compiled.upcoming(T0, 3)
    assert [r.astimezone(compiled.tzinfo).strftime("%H:%M") for r in runs] == [
        f"02:{minute:02d}"
    ] * 3
    assert compiled.spread_key == job
    assert f"H picked: daily 02:{minute:02d}" in compiled.describe()
    assert schedule.rule.times == ["02:H"], "the stored schedule keeps its H"  # type: ignore[union-attr]
    plain = compile_schedule(Schedule(rule=Daily(times=["02:00"])), spread_key=job)
    assert plain.spread_key == "", "a schedule without H is shared by every job"
