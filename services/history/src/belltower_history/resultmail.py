"""Result e-mails: composed when a run's finished event is stored, sent afterwards from an outbox.

The mail is written into ``history.mail_outbox`` in the same transaction as the finished run, so
a crash can neither lose it nor send it for a run that was never recorded, and a redelivered
event finds the row already there. Sending happens apart from ingest: an SMTP server that is
away delays the mail (retried with backoff for ``BELLTOWER_RESULT_MAIL_GIVE_UP_S``), never the
run or its history.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import unicodedata
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from belltower.errors import Unavailable
from belltower.events import RunFinishedData

log = logging.getLogger(__name__)

OUTPUT_LINES = 40
_STATUS_WORDS = {
    "succeeded": "Succeeded",
    "failed": "Failed",
    "timed_out": "Timed out",
    "dead_lettered": "Failed (gave up after repeated deliveries)",
    "lost": "Lost (never started, although published again)",
    "abandoned": "Abandoned (its worker stopped mid-run)",
    "held": "Held (over its safety thresholds: nothing was sent; release it or let the next run decide)",
}


class OutboxMail(msgspec.Struct, kw_only=True):
    """One row of ``history.mail_outbox`` as :class:`Store` writes it."""

    occurrence_id: str
    run_id: str
    recipients: list[str]
    subject: str
    body_text: str
    body_html: str
    kind: str = "result"
    """``result`` (the run's result mail), ``failing`` or ``recovered`` (``alertmail.py``)."""


class ResultMailComposer:
    """Decides whether a finished run gets a result mail, and writes it."""

    def __init__(self, *, only_failures: bool, console_url: str) -> None:
        self.only_failures = only_failures
        self.console_url = console_url.rstrip("/")

    def wants(self, run: RunFinishedData) -> bool:
        mail = run.result_mail
        if mail is None or not mail.to:
            return False
        on = mail.on
        if on == "default":
            on = "failure" if self.only_failures else "always"
        return on == "always" or run.status != "succeeded"

    def compose(self, run: RunFinishedData) -> OutboxMail | None:
        if not self.wants(run):
            return None
        assert run.result_mail is not None
        status = _STATUS_WORDS.get(run.status, run.status)
        link = f"{self.console_url}/runs/{run.run_id}"
        facts = [
            ("Job", f"{run.job_title} ({run.job_type})"),
            ("Status", status),
            ("Started", when_text(run.started_at)),
            ("Finished", when_text(run.finished_at)),
            ("Duration", duration_text(run.duration_ms)),
            ("Trigger", trigger_text(run)),
        ]
        if run.attempt > 1:
            facts.append(("Attempt", str(run.attempt)))
        if run.trace_id:
            facts.append(("Trace id", run.trace_id))
        output = _tail(run.output_text, OUTPUT_LINES)
        text = "\n".join(f"{name + ':':<10} {value}" for name, value in facts)
        text += f"\n\nSummary: {run.summary or '(none)'}\n"
        if run.error:
            text += f"\nError:\n{run.error}\n"
        if output:
            text += f"\nOutput (last {OUTPUT_LINES} lines at most):\n{output}\n"
        text += f"\nView the run: {link}\n"
        body_html = (
            f"<h2>{html.escape(status)}: {html.escape(run.job_title)}</h2>"
            f"<table>{facts_rows(facts)}</table>"
            f"<p><strong>Summary:</strong> {html.escape(run.summary or '(none)')}</p>"
            + error_html("Error", run.error)
            + (f"<pre>{html.escape(output)}</pre>" if output else "")
            + f"<p><a href='{html.escape(link)}'>View the run in Belltower</a></p>"
        )
        return OutboxMail(
            occurrence_id=run.occurrence_id,
            run_id=run.run_id,
            recipients=list(run.result_mail.to),
            subject=one_line(f"[Belltower] {status}: {run.job_title}"),
            body_text=text,
            body_html=body_html,
        )


def facts_rows(facts: list[tuple[str, str]]) -> str:
    """A mail's facts as HTML table rows, escaped."""
    return "".join(
        f"<tr><th scope='row' style='text-align:left;padding-right:1em'>{html.escape(name)}</th>"
        f"<td>{html.escape(value)}</td></tr>"
        for name, value in facts
    )


def error_html(label: str, error: str | None) -> str:
    if not error:
        return ""
    return f"<p><strong>{html.escape(label)}:</strong></p><pre>{html.escape(error)}</pre>"


def one_line(text: str) -> str:
    """``text`` fit for a mail header: every control character or line separator (a CR/LF
    smuggled into a job title) becomes a space, so no header can be injected or refused."""
    return "".join(
        " " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch for ch in text
    ).strip()


def trigger_text(run: Any) -> str:
    """ "Scheduled", or who asked for the run and from where, as the seeds' result mail shows."""
    if run.trigger == "schedule":
        return "Scheduled"
    who = run.requested_by or "unknown user"
    where = getattr(run, "requested_from", None)
    label = "Run now" if run.trigger == "manual" else str(run.trigger).capitalize()
    return f"{label} by {who}" + (f" from {where}" if where else "")


def duration_text(ms: int | None) -> str:
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {sec:02d} s"


def when_text(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _tail(text: str, lines: int) -> str:
    kept = text.rstrip("\n").splitlines()[-lines:]
    return "\n".join(kept)


_CLAIM = (
    "SELECT occurrence_id::text, kind, recipients, subject, body_text, body_html, attempts, created_at "
    "FROM history.mail_outbox WHERE state = 'pending' AND next_attempt_at <= now() "
    "ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED"
)


class OutboxSender:
    """Sends pending result mails; replicas share the outbox through ``FOR UPDATE SKIP LOCKED``.

    Delivery is at least once: a crash after the SMTP server accepted a mail and before the
    row is marked sent sends that mail again on restart.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        send: Callable[[list[str], str, str, str | None], Awaitable[None]],
        *,
        give_up_s: float,
        backoff_s: float = 5.0,
        max_backoff_s: float = 900.0,
        poll_s: float = 5.0,
        batch: int = 20,
    ) -> None:
        self.pool = pool
        self.send = send
        self.give_up = timedelta(seconds=give_up_s)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.poll_s = poll_s
        self.batch = batch
        self.wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="result-mail-outbox")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                sent = await self.send_due()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning(
                    "result mail outbox not reachable; trying again",
                    extra={"action": "history.mail_outbox_failed", "error": str(exc)},
                )
                sent = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                # Nothing may end this loop: a bug here would stop every school's result mail.
                log.exception(
                    "result mail outbox failed; trying again",
                    extra={"action": "history.mail_outbox_failed"},
                )
                sent = 0
                await asyncio.sleep(self.poll_s)
            if sent:
                continue
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.poll_s)

    async def send_due(self) -> int:
        """Try every pending mail that is due; returns how many went out."""
        sent = 0
        async with self.pool.acquire() as conn, conn.transaction():
            for row in await conn.fetch(_CLAIM, self.batch):
                try:
                    await self.send(
                        list(row["recipients"]), row["subject"], row["body_text"], row["body_html"]
                    )
                except Unavailable as exc:
                    await self._failed(conn, row, str(exc))
                    continue
                except Exception as exc:
                    # A mail that can never go out (a header the mail library refuses):
                    # failed now with the reason, and the mails after it still go.
                    await self._given_up(conn, row, f"cannot be sent: {exc or type(exc).__name__}")
                    continue
                await conn.execute(
                    "UPDATE history.mail_outbox SET state = 'sent', sent_at = now(), "
                    "attempts = attempts + 1, last_error = NULL WHERE occurrence_id = $1::uuid AND kind = $2",
                    row["occurrence_id"],
                    row["kind"],
                )
                sent += 1
                log.info(
                    "result mail sent",
                    extra={
                        "action": "history.mail_sent",
                        "occurrence_id": row["occurrence_id"],
                        "recipients": len(row["recipients"]),
                    },
                )
        return sent

    async def _given_up(self, conn: asyncpg.Connection, row: asyncpg.Record, error: str) -> None:
        await conn.execute(
            "UPDATE history.mail_outbox SET state = 'failed', attempts = $2, last_error = $3 "
            "WHERE occurrence_id = $1::uuid AND kind = $4",
            row["occurrence_id"],
            row["attempts"] + 1,
            error[:1000],
            row["kind"],
        )
        log.error(
            "result mail given up",
            extra={
                "action": "history.mail_given_up",
                "occurrence_id": row["occurrence_id"],
                "error": error,
            },
        )

    async def _failed(self, conn: asyncpg.Connection, row: asyncpg.Record, error: str) -> None:
        attempts = row["attempts"] + 1
        now = datetime.now(UTC)
        if now - row["created_at"] >= self.give_up:
            await self._given_up(conn, row, error)
            return
        delay = min(self.backoff_s * 2 ** (attempts - 1), self.max_backoff_s)
        await conn.execute(
            "UPDATE history.mail_outbox SET attempts = $2, last_error = $3, "
            "next_attempt_at = now() + make_interval(secs => $4) WHERE occurrence_id = $1::uuid "
            "AND kind = $5",
            row["occurrence_id"],
            attempts,
            error,
            delay,
            row["kind"],
        )
        log.warning(
            "result mail not sent; will retry",
            extra={
                "action": "history.mail_retry",
                "occurrence_id": row["occurrence_id"],
                "attempts": attempts,
                "retry_in_s": delay,
                "error": error,
            },
        )
