"""``messaging.communication_queue``: the seeds' Communication Queue.

Sends every queued message due at or before now. E-mails go out over SMTP whenever they are due.
Calls, SMS and push messages respect the school's "do not send before / after" preferences in its
time zone: outside those hours they stay queued for a later run. Belltower has no SMS or voice
provider yet, so those messages are recorded in ``sis.outbox`` (provider ``outbox``) for one to
deliver, and the run's output says so plainly instead of claiming they reached a phone.

Each message is marked sent in the same transaction that holds its row while it is sent, so two
overlapping runs never send it twice; a crash between the SMTP server's acceptance and the commit
can resend that one message (at-least-once, as with any SMTP sender).
"""

from __future__ import annotations

from datetime import UTC, datetime
from datetime import time as clock
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from belltower.errors import InvalidInput, Unavailable
from belltower.jobtypes import JobContext, JobType
from belltower.mail import MailSession

from ..report import Tally

HHMM = r"^(([01][0-9]|2[0-3]):[0-5][0-9])?$"
OUTBOX = "outbox"


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


def allowed(local: clock, before: clock, after: clock) -> bool:
    """Whether calls and SMS may go out at ``local`` time, between ``before`` and ``after``."""
    if before <= after:
        return before <= local < after
    return local >= before or local < after  # a window across midnight


async def run(ctx: JobContext, params: CommunicationQueueParams) -> None:
    pool = await ctx.db.pool()
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
    now = datetime.now(UTC)
    local = now.astimezone(zone)
    phone_ok = allowed(local.time(), before, after)
    tally = Tally("Communication queue")
    tally.fact(
        f"local time {local:%H:%M} {zone_name}; calls and SMS allowed {before:%H:%M}-{after:%H:%M}: "
        + ("yes" if phone_ok else "no, they wait for the next run inside those hours")
    )
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
    emailed = recorded = 0
    async with ctx.mailer.session() as mail:
        for index, item in enumerate(due, 1):
            emailed, recorded = await _handle(
                ctx, pool, item["id"], mail, params, tally, emailed, recorded
            )
            if index % 100 == 0:
                await ctx.progress(index, len(due), f"{index} of {len(due)} messages handled")
    if recorded:
        tally.fact(
            f"{recorded} call/SMS/push messages were recorded in sis.outbox only: no SMS or voice "
            "provider is configured, so they have not reached any phone"
        )
    more = await pool.fetchval(
        "SELECT count(*) FROM sis.communication_queue WHERE state = 'queued' AND send_after <= $1 AND attempts < $2 "
        "AND (channel = 'email' OR $3)",
        now, params.max_attempts, phone_ok,
    )  # fmt: skip
    if more:
        tally.fact(f"{more} due messages left for the next run (batch size {params.batch_size})")
    tally.write(
        ctx,
        f"{emailed} e-mails sent, {recorded} calls/SMS recorded to the outbox (no provider), "
        f"{held} held for quiet hours, {tally.failed} failed",
    )


async def _handle(
    ctx: JobContext,
    pool: Any,
    queue_id: int,
    mail: MailSession,
    params: CommunicationQueueParams,
    tally: Tally,
    emailed: int,
    recorded: int,
) -> tuple[int, int]:
    """Send or record one queued message, holding its row until it is marked sent."""
    async with pool.acquire() as conn, conn.transaction():
        msg = await conn.fetchrow(
            "SELECT * FROM sis.communication_queue WHERE id = $1 AND state = 'queued' FOR UPDATE SKIP LOCKED",
            queue_id,
        )
        if msg is None:
            return emailed, recorded  # sent by an overlapping run meanwhile
        record = f"#{msg['id']} {msg['channel']} to {msg['to_address']}"
        if msg["channel"] == "email":
            try:
                await mail.send(
                    [msg["to_address"]], msg["subject"], msg["body_text"], msg["body_html"]
                )
            except Unavailable as exc:
                failed = msg["attempts"] + 1 >= params.max_attempts
                await conn.execute(
                    "UPDATE sis.communication_queue SET attempts = attempts + 1, last_error = $2, "
                    "state = CASE WHEN $3 THEN 'failed' ELSE state END WHERE id = $1",
                    msg["id"], exc.message, failed,
                )  # fmt: skip
                tally.fail(
                    record, exc.message + ("; giving up" if failed else "; retried next run")
                )
                return emailed, recorded
            except Exception as exc:
                # A message that can never be sent (a line break in its subject, an address
                # the mail library refuses): failed now with the reason, and the queue goes on.
                reason = f"cannot be sent: {exc or type(exc).__name__}"[:500]
                await conn.execute(
                    "UPDATE sis.communication_queue SET attempts = attempts + 1, last_error = $2, "
                    "state = 'failed' WHERE id = $1",
                    msg["id"], reason,
                )  # fmt: skip
                tally.fail(record, reason + "; not retried")
                return emailed, recorded
            emailed += 1
        else:
            await conn.execute(
                """INSERT INTO sis.outbox (queue_id, channel, to_address, body_text, provider)
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT (queue_id) DO NOTHING""",
                msg["id"], msg["channel"], msg["to_address"], msg["body_text"], OUTBOX,
            )  # fmt: skip
            recorded += 1
        await conn.execute(
            "UPDATE sis.communication_queue SET state = 'sent', sent_at = now(), attempts = attempts + 1 WHERE id = $1",
            msg["id"],
        )
        tally.ok(
            record,
            "e-mailed" if msg["channel"] == "email" else "recorded in sis.outbox, not delivered",
        )
    return emailed, recorded


job_type = JobType(
    name="messaging.communication_queue",
    pool="integration",
    title="Communication Queue",
    description=(
        "Sends the messages waiting in the communication queue that are due at or before now. "
        "E-mails go out when scheduled; calls and text messages respect the 'do not send before' "
        "and 'do not send after' preferences in the school's time zone. Run it every 15 minutes."
    ),
    params=CommunicationQueueParams,
    run=run,
)
