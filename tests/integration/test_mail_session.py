"""Mailer.session(): many messages over one SMTP connection, surviving a server restart."""

from __future__ import annotations

import pytest

from belltower.errors import Unavailable
from belltower.mail import Mailer
from belltower.settings import Settings
from belltower_dev.localservers import MailSink


async def test_a_session_sends_many_and_reconnects_after_the_server_restarts(
    mail_sink: MailSink,
) -> None:
    mailer = Mailer(Settings(smtp_host=mail_sink.host, smtp_port=mail_sink.port))
    async with mailer.session() as session:
        for i in range(3):
            await session.send([f"s{i}@school.example"], f"n{i}", "text", "<p>html</p>")
        mail_sink.stop()
        with pytest.raises(Unavailable, match="cannot send mail"):
            await session.send(["x@school.example"], "lost", "text")
        mail_sink.start()
        await session.send(["back@school.example"], "after restart", "text")
        # A restart between two messages: the stale connection is noticed and replaced.
        mail_sink.stop()
        mail_sink.start()
        await session.send(["again@school.example"], "after a quiet restart", "text")
    subjects = [m["Subject"] for m in mail_sink.messages]
    assert subjects == ["n0", "n1", "n2", "after restart", "after a quiet restart"]
    assert mail_sink.messages[0].get_body(("html",)).get_content().strip() == "<p>html</p>"
