"""Sending e-mail over SMTP, for job types and result mails."""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib
from opentelemetry.trace import SpanKind

from . import telemetry
from .errors import Unavailable
from .settings import Settings


class Mailer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def send(self, to: list[str], subject: str, text: str, html: str | None = None) -> None:
        """Send one message to every address in ``to``; raises Unavailable when SMTP is away."""
        s = self.settings
        msg = EmailMessage()
        msg["From"] = s.mail_from
        msg["To"] = ", ".join(to)
        msg["Subject"] = subject
        msg.set_content(text)
        if html is not None:
            msg.add_alternative(html, subtype="html")
        with telemetry.span(
            "smtp send",
            kind=SpanKind.CLIENT,
            attributes={
                "server.address": s.smtp_host,
                "server.port": s.smtp_port,
                "network.protocol.name": "smtp",
                "belltower.mail.recipients": len(to),
            },
        ):
            try:
                await aiosmtplib.send(
                    msg,
                    hostname=s.smtp_host,
                    port=s.smtp_port,
                    username=s.smtp_username,
                    password=s.smtp_password,
                    start_tls=s.smtp_starttls,
                    timeout=30,
                )
            except (aiosmtplib.SMTPException, OSError) as exc:
                raise Unavailable(
                    f"cannot send mail through {s.smtp_host}:{s.smtp_port} ({exc}); "
                    "check BELLTOWER_SMTP_HOST and BELLTOWER_SMTP_PORT"
                ) from None
