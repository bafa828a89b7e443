"""School calendars end to end: the real CLI in a subprocess talks to a real console over HTTP with
an API token, the console over real NATS to the scheduler's operations, which store calendars in
real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from belltower.api import JobTypeInfo
from belltower.rpc import Endpoint
from belltower.subjects import CATALOG_BUCKET
from belltower_scheduler.catalog import Catalog
from belltower_scheduler.dispatcher import Dispatcher
from belltower_scheduler.operations import Operations
from belltower_scheduler.store import Store
from tests.helpers.console import cli_env, issue_token, running_console

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent / "belltower"
NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)

ICS = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//Belltower tests//EN
BEGIN:VEVENT
UID:winter@example.org
SUMMARY:Winter break
DTSTART;VALUE=DATE:20261221
DTEND;VALUE=DATE:20270102
END:VEVENT
BEGIN:VEVENT
UID:mlk@example.org
SUMMARY:MLK Day
DTSTART;VALUE=DATE:20270118
END:VEVENT
BEGIN:VEVENT
UID:founders@example.org
SUMMARY:Founders' Day
DTSTART;VALUE=DATE:20250305
RRULE:FREQ=YEARLY
EXDATE;VALUE=DATE:20280305
END:VEVENT
END:VCALENDAR
"""


@pytest.fixture
async def scheduler_api(nc, pool) -> AsyncIterator[None]:
    """The scheduler's operations served over NATS, as the scheduler process serves them."""
    store = Store(pool)
    js = nc.jetstream()
    bucket = await js.key_value(CATALOG_BUCKET)
    canary = JobTypeInfo(
        name="system.canary", pool="notifier", title="Canary", description="", params_schema={}
    )
    await bucket.put("pool.notifier", msgspec.json.encode([canary]))
    endpoint = Endpoint("scheduler", Operations)
    endpoint.attach(Operations(store, Dispatcher(store, js, clock=lambda: NOW), Catalog(js)))
    subs = []
    for op in endpoint.operations:

        async def handler(msg, op=op) -> None:  # type: ignore[no-untyped-def]
            await msg.respond(await endpoint.answer(op, msg.data))

        subs.append(await nc.subscribe(op.subject, cb=handler))
    yield
    for sub in subs:
        await sub.unsubscribe()


@pytest.fixture
def door(settings, tmp_path) -> Iterator[dict[str, str]]:  # type: ignore[no-untyped-def]
    """A console over the test's NATS and database, and the CLI's URL and token for it."""
    env = {
        "PATH": "/usr/bin:/bin",
        "BELLTOWER_NATS_URL": settings.nats_url,
        "BELLTOWER_DATABASE_URL": settings.database_url,
    }
    with running_console(env, tmp_path / "console.log") as url:
        yield cli_env(url, issue_token(url))


async def belltower(door: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(BIN),
        *args,
        env={**door, "PATH": "/usr/bin:/bin"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_calendars_from_the_cli_to_the_database_and_back(
    scheduler_api, door, pool, tmp_path
) -> None:
    code, out, err = await belltower(
        door, "calendars", "create", "district-2026-27", "2026-11-26..2026-11-27",
        "--label", "Thanksgiving", "--description", "Springfield USD",
    )  # fmt: skip
    assert code == 0, err
    assert "2026-11-26  Thu  Thanksgiving" in out

    ics = tmp_path / "district.ics"
    ics.write_text(ICS)
    code, out, err = await belltower(
        door, "calendars", "import", "district-2026-27", "--ics", str(ics),
        "--since", "2026-09-01", "--horizon-days", "800",
    )  # fmt: skip
    assert code == 0, err
    shown = json.loads(
        (await belltower(door, "calendars", "show", "district-2026-27", "--json"))[1]
    )
    days = {d["day"]: d["label"] for d in shown["days"]}
    assert days["2026-11-27"] == "Thanksgiving"
    assert [d for d in days if "2026-12-19" <= d <= "2027-01-03"] == [
        f"2026-12-{n}" for n in range(21, 32)
    ] + ["2027-01-01"]  # DTEND is exclusive
    assert days["2027-01-18"] == "MLK Day"
    assert "2027-03-05" in days and "2028-03-05" not in days  # recurring, less its EXDATE
    assert "2025-03-05" not in days  # before --since
    rows = await pool.fetchval(
        "SELECT count(*) FROM scheduler.non_school_days WHERE calendar = 'district-2026-27'"
    )
    assert rows == len(days)

    # A weekly Monday job on this calendar: 2027-01-18 (MLK Day) moves to Tuesday.
    code, out, err = await belltower(
        door, "jobs", "create", "--type", "system.canary", "--title", "Attendance export",
        "--weekly", "mon", "--at", "07:30", "--tz", "America/New_York",
        "--calendar", "district-2026-27", "--on-non-school-day", "next_school_day", "--json",
    )  # fmt: skip
    assert code == 0, err
    job = json.loads(out)
    assert job["schedule"]["calendar"] == "district-2026-27"
    assert job["next_run_at"] == "2026-12-07T12:30:00+00:00"
    code, out, err = await belltower(
        door, "jobs", "preview", job["id"], "--from", "2027-01-10T00:00", "--count", "2", "--json"
    )  # fmt: skip
    assert code == 0, err
    preview = json.loads(out)
    assert [(o["at"], o.get("note")) for o in preview] == [
        ("2027-01-11T07:30:00-05:00", None),
        ("2027-01-19T07:30:00-05:00", "moved to next school day from 2027-01-18"),
    ]

    # Days taken out again, the description changed: the scheduler follows at once.
    code, out, err = await belltower(
        door, "calendars", "remove-days", "district-2026-27", "2027-01-18", "2030-01-01", "--json"
    )  # fmt: skip
    assert code == 0, err
    assert "2027-01-18" not in {d["day"] for d in json.loads(out)["days"]}
    code, out, err = await belltower(
        door, "jobs", "preview", job["id"], "--from", "2027-01-17T00:00", "--count", "1", "--json"
    )  # fmt: skip
    assert [o["at"] for o in json.loads(out)] == ["2027-01-18T07:30:00-05:00"]
    code, out, err = await belltower(
        door, "calendars", "update", "district-2026-27", "--description", "Springfield USD 2026-27"
    )  # fmt: skip
    assert code == 0 and out.startswith("district-2026-27  Springfield USD 2026-27"), (out, err)
    code, _, err = await belltower(door, "calendars", "update", "nope", "--description", "x")
    assert code == 1 and "no calendar named 'nope'" in err

    # In use: not deleted. An unknown calendar: refused naming the field, nothing stored.
    code, _, err = await belltower(door, "calendars", "delete", "district-2026-27")
    assert code == 2 and "is used by 1 job" in err
    code, _, err = await belltower(
        door, "jobs", "create", "--type", "system.canary", "--title", "X",
        "--daily-at", "07:00", "--calendar", "nope",
    )  # fmt: skip
    assert code == 2 and "calendar: no calendar named 'nope'" in err
    assert await pool.fetchval("SELECT count(*) FROM scheduler.jobs") == 1


async def test_bad_calendar_input_is_refused_and_nothing_is_written(
    scheduler_api, door, pool, tmp_path
) -> None:
    code, _, err = await belltower(door, "calendars", "create", "bad name!")
    assert code == 2 and "name:" in err
    code, _, err = await belltower(door, "calendars", "create", "c1", "2026-12-31..2026-12-01")
    assert code == 2 and "days:" in err and "ends before it starts" in err
    await belltower(door, "calendars", "create", "c1")
    code, _, err = await belltower(door, "calendars", "create", "c1")
    assert code == 2 and "already exists" in err
    junk = tmp_path / "junk.ics"
    junk.write_text("this is not a calendar")
    code, _, err = await belltower(door, "calendars", "import", "c1", "--ics", str(junk))
    assert code == 2 and "ics:" in err
    code, _, err = await belltower(door, "calendars", "add-days", "nope", "2026-12-01")
    assert code == 1 and "no calendar named 'nope'" in err
    assert await pool.fetchval("SELECT count(*) FROM scheduler.non_school_days") == 0
    code, out, _ = await belltower(door, "calendars", "list")
    assert code == 0 and out.splitlines()[1].split()[:2] == ["c1", "0"]
    code, out, _ = await belltower(door, "calendars", "delete", "c1")
    assert code == 0
    assert await pool.fetchval("SELECT count(*) FROM scheduler.calendars") == 0


async def test_the_dispatcher_skips_non_school_days_and_follows_calendar_changes(nc, pool) -> None:
    import uuid
    from datetime import date, timedelta

    from belltower.schedule import Daily, Schedule
    from belltower_scheduler.store import CalendarStore, JobRow

    t0 = datetime(2030, 1, 7, 8, tzinfo=UTC)  # a Monday
    now = [t0 + timedelta(seconds=1)]
    store = Store(pool)
    await CalendarStore(pool).create("c", "", [(date(2030, 1, 8), "Snow day")], t0)
    schedule = Schedule(rule=Daily(times=["08:00"]), calendar="c")
    row = JobRow(
        id=str(uuid.uuid4()), title="Attendance", type="system.canary", pool="notifier", params={},
        schedule=schedule, priority=500, paused=False, keep_history_days=30, timeout_s=None,
        next_run_at=t0, created_at=t0, updated_at=t0,
    )  # fmt: skip
    await store.insert_job(row)
    dispatcher = Dispatcher(store, nc.jetstream(), clock=lambda: now[0])
    await dispatcher.load()
    assert await dispatcher.tick() == 1
    assert dispatcher.entries[row.id].next_due == datetime(2030, 1, 9, 8, tzinfo=UTC)

    dispatcher.set_calendar("c", frozenset({date(2030, 1, 8), date(2030, 1, 9)}))
    assert dispatcher.entries[row.id].next_due == datetime(2030, 1, 10, 8, tzinfo=UTC)
    now[0] = datetime(2030, 1, 9, 8, 0, 1, tzinfo=UTC)
    assert await dispatcher.tick() == 0
