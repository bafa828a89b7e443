"""Import ICS File: insert, update and delete imported events, from a file or a URL, touching
only the events this job created."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from belltower_integration.jobs import import_ics
from tests.catalog.integrations_support import Env, open_env


@pytest.fixture
async def env(sis_database: str, tmp_batch_folder: Path, mail_sink) -> AsyncIterator[Env]:
    e = await open_env(sis_database, tmp_batch_folder, mail_sink.port)
    yield e
    await e.db.close()


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server for a folder, standing in for a calendar's public .ics address."""
    root = tmp_path / "web"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


def ics(*events: str) -> str:
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\n"
        + "".join(events)
        + "END:VCALENDAR\r\n"
    )


def event(uid: str, summary: str, start: datetime, extra: str = "") -> str:
    return (
        f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nSUMMARY:{summary}\r\n"
        f"DTSTART:{start:%Y%m%dT%H%M%SZ}\r\nDTEND:{start + timedelta(hours=1):%Y%m%dT%H%M%SZ}\r\n{extra}END:VEVENT\r\n"
    )


def all_day(uid: str, summary: str, day: datetime) -> str:
    return (
        f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nSUMMARY:{summary}\r\n"
        f"DTSTART;VALUE=DATE:{day:%Y%m%d}\r\nDTEND;VALUE=DATE:{day + timedelta(days=1):%Y%m%d}\r\nEND:VEVENT\r\n"
    )


async def test_import_ics_inserts_updates_deletes_only_its_own_events(
    env: Env, tmp_batch_folder: Path, web: tuple[str, Path]
) -> None:
    soon = (datetime.now(UTC) + timedelta(days=7)).replace(
        hour=15, minute=0, second=0, microsecond=0
    )
    await env.execute(
        "INSERT INTO sis.calendar_events (calendar, title, starts_at) VALUES ('district', 'Hand-made', $1)",
        soon,
    )
    await env.execute(
        "INSERT INTO sis.calendar_events (calendar, title, starts_at, source, source_job_id, source_key) "
        "VALUES ('district', 'Other feed', $1, 'ics', 'job-other', 'board@' || $2)",
        soon, soon.date().isoformat(),
    )  # fmt: skip
    (tmp_batch_folder / "calendars").mkdir()
    (tmp_batch_folder / "calendars" / "district.ics").write_text(ics(
        event("board", "Board meeting", soon),
        event("club", "Chess club", soon + timedelta(days=1), "RRULE:FREQ=WEEKLY;COUNT=3\r\n"),
        all_day("holiday", "Founders' Day", soon + timedelta(days=2)),
    ))  # fmt: skip
    params = {"source": "calendars/district.ics", "time_zone": "America/Chicago"}
    first = await env.run(import_ics.job_type, params)
    assert first.output.summary == "5 added, 0 updated, 0 deleted, 0 unchanged"
    holiday = await env.fetchrow(
        "SELECT starts_at, all_day FROM sis.calendar_events WHERE title = $1", "Founders' Day"
    )
    assert holiday["all_day"] and holiday["starts_at"].astimezone(UTC).hour in (
        5,
        6,
    )  # midnight in Chicago

    again = await env.run(import_ics.job_type, params)
    assert again.output.summary == "0 added, 0 updated, 0 deleted, 5 unchanged"

    url, root = web
    (root / "feed.ics").write_text(ics(
        event("board", "Board meeting (moved online)", soon),
        event("club", "Chess club", soon + timedelta(days=1), "RRULE:FREQ=WEEKLY;COUNT=2\r\n"),
        event("gala", "Spring gala", soon + timedelta(days=20)),
    ))  # fmt: skip
    changed = await env.run(import_ics.job_type, {**params, "source": f"{url}/feed.ics"})
    assert changed.output.summary == "1 added, 1 updated, 2 deleted, 2 unchanged"
    titles = [
        r["title"]
        for r in await env.fetch("SELECT title FROM sis.calendar_events ORDER BY starts_at, title")
    ]
    assert titles == [
        "Board meeting (moved online)",
        "Hand-made",
        "Other feed",
        "Chess club",
        "Chess club",
        "Spring gala",
    ]


async def test_import_ics_from_a_missing_file_fails_naming_it(env: Env) -> None:
    from belltower.errors import JobFailed

    run = await env.run(import_ics.job_type, {"source": "calendars/none.ics"}, raises=JobFailed)
    assert "no file calendars/none.ics in the batch folder" in str(run.error)
