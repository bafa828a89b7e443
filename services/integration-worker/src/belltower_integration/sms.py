"""Texts through an SMS provider for the Communication Queue: opt-outs honoured, the provider's
receipt recorded in ``sis.outbox``, delivery statuses followed up.

A number in ``sis.sms_opt_outs`` is never sent to; Twilio's 21610 (the recipient replied STOP),
on sending or in a later status, adds it there. The receipt (provider ``twilio``, its message
sid, the status) is written in the transaction that marks the queue row sent, so a redelivered
run never sends that message again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from belltower.errors import InvalidInput
from belltower.settings import Settings

from .phones import E164_FORM, to_e164
from .secrets import read_secret
from .twilio import OPTED_OUT, PENDING, Receipt, Refused, TwilioClient

PROVIDER = "twilio"
STATUS_LOOK_BACK_DAYS = 7
"""How long after sending a text's status is still asked for (Twilio settles within hours)."""


class Undeliverable(Exception):
    """This message can never go out as it is: it is marked failed and not retried."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def client(params: Any, settings: Settings) -> TwilioClient:
    """A Twilio client from the job's parameters; credentials come from the named secrets."""
    if not (params.sms_from or params.messaging_service_sid):
        raise InvalidInput(
            "param.sms_from", "Twilio needs a sender",
            "sms_from (an E.164 number of the account) or messaging_service_sid (MG...)",
        )  # fmt: skip
    return TwilioClient(
        params.twilio_base_url,
        read_secret(params.twilio_account_sid_secret, "param.twilio_account_sid_secret"),
        read_secret(params.twilio_auth_token_secret, "param.twilio_auth_token_secret"),
        settings=settings,
        sender=params.sms_from,
        messaging_service_sid=params.messaging_service_sid,
    )


async def opt_out(conn: Any, phone: str, reason: str) -> None:
    await conn.execute(
        """INSERT INTO sis.sms_opt_outs (phone, source, reason) VALUES ($1, 'provider', $2)
           ON CONFLICT (phone) DO NOTHING""",
        phone, reason,
    )  # fmt: skip


async def send(conn: Any, twilio: TwilioClient, msg: Any, default_country: str) -> None:
    """Text one queued message unless its number opted out; record Twilio's receipt."""
    phone = to_e164(msg["to_address"], default_country)
    if phone is None:
        raise Undeliverable(f"{msg['to_address']!r} is not a phone number in {E164_FORM}")
    if await conn.fetchval("SELECT 1 FROM sis.sms_opt_outs WHERE phone = $1", phone):
        raise Undeliverable(f"{phone} opted out of texts (replied STOP): not sent")
    try:
        receipt = await twilio.send(phone, msg["body_text"])
    except Refused as exc:
        if exc.code == OPTED_OUT:
            await opt_out(conn, phone, exc.message)
            raise Undeliverable(f"{phone} opted out of texts (Twilio 21610): not sent") from None
        raise Undeliverable(f"Twilio refused the text: {exc.message}") from None
    await conn.execute(
        """INSERT INTO sis.outbox (queue_id, channel, to_address, body_text, provider,
                                   provider_sid, status, status_at)
           VALUES ($1, 'sms', $2, $3, $4, $5, $6, now())
           ON CONFLICT (queue_id) DO UPDATE  -- a message put back in the queue by hand
              SET to_address = EXCLUDED.to_address, provider = EXCLUDED.provider,
                  provider_sid = EXCLUDED.provider_sid, status = EXCLUDED.status,
                  error_code = NULL, status_at = now(), recorded_at = now()""",
        msg["id"], phone, msg["body_text"], PROVIDER, receipt.sid, receipt.status,
    )  # fmt: skip


async def follow_up(
    pool: Any, twilio: TwilioClient, limit: int, before: datetime
) -> dict[str, int]:
    """Ask Twilio for the status of texts sent ``before`` this run and not yet final; record it.
    Returns the statuses counted."""
    rows = await pool.fetch(
        """SELECT id, provider_sid, to_address FROM sis.outbox
            WHERE provider = $1 AND provider_sid IS NOT NULL AND status = ANY($2::text[])
              AND recorded_at > now() - make_interval(days => $3) AND recorded_at < $5
            ORDER BY recorded_at LIMIT $4""",
        PROVIDER, sorted(PENDING), STATUS_LOOK_BACK_DAYS, limit, before,
    )  # fmt: skip
    seen: dict[str, int] = {}
    for row in rows:
        try:
            receipt = await twilio.fetch(row["provider_sid"])
        except Refused:  # e.g. deleted at Twilio: nothing more to learn about it
            receipt = Receipt(row["provider_sid"], "unknown")
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE sis.outbox SET status = $2, error_code = $3, status_at = now() WHERE id = $1",
                row["id"], receipt.status, receipt.error_code,
            )  # fmt: skip
            if receipt.error_code == OPTED_OUT:
                await opt_out(conn, row["to_address"], "delivery status 21610")
        seen[receipt.status] = seen.get(receipt.status, 0) + 1
    return seen
