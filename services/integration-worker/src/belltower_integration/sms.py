"""Texts through Twilio for the Communication Queue: opt-outs honoured, the receipt recorded in
``sis.outbox``, delivery statuses followed up (see ``belltower_integration.delivery``).

Twilio's 21610 (the recipient replied STOP), on sending or in a later status, adds the number
to ``sis.sms_opt_outs``.
"""

from __future__ import annotations

from typing import Any

from . import delivery
from .delivery import Undeliverable
from .twilio import OPTED_OUT, PENDING, Refused, TwilioClient

TEXTS = delivery.Channel("sms", "texts", PENDING, TwilioClient.fetch)


async def send(conn: Any, twilio: TwilioClient, msg: Any, default_country: str) -> None:
    """Text one queued message unless its number opted out; record Twilio's receipt."""
    phone = await delivery.reachable(
        conn, msg, default_country, "opted out of texts (replied STOP): not sent"
    )
    try:
        receipt = await twilio.send(phone, msg["body_text"])
    except Refused as exc:
        if exc.code == OPTED_OUT:
            await delivery.opt_out(conn, phone, exc.message)
            raise Undeliverable(f"{phone} opted out of texts (Twilio 21610): not sent") from None
        raise Undeliverable(f"Twilio refused the text: {exc.message}") from None
    await delivery.record(conn, msg, phone, receipt)
