"""The fences hold when a job runs, not only when it is saved: a definition that reached the
worker some other way (written into the database, an older version's export) stays inert."""

from __future__ import annotations

import http.server
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from belltower.errors import JobFailed
from belltower.settings import Settings
from belltower_integration import outbound
from tests.catalog.conftest import JobRunner

CALENDAR = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\nBEGIN:VEVENT\r\nUID:a\r\n"
    "DTSTAMP:20260101T000000Z\r\nSUMMARY:Board\r\nDTSTART:20300101T100000Z\r\nEND:VEVENT\r\n"
    "END:VCALENDAR\r\n"
)


class Site:
    """A small web server on one loopback address that records the paths it was asked for."""

    def __init__(self, host: str, routes: dict[str, tuple[int, dict[str, str], bytes]]) -> None:
        self.hits: list[str] = []
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                site.hits.append(self.path)
                status, headers, body = routes.get(self.path, (404, {}, b"no"))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sites() -> Iterator[tuple[Site, Site]]:
    inner = Site("127.0.0.2", {"/meta": (200, {}, CALENDAR.encode())})
    outer = Site(
        "127.0.0.1",
        {
            "/cal.ics": (200, {}, CALENDAR.encode()),
            "/hop.ics": (302, {"Location": f"{inner.url}/meta"}, b""),
            "/junk.ics": (200, {}, b"SECRET-PAGE-CONTENT 4242: not a calendar"),
        },
    )
    yield outer, inner
    outer.close()
    inner.close()


async def test_import_ics_refuses_loopback_by_default(
    sis_settings: Settings, sites: tuple[Site, Site]
) -> None:
    outer, _ = sites
    strict = JobRunner(sis_settings.model_copy(update={"outbound_allow_hosts": []}))
    try:
        ran = await strict("calendar.import_ics", {"source": f"{outer.url}/cal.ics"})
    finally:
        await strict.db.close()
    assert ran.status == "failed"
    assert ran.error is not None and "param.source" in ran.error and "127.0.0.1" in ran.error
    assert outer.hits == []  # refused before connecting


async def test_import_ics_checks_each_redirect(run_job, sites: tuple[Site, Site]) -> None:
    """127.0.0.1 is allowed (the stand-in), the redirect to 127.0.0.2 is not: the hop is
    refused at its connection, and the inner site is never reached."""
    outer, inner = sites
    ran = await run_job("calendar.import_ics", {"source": f"{outer.url}/hop.ics"})
    assert ran.status == "failed"
    assert ran.error is not None and "127.0.0.2" in ran.error and "loopback" in ran.error
    assert outer.hits == ["/hop.ics"] and inner.hits == []
    ok = await run_job("calendar.import_ics", {"source": f"{outer.url}/cal.ics"})
    assert ok.status == "succeeded", ok.error


async def test_fetched_content_is_never_echoed(run_job, sites: tuple[Site, Site]) -> None:
    outer, _ = sites
    ran = await run_job("calendar.import_ics", {"source": f"{outer.url}/junk.ics"})
    assert ran.status == "failed" and ran.error is not None
    assert "not an iCalendar file" in ran.error
    assert "SECRET-PAGE-CONTENT" not in ran.error + ran.text + (ran.html or "")


async def test_responses_are_capped(sis_settings: Settings, sites: tuple[Site, Site]) -> None:
    outer, _ = sites
    with pytest.raises(JobFailed, match="sent more than"):
        await outbound.fetch(sis_settings, f"{outer.url}/cal.ics", "param.source", max_bytes=10)


async def test_cleanup_never_leaves_the_batch_folder(
    run_job, tmp_batch_folder: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    victim = outside / "precious.txt"
    victim.write_text("keep me")
    old = time.time() - 90 * 86400
    os.utime(victim, (old, old))
    (tmp_batch_folder / "linked").symlink_to(outside)

    for folder in ("/etc", "../elsewhere", "linked"):
        ran = await run_job(
            "files.batch_folder_cleanup", {"folder": folder, "days": 1, "recursive": True}
        )
        assert ran.status == "failed", folder
        assert ran.error is not None and ran.error.startswith("param.folder:"), ran.error
    ran = await run_job(
        "files.batch_folder_cleanup", {"days": 1, "recursive": True, "pattern": "**/*.txt"}
    )
    assert ran.status == "succeeded", ran.error
    assert victim.read_text() == "keep me"
    ran = await run_job("files.batch_folder_cleanup", {"days": 1, "pattern": "../elsewhere/*"})
    assert ran.status == "failed" and ran.error is not None and "param.pattern" in ran.error
    assert victim.exists()


async def test_a_template_escape_fails_the_run_and_sends_nothing(run_job, mail_sink) -> None:
    ran = await run_job(
        "notifier.balance_due",
        {"subject": "{{ cycler.__init__.__globals__.os.popen('id').read() }}"},
    )
    assert ran.status == "failed"
    assert ran.error is not None and ran.error.startswith("param.subject: template")
    assert "uid=" not in ran.error + ran.text
    assert mail_sink.messages == []
