"""A mail sink: a real SMTP server (aiosmtpd) that keeps what it receives, in memory and as .eml."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from aiosmtpd.controller import Controller

from belltower.errors import Unavailable

from .ports import LOCALHOST, free_port, port_in_use, port_taken_error
from .process import POLL_S


class ReceivedMail(EmailMessage):
    """A message the sink accepted, with its SMTP envelope (Bcc recipients appear only there)."""

    envelope_from: str
    envelope_to: list[str]
    path: Path | None


class _SinkHandler:
    def __init__(self, sink: MailSink) -> None:
        self._sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8")
        self._sink._accept(envelope.mail_from or "", list(envelope.rcpt_tos), content)
        return "250 Message accepted for delivery"


class MailSink:
    """A real SMTP server that keeps what it receives, so email is tested end to end, not mocked.

    Messages are kept in ``messages`` and, with ``maildir``, also written there as ``.eml``
    files (with ``Return-Path`` and ``Delivered-To`` headers carrying the envelope) that a
    developer can open after ``make dev``.
    """

    def __init__(
        self, host: str = LOCALHOST, port: int | None = None, maildir: Path | str | None = None
    ) -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.maildir = Path(maildir).absolute() if maildir is not None else None
        self.messages: list[ReceivedMail] = []
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> Self:
        if self._controller is not None:
            return self
        if self.maildir is not None:
            self.maildir.mkdir(parents=True, exist_ok=True)
        if port_in_use(self.port, self.host):
            raise port_taken_error("the mail sink", self.host, [self.port])
        controller = Controller(
            _SinkHandler(self),
            hostname=self.host,
            port=self.port,
            ready_timeout=10.0,
            enable_SMTPUTF8=True,
        )
        try:
            controller.start()
        except Exception as exc:
            raise Unavailable(
                f"the mail sink could not start on {self.host}:{self.port}: {exc}"
            ) from exc
        self._controller = controller
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()

    def _accept(self, mail_from: str, rcpt_tos: list[str], content: bytes) -> None:
        """Keep the message, parsed with the wire's CRLF turned into Python's newlines."""
        parser = BytesParser(_class=ReceivedMail, policy=policy.default)
        message = parser.parsebytes(content.replace(b"\r\n", b"\n"))
        assert isinstance(message, ReceivedMail)
        message.envelope_from = mail_from
        message.envelope_to = rcpt_tos
        message.path = None
        with self._lock:
            sequence = len(self.messages) + 1
            if self.maildir is not None:
                message.path = self._write(sequence, mail_from, rcpt_tos, content)
            self.messages.append(message)

    def _write(self, sequence: int, mail_from: str, rcpt_tos: list[str], content: bytes) -> Path:
        assert self.maildir is not None
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        path = self.maildir / f"{stamp}-{sequence:04d}.eml"
        envelope = f"Return-Path: <{mail_from}>\r\n" + "".join(
            f"Delivered-To: {rcpt}\r\n" for rcpt in rcpt_tos
        )
        partial = path.with_suffix(".eml.part")
        partial.write_bytes(envelope.encode("utf-8") + content)
        partial.rename(path)
        return path

    def _find(self, predicate: Callable[[ReceivedMail], bool] | None) -> ReceivedMail | None:
        with self._lock:
            snapshot = list(self.messages)
        return next((m for m in snapshot if predicate is None or predicate(m)), None)

    def _no_match(self, timeout: float) -> TimeoutError:
        with self._lock:
            seen = [f"to={m.envelope_to} subject={m['Subject']!r}" for m in self.messages]
        return TimeoutError(
            f"no matching mail reached {self.url} within {timeout:g} s; received: {seen or 'nothing'}"
        )

    async def wait_for(
        self, predicate: Callable[[ReceivedMail], bool] | None = None, timeout: float = 10.0
    ) -> ReceivedMail:
        """The first received message matching ``predicate`` (any message without one)."""
        deadline = time.monotonic() + timeout
        while (found := self._find(predicate)) is None:
            if time.monotonic() > deadline:
                raise self._no_match(timeout)
            await asyncio.sleep(POLL_S)
        return found

    def wait_for_sync(
        self, predicate: Callable[[ReceivedMail], bool] | None = None, timeout: float = 10.0
    ) -> ReceivedMail:
        """Blocking ``wait_for`` for code without an event loop (the sender must be elsewhere)."""
        deadline = time.monotonic() + timeout
        while (found := self._find(predicate)) is None:
            if time.monotonic() > deadline:
                raise self._no_match(timeout)
            time.sleep(POLL_S)
        return found

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    def __repr__(self) -> str:
        return f"MailSink(url={self.url!r}, maildir={str(self.maildir) if self.maildir else None!r}, messages={len(self.messages)})"
