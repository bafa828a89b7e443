"""Result e-mails through history's outbox, against real JetStream, PostgreSQL and SMTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest

from belltower import operations as ops
from belltower.api import RunRef
from belltower.events import ResultMail
from belltower.rpc import ApiClient
from belltower.subjects import run_finished_subject
from belltower_dev.localservers import MailSink, free_port
from belltower_history.app import HistoryService
from belltower_history.resultmail import ResultMailComposer, duration_text
from tests.helpers.result_mail import T0, finished, history_with, publish, wait_for  # noqa: F401


@pytest.fixture
async def history(settings, mail_sink) -> AsyncIterator[HistoryService]:
    service = await history_with(
        settings,
        {
            "smtp_host": mail_sink.host,
            "smtp_port": mail_sink.port,
            "console_url": "https://sis.example.edu/belltower/",
        },
    )
    yield service
    await service.on_shutdown()
    await service.broker.stop()


async def test_a_finished_run_mails_its_result_once_to_every_recipient(
    history, nc, pool, mail_sink
) -> None:
    event = finished(ResultMail(to=("registrar@school.edu", "it@school.edu"), on="always"))
    await publish(nc, event)
    received = await mail_sink.wait_for(timeout=10)
    assert sorted(received.envelope_to) == ["it@school.edu", "registrar@school.edu"]
    assert received["Subject"] == "[Belltower] Succeeded: Name CSV Export"
    text = received.get_body(("plain",)).get_content()
    for expected in (
        "Job:       Name CSV Export (files.name_csv_export)",
        "Status:    Succeeded",
        "Duration:  1 min 23 s",
        "Trigger:   Scheduled",
        "Summary: 3 files exported",
        f"View the run: https://sis.example.edu/belltower/runs/{event.data.run_id}",
    ):
        assert expected in text, f"{expected!r} not in the mail:\n{text}"
    html = received.get_body(("html",)).get_content()
    assert "<h2>Succeeded: Name CSV Export</h2>" in html

    # The same finished event delivered again (a worker or broker retry) sends nothing more.
    await nc.jetstream().publish(
        run_finished_subject("succeeded", event.data.job_type),
        msgspec.json.encode(event),
        headers={"Nats-Msg-Id": f"{event.id}-again"},
    )
    await wait_for(
        pool, "SELECT count(*) FROM history.mail_outbox WHERE state = 'sent'", 1, timeout=5
    )
    await asyncio.sleep(0.5)
    assert len(mail_sink.messages) == 1
    assert await pool.fetchval("SELECT count(*) FROM history.mail_outbox") == 1


async def test_only_unsuccessful_runs_are_mailed_when_the_setting_says_so(
    settings, nc, pool, mail_sink
) -> None:
    service = await history_with(
        settings,
        {
            "smtp_host": mail_sink.host,
            "smtp_port": mail_sink.port,
            "result_mail_only_failures": True,
        },
    )
    try:
        default = ResultMail(to=("registrar@school.edu",))
        ok = finished(default, summary="all good")
        bad = finished(
            default, status="failed", trigger="manual", requested_by="alice (console) from 10.1.2.3"
        )
        forced = finished(ResultMail(to=("audit@school.edu",), on="always"), summary="forced")
        for event in (ok, bad, forced):
            await publish(nc, event)
        await wait_for(pool, "SELECT count(*) FROM history.runs", 3)
        await wait_for(pool, "SELECT count(*) FROM history.mail_outbox WHERE state = 'sent'", 2)
        subjects = sorted(m["Subject"] for m in mail_sink.messages)
        assert subjects == [
            "[Belltower] Failed: Name CSV Export",
            "[Belltower] Succeeded: Name CSV Export",
        ]
        failed_mail = next(m for m in mail_sink.messages if "Failed" in m["Subject"])
        body = failed_mail.get_body(("plain",)).get_content()
        assert "Trigger:   Run now by alice (console) from 10.1.2.3" in body
        assert "Error:\nSFTP refused" in body
        assert failed_mail.envelope_to == ["registrar@school.edu"]
        succeeded_mail = next(m for m in mail_sink.messages if "Succeeded" in m["Subject"])
        assert succeeded_mail.envelope_to == ["audit@school.edu"]
    finally:
        await service.on_shutdown()
        await service.broker.stop()


async def test_mail_waits_for_an_absent_smtp_server_without_holding_up_the_run(
    settings, nc, pool, api_client, tmp_path
) -> None:
    port = free_port("127.0.0.1")
    service = await history_with(settings, {"smtp_host": "127.0.0.1", "smtp_port": port})
    try:
        event = finished(ResultMail(to=("registrar@school.edu",), on="always"))
        await publish(nc, event)
        # The run is recorded and readable at once, while the mail cannot go out.
        await wait_for(pool, "SELECT count(*) FROM history.runs WHERE status = 'succeeded'", 1)
        run = await api_client.call(ops.RUNS_GET, RunRef(run_id=event.data.run_id))
        assert run.status == "succeeded"
        await wait_for(
            pool, "SELECT attempts >= 2 FROM history.mail_outbox WHERE state = 'pending'", True
        )
        error = await pool.fetchval("SELECT last_error FROM history.mail_outbox")
        assert f"127.0.0.1:{port}" in error

        with MailSink(port=port, maildir=tmp_path / "late-mail") as sink:
            received = await sink.wait_for(timeout=15)
            assert received.envelope_to == ["registrar@school.edu"]
            await wait_for(pool, "SELECT state FROM history.mail_outbox", "sent")
    finally:
        await service.on_shutdown()
        await service.broker.stop()


async def test_a_mail_is_given_up_after_the_retry_window(settings, nc, pool) -> None:
    port = free_port("127.0.0.1")
    service = await history_with(
        settings, {"smtp_host": "127.0.0.1", "smtp_port": port, "result_mail_give_up_s": 0.5}
    )
    try:
        await publish(nc, finished(ResultMail(to=("registrar@school.edu",), on="always")))
        await wait_for(pool, "SELECT state FROM history.mail_outbox", "failed")
        assert "cannot send mail" in await pool.fetchval(
            "SELECT last_error FROM history.mail_outbox"
        )
    finally:
        await service.on_shutdown()
        await service.broker.stop()


@pytest.fixture
def api_client(nc) -> ApiClient:
    return ApiClient(nc, timeout=5)


def test_who_gets_mail_follows_the_job_and_the_global_setting() -> None:
    quiet = ResultMailComposer(only_failures=True, console_url="http://c")
    chatty = ResultMailComposer(only_failures=False, console_url="http://c")
    ok = finished(ResultMail(to=("a@b.edu",))).data
    bad = finished(ResultMail(to=("a@b.edu",)), status="timed_out").data
    nobody = finished(None).data
    failure_only = finished(ResultMail(to=("a@b.edu",), on="failure")).data
    assert [quiet.wants(r) for r in (ok, bad, nobody, failure_only)] == [False, True, False, False]
    assert [chatty.wants(r) for r in (ok, bad, nobody, failure_only)] == [True, True, False, False]
    assert chatty.compose(bad).subject == "[Belltower] Timed out: Name CSV Export"
    assert [duration_text(ms) for ms in (None, 450, 1500, 83_400, 7_260_000)] == [
        "-",
        "450 ms",
        "1.5 s",
        "1 min 23 s",
        "2 h 01 min",
    ]


async def test_the_admins_setting_in_nats_wins_over_the_environment(
    settings, nc, pool, mail_sink
) -> None:
    from belltower import sitesettings

    service = await history_with(
        settings, {"smtp_host": mail_sink.host, "smtp_port": mail_sink.port}
    )
    try:
        assert service.site is not None and service.mail.only_failures is False
        await sitesettings.save(
            nc.jetstream(), sitesettings.SiteSettings(result_mail_only_failures=True)
        )
        await service.site.refresh()  # what the follower does every few seconds
        assert service.mail.only_failures is True
        default = ResultMail(to=("registrar@school.edu",))
        await publish(nc, finished(default, summary="quiet"))
        await publish(nc, finished(default, status="failed", summary="loud"))
        await wait_for(pool, "SELECT count(*) FROM history.runs", 2)
        await wait_for(pool, "SELECT count(*) FROM history.mail_outbox WHERE state = 'sent'", 1)
        assert [m["Subject"] for m in mail_sink.messages] == ["[Belltower] Failed: Name CSV Export"]
        await sitesettings.save(nc.jetstream(), sitesettings.SiteSettings())
        await service.site.refresh()
        assert service.mail.only_failures is False  # unset: the environment's default again
    finally:
        await service.on_shutdown()
        await service.broker.stop()
