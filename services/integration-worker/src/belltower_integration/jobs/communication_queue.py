"""``messaging.communication_queue``: the seeds' Communication Queue (and the older Phone
Communication Processing it replaces).

Sends every queued message due at or before now. E-mails go out over SMTP whenever they are due.
Calls, SMS and push messages respect the school's "do not send before / after" preferences in its
time zone: outside those hours they stay queued for a later run. With ``sms_provider: twilio``
texts go out through Twilio's Messaging API, with ``voice_provider: twilio`` calls through its
Voice API, reading the message out (numbers that opted out get neither, see
``belltower_integration.delivery``), and each run asks Twilio for the status of the texts and
calls not yet final; without them, and always for push, messages are recorded in
``sis.outbox`` (provider ``outbox``) for something else to deliver, and the run's output says so
plainly instead of claiming they reached a phone.

Each message is marked sent in the same transaction that holds its row while it is sent (and,
for a text or call, records Twilio's sid), so two overlapping runs or a redelivered one never
send it twice; a crash between the provider's acceptance and the commit can resend that one
message (at-least-once, as with any SMTP sender: Twilio's APIs take no idempotency key).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from datetime import time as clock
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from belltower.errors import ConfigurationError, InvalidInput, Unavailable
from belltower.fences import PublicUrl
from belltower.jobtypes import JobContext, JobType
from belltower.mail import MailSession

from .. import delivery, sms, voice
from ..delivery import Undeliverable
from ..report import Tally
from ..twilio import CallEvent, Refused, TwilioClient

HHMM = r"^(([01][0-9]|2[0-3]):[0-5][0-9])?$"
OUTBOX = "outbox"
Secret = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")]
Provider = Literal["outbox", "twilio"]
E164_OR_EMPTY = r"^(\+[1-9][0-9]{1,14})?$"


class CommunicationQueueParams(msgspec.Struct, forbid_unknown_fields=True):
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 500
    max_attempts: Annotated[int, msgspec.Meta(ge=1)] = 5
    do_not_send_before: Annotated[
        str, msgspec.Meta(pattern=HHMM, description="HH:MM (24-hour); empty: the school preference")
    ] = ""
    do_not_send_after: Annotated[
        str, msgspec.Meta(pattern=HHMM, description="HH:MM (24-hour); empty: the school preference")
    ] = ""
    time_zone: Annotated[str | None, msgspec.Meta(description="Default: the school's")] = None
    sms_provider: Annotated[
        Provider,
        msgspec.Meta(description="outbox: record texts for another system; twilio: send them"),
    ] = "outbox"
    voice_provider: Annotated[
        Provider,
        msgspec.Meta(description="outbox: record calls for another system; twilio: place them"),
    ] = "outbox"
    twilio_base_url: Annotated[PublicUrl, msgspec.Meta(description="Twilio API address")] = (
        "https://api.twilio.com"
    )
    twilio_account_sid_secret: Annotated[
        Secret, msgspec.Meta(description="Name of the secret holding the Twilio account SID")
    ] = "twilio-account-sid"
    twilio_auth_token_secret: Annotated[
        Secret, msgspec.Meta(description="Name of the secret holding the Twilio auth token")
    ] = "twilio-auth-token"
    sms_from: Annotated[
        str,
        msgspec.Meta(pattern=E164_OR_EMPTY, description="Sender number, E.164"),
    ] = ""
    voice_from: Annotated[
        str,
        msgspec.Meta(
            pattern=E164_OR_EMPTY,
            description="Caller id for calls, E.164: a voice-capable number of the account or a "
            "verified caller id; empty: sms_from",
        ),
    ] = ""
    voice_status_callback: Annotated[
        PublicUrl | None,
        msgspec.Meta(description="https address Twilio tells of each call's progress (optional)"),
    ] = None
    voice_status_events: Annotated[
        list[CallEvent],
        msgspec.Meta(
            description="call progress events sent to voice_status_callback; empty: completed"
        ),
    ] = []
    messaging_service_sid: Annotated[
        str,
        msgspec.Meta(
            pattern=r"^(MG[0-9a-fA-F]{32})?$",
            description="Twilio Messaging Service to send from instead of sms_from",
        ),
    ] = ""
    default_country_code: Annotated[
        str,
        msgspec.Meta(
            pattern=r"^([1-9][0-9]{0,2})?$",
            description="country code for numbers stored without '+' (1: North America); "
            "empty: such numbers are not texted or called",
        ),
    ] = ""


@dataclass
class Counts:
    emailed: int = 0
    texted: int = 0
    called: int = 0
    recorded: dict[str, int] = field(default_factory=dict)
    """Messages only recorded in sis.outbox, by channel."""


@dataclass
class Senders:
    """What each channel goes out through; None: recorded in sis.outbox only."""

    mail: MailSession
    sms: TwilioClient | None
    voice: TwilioClient | None


def allowed(local: clock, before: clock, after: clock) -> bool:
    """Whether calls and SMS may go out at ``local`` time, between ``before`` and ``after``."""
    if before <= after:
        return before <= local < after
    return local >= before or local < after  # a window across midnight


async def _quiet_hours(
    pool: Any, params: CommunicationQueueParams, tally: Tally, now: datetime
) -> bool:
    """Whether calls and texts may go out now, in the school's time zone; said in the output."""
    prefs = dict(await pool.fetch("SELECT key, value FROM sis.school_preferences"))
    zone_name = params.time_zone or prefs.get("time_zone", "UTC")
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            "param.time_zone",
            f"{zone_name!r} is not a time zone",
            "an IANA name such as America/New_York",
        ) from None
    before = clock.fromisoformat(
        params.do_not_send_before or prefs.get("comm_do_not_send_before", "00:00")
    )
    after = clock.fromisoformat(
        params.do_not_send_after or prefs.get("comm_do_not_send_after", "23:59")
    )
    local = now.astimezone(zone)
    phone_ok = allowed(local.time(), before, after)
    tally.fact(
        f"local time {local:%H:%M} {zone_name}; calls and SMS allowed {before:%H:%M}-{after:%H:%M}: "
        + ("yes" if phone_ok else "no, they wait for the next run inside those hours")
    )
    return phone_ok


async def run(ctx: JobContext, params: CommunicationQueueParams) -> None:
    pool = await ctx.db.pool()
    now = datetime.now(UTC)
    tally = Tally("Communication queue")
    phone_ok = await _quiet_hours(pool, params, tally, now)
    due = await pool.fetch(
        """SELECT id, channel FROM sis.communication_queue
            WHERE state = 'queued' AND send_after <= $1 AND attempts < $2
              AND (channel = 'email' OR $3)
            ORDER BY send_after, id LIMIT $4""",
        now, params.max_attempts, phone_ok, params.batch_size,
    )  # fmt: skip
    held = 0 if phone_ok else await pool.fetchval(
        "SELECT count(*) FROM sis.communication_queue WHERE state = 'queued' AND send_after <= $1 AND channel <> 'email'",
        now,
    )  # fmt: skip
    if held:
        tally.skipped += held
        tally.fact(f"{held} call/SMS/push messages held for quiet hours")
    counts = Counts()
    twilio = delivery.client(params, ctx.settings)
    async with contextlib.AsyncExitStack() as stack:
        if twilio is not None:
            await stack.enter_async_context(twilio)
        senders = Senders(
            await stack.enter_async_context(ctx.mailer.session()),
            sms=twilio if params.sms_provider == delivery.PROVIDER else None,
            voice=twilio if params.voice_provider == delivery.PROVIDER else None,
        )
        for index, item in enumerate(due, 1):
            await _handle(ctx, pool, item["id"], senders, params, tally, counts)
            if index % 100 == 0:
                await ctx.progress(index, len(due), f"{index} of {len(due)} messages handled")
        for channel, client in ((sms.TEXTS, senders.sms), (voice.CALLS, senders.voice)):
            if client is not None:
                await _follow_up(pool, client, channel, params.batch_size, tally, now)
    _report_counts(tally, counts)
    more = await pool.fetchval(
        "SELECT count(*) FROM sis.communication_queue WHERE state = 'queued' AND send_after <= $1 AND attempts < $2 "
        "AND (channel = 'email' OR $3)",
        now, params.max_attempts, phone_ok,
    )  # fmt: skip
    if more:
        tally.fact(f"{more} due messages left for the next run (batch size {params.batch_size})")
    tally.write(
        ctx,
        f"{counts.emailed} e-mails sent, {counts.texted} texts sent, {counts.called} calls "
        f"placed, {sum(counts.recorded.values())} calls/SMS recorded to the outbox (no provider), "
        f"{held} held for quiet hours, {tally.failed} failed",
    )


async def _follow_up(
    pool: Any, twilio: TwilioClient, channel: delivery.Channel, limit: int, tally: Tally,
    now: datetime,
) -> None:  # fmt: skip
    """The status of texts or calls sent before: asked of Twilio, recorded, said in the output."""
    try:
        seen = await delivery.follow_up(pool, twilio, channel, limit, now)
    except (Unavailable, Refused) as exc:
        tally.fact(f"statuses of earlier {channel.what} not updated this run: {exc}")
        return
    if seen:
        tally.fact(
            f"delivery status of earlier {channel.what}: "
            + ", ".join(f"{n} {status}" for status, n in sorted(seen.items()))
        )


def _report_counts(tally: Tally, counts: Counts) -> None:
    if counts.recorded:
        channels = ", ".join(f"{n} {channel}" for channel, n in sorted(counts.recorded.items()))
        tally.fact(
            f"{sum(counts.recorded.values())} call/SMS/push messages were recorded in sis.outbox "
            f"only ({channels}): no provider is configured for them, so they have not reached "
            "any phone"
        )


async def _handle(
    ctx: JobContext,
    pool: Any,
    queue_id: int,
    senders: Senders,
    params: CommunicationQueueParams,
    tally: Tally,
    counts: Counts,
) -> None:
    """Send or record one queued message, holding its row until it is marked sent."""
    async with pool.acquire() as conn, conn.transaction():
        msg = await conn.fetchrow(
            "SELECT * FROM sis.communication_queue WHERE id = $1 AND state = 'queued' FOR UPDATE SKIP LOCKED",
            queue_id,
        )
        if msg is None:
            return  # sent by an overlapping run meanwhile
        record = f"#{msg['id']} {msg['channel']} to {msg['to_address']}"
        try:
            note = await _send(conn, msg, senders, params, counts)
        except Unavailable as exc:
            failed = msg["attempts"] + 1 >= params.max_attempts
            await _failed(conn, msg["id"], exc.message, final=failed)
            tally.fail(record, exc.message + ("; giving up" if failed else "; retried next run"))
            return
        except Undeliverable as exc:
            await _failed(conn, msg["id"], exc.reason, final=True)
            tally.fail(record, exc.reason + "; not retried")
            return
        except (ConfigurationError, InvalidInput):
            raise  # the whole run is misconfigured: nothing is marked, the run fails
        except Exception as exc:
            # A message that can never be sent (a line break in its subject, an address
            # the mail library refuses): failed now with the reason, and the queue goes on.
            reason = f"cannot be sent: {exc or type(exc).__name__}"[:500]
            await _failed(conn, msg["id"], reason, final=True)
            tally.fail(record, reason + "; not retried")
            return
        await conn.execute(
            "UPDATE sis.communication_queue SET state = 'sent', sent_at = now(), attempts = attempts + 1 WHERE id = $1",
            msg["id"],
        )
        tally.ok(record, note)


async def _failed(conn: Any, queue_id: int, reason: str, *, final: bool) -> None:
    await conn.execute(
        "UPDATE sis.communication_queue SET attempts = attempts + 1, last_error = $2, "
        "state = CASE WHEN $3 THEN 'failed' ELSE state END WHERE id = $1",
        queue_id, reason[:500], final,
    )  # fmt: skip


async def _send(
    conn: Any, msg: Any, senders: Senders, params: CommunicationQueueParams, counts: Counts
) -> str:
    """Hand one message to its channel; returns what became of it for the run's output."""
    if msg["channel"] == "email":
        await senders.mail.send(
            [msg["to_address"]], msg["subject"], msg["body_text"], msg["body_html"]
        )
        counts.emailed += 1
        return "e-mailed"
    if msg["channel"] == sms.TEXTS.name and senders.sms is not None:
        await sms.send(conn, senders.sms, msg, params.default_country_code)
        counts.texted += 1
        return "accepted by Twilio"
    if msg["channel"] == voice.CALLS.name and senders.voice is not None:
        await voice.call(conn, senders.voice, msg, params.default_country_code)
        counts.called += 1
        return "call placed with Twilio"
    await conn.execute(
        """INSERT INTO sis.outbox (queue_id, channel, to_address, body_text, provider)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT (queue_id) DO NOTHING""",
        msg["id"], msg["channel"], msg["to_address"], msg["body_text"], OUTBOX,
    )  # fmt: skip
    counts.recorded[msg["channel"]] = counts.recorded.get(msg["channel"], 0) + 1
    return "recorded in sis.outbox, not delivered"


job_type = JobType(
    name="messaging.communication_queue",
    pool="integration",
    title="Communication Queue",
    description=(
        "Sends the messages waiting in the communication queue that are due at or before now. "
        "E-mails go out when scheduled; calls and text messages respect the 'do not send before' "
        "and 'do not send after' preferences in the school's time zone. Texts (sms_provider) "
        "and calls (voice_provider, the message read out) go through Twilio or are recorded in "
        "sis.outbox for another system; numbers that opted out get neither, and each run "
        "records the status Twilio reports for earlier ones. Run it every 15 minutes."
    ),
    params=CommunicationQueueParams,
    run=run,
)
