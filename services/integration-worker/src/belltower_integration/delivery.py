"""Texts and calls through a phone provider for the Communication Queue: the one client the run
shares, who may be reached, the provider's receipt in ``sis.outbox`` and statuses followed up.

A number in ``sis.sms_opt_outs`` (the recipient replied STOP, or the school listed it) gets
neither a text nor a call. The receipt (provider ``twilio``, its sid, the status) is written in
the transaction that marks the queue row sent, so a redelivered run never sends that message
again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from belltower.errors import InvalidInput
from belltower.settings import Settings

from .phones import E164_FORM, to_e164
from .secrets import read_secret
from .twilio import OPTED_OUT, Receipt, Refused, TwilioClient

PROVIDER = "twilio"
STATUS_LOOK_BACK_DAYS = 7
"""How long after sending a message's status is still asked for (Twilio settles within hours)."""


@dataclass(frozen=True)
class Channel:
    """A queue channel that goes out through Twilio, and how its status is asked for."""

    name: str
    """``sis.communication_queue.channel``"""
    what: str
    """What the output calls its messages: texts, calls."""
    pending: frozenset[str]
    """The statuses it can still leave."""
    fetch: Callable[[TwilioClient, str], Awaitable[Receipt]]


class Undeliverable(Exception):
    """This message can never go out as it is: it is marked failed and not retried."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def client(params: Any, settings: Settings) -> TwilioClient | None:
    """The Twilio client for the channels the job's parameters send through Twilio (None when
    neither does); credentials come from the named secrets."""
    texts, calls = params.sms_provider == PROVIDER, params.voice_provider == PROVIDER
    if texts and not (params.sms_from or params.messaging_service_sid):
        raise InvalidInput(
            "param.sms_from", "Twilio needs a sender",
            "sms_from (an E.164 number of the account) or messaging_service_sid (MG...)",
        )  # fmt: skip
    caller_id = params.voice_from or params.sms_from
    if calls and not caller_id:
        raise InvalidInput(
            "param.voice_from", "Twilio needs a caller id to call from",
            "voice_from (an E.164 voice-capable number of the account, or a verified caller id); "
            "empty: sms_from",
        )  # fmt: skip
    if params.voice_status_events and not params.voice_status_callback:
        raise InvalidInput(
            "param.voice_status_events", "call progress events need an address to go to",
            "voice_status_callback set to the https address to tell, or no events",
        )  # fmt: skip
    if not (texts or calls):
        return None
    return TwilioClient(
        params.twilio_base_url,
        read_secret(params.twilio_account_sid_secret, "param.twilio_account_sid_secret"),
        read_secret(params.twilio_auth_token_secret, "param.twilio_auth_token_secret"),
        settings=settings,
        sender=params.sms_from,
        messaging_service_sid=params.messaging_service_sid,
        caller_id=caller_id,
        call_status_callback=params.voice_status_callback or "",
        call_status_events=params.voice_status_events,
    )


async def opt_out(conn: Any, phone: str, reason: str) -> None:
    await conn.execute(
        """INSERT INTO sis.sms_opt_outs (phone, source, reason) VALUES ($1, 'provider', $2)
           ON CONFLICT (phone) DO NOTHING""",
        phone, reason,
    )  # fmt: skip


async def reachable(conn: Any, msg: Any, default_country: str, opted_out: str) -> str:
    """The queued message's number in E.164, unless it is none or opted out (``opted_out``: what
    the output says after the number then)."""
    phone = to_e164(msg["to_address"], default_country)
    if phone is None:
        raise Undeliverable(f"{msg['to_address']!r} is not a phone number in {E164_FORM}")
    if await conn.fetchval("SELECT 1 FROM sis.sms_opt_outs WHERE phone = $1", phone):
        raise Undeliverable(f"{phone} {opted_out}")
    return phone


async def record(conn: Any, msg: Any, phone: str, receipt: Receipt) -> None:
    """The provider's receipt for the queued message, in the transaction that marks it sent."""
    await conn.execute(
        """INSERT INTO sis.outbox (queue_id, channel, to_address, body_text, provider,
                                   provider_sid, status, status_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, now())
           ON CONFLICT (queue_id) DO UPDATE  -- a message put back in the queue by hand
              SET to_address = EXCLUDED.to_address, provider = EXCLUDED.provider,
                  provider_sid = EXCLUDED.provider_sid, status = EXCLUDED.status,
                  error_code = NULL, status_at = now(), recorded_at = now()""",
        msg["id"], msg["channel"], phone, msg["body_text"], PROVIDER, receipt.sid, receipt.status,
    )  # fmt: skip


async def follow_up(
    pool: Any, twilio: TwilioClient, channel: Channel, limit: int, before: datetime
) -> dict[str, int]:
    """Ask Twilio for the status of the ``channel``'s messages sent ``before`` this run and not
    yet final; record it. Returns the statuses counted."""
    rows = await pool.fetch(
        """SELECT id, provider_sid, to_address FROM sis.outbox
            WHERE provider = $1 AND channel = $2 AND provider_sid IS NOT NULL
              AND status = ANY($3::text[])
              AND recorded_at > now() - make_interval(days => $4) AND recorded_at < $6
            ORDER BY recorded_at LIMIT $5""",
        PROVIDER, channel.name, sorted(channel.pending), STATUS_LOOK_BACK_DAYS, limit, before,
    )  # fmt: skip
    seen: dict[str, int] = {}
    for row in rows:
        try:
            receipt = await channel.fetch(twilio, row["provider_sid"])
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
