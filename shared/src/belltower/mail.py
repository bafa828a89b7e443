"""Sending e-mail over SMTP, for job types and result mails."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager
from email.message import EmailMessage
from typing import Any

import aiosmtplib
from opentelemetry.trace import SpanKind

from . import telemetry
from .errors import Unavailable
from .settings import Settings


class Mailer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def message(
        self, to: list[str], subject: str, text: str, html: str | None = None
    ) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.settings.mail_from
        msg["To"] = ", ".join(to)
        msg["Subject"] = subject
        msg.set_content(text)
        if html is not None:
            msg.add_alternative(html, subtype="html")
        return msg

    def _span(self, recipients: int) -> AbstractContextManager[Any]:
        """A CLIENT span per SMTP exchange, child of the run that sends the mail."""
        s = self.settings
        return telemetry.span(
            "smtp send",
            kind=SpanKind.CLIENT,
            attributes={
                "server.address": s.smtp_host,
                "server.port": s.smtp_port,
                "network.protocol.name": "smtp",
                "belltower.mail.recipients": recipients,
            },
        )

    async def send(self, to: list[str], subject: str, text: str, html: str | None = None) -> None:
        """Send one message to every address in ``to``; raises Unavailable when SMTP is away."""
        s = self.settings
        try:
            with self._span(len(to)):
                await aiosmtplib.send(
                    self.message(to, subject, text, html),
                    hostname=s.smtp_host,
                    port=s.smtp_port,
                    username=s.smtp_username,
                    password=s.smtp_password,
                    start_tls=s.smtp_starttls,
                    timeout=30,
                )
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise self._unavailable(exc) from None

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[MailSession]:
        """One SMTP connection for many messages, e.g. a notifier mailing hundreds of students:
        the TLS handshake and login happen once instead of once per message."""
        session = MailSession(self)
        try:
            yield session
        finally:
            await session.close()

    def _unavailable(self, exc: Exception) -> Unavailable:
        s = self.settings
        return Unavailable(
            f"cannot send mail through {s.smtp_host}:{s.smtp_port} ({exc}); "
            "check BELLTOWER_SMTP_HOST and BELLTOWER_SMTP_PORT"
        )


class MailSession:
    """A connection that is opened on the first message and opened again if the server drops it."""

    def __init__(self, mailer: Mailer) -> None:
        self.mailer = mailer
        self._client: aiosmtplib.SMTP | None = None

    async def send(self, to: list[str], subject: str, text: str, html: str | None = None) -> None:
        """Send one message; raises Unavailable when SMTP is away."""
        message = self.mailer.message(to, subject, text, html)
        for attempt in (1, 2):
            try:
                with self.mailer._span(len(to)):
                    client = await self._connected()
                    await client.send_message(message)
                return
            except aiosmtplib.SMTPServerDisconnected as exc:
                await self.close()
                if attempt == 2:
                    raise self.mailer._unavailable(exc) from None
            except (aiosmtplib.SMTPException, OSError) as exc:
                await self.close()
                raise self.mailer._unavailable(exc) from None

    async def _connected(self) -> aiosmtplib.SMTP:
        if self._client is None or not self._client.is_connected:
            s = self.mailer.settings
            client = aiosmtplib.SMTP(
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_username,
                password=s.smtp_password,
                start_tls=s.smtp_starttls,
                timeout=30,
            )
            await client.connect()
            self._client = client
        return self._client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and client.is_connected:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await client.quit()
