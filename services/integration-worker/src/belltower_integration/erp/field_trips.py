"""``messaging.field_trip_notifications``: Focus's Field Trip Notifications (ERP) (seed 001).

"Ensures users receive all Transportation related notifications including alerts and emails":
the field trip workflow (request submitted, approved, denied, bus assigned, ...) leaves each
notification for one person in ``sis.erp_transportation_notices`` as an in-app alert, an
e-mail or both; this job delivers every one not yet delivered. An alert becomes the person's
in-app reminder (``sis.reminders``, source ``field_trip:<notice id>``, so it is made once); an
e-mail goes to the person's primary address through the school's SMTP server. Each notice is
stamped (``alerted_at``, ``emailed_at``) in the transaction that delivered it, so a re-run of
the occurrence sends nothing twice; a person with no e-mail address gets the alert part only and
the notice keeps a ``problem`` and is tried again on the next run (counted each time). ``dry_run`` counts and sends nothing.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from belltower import sis
from belltower.errors import JobFailed, Unavailable
from belltower.jobtypes import JobContext, JobType

from ..calculations.common import SEED_001, Meta

NO_EMAIL = "no primary e-mail address"


class FieldTripParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    max_notices: Annotated[
        int, Meta(ge=1, le=10_000, description="deliver at most this many notices per run")
    ] = 1000
    dry_run: Annotated[bool, Meta(description="count what would be delivered, send nothing")] = (
        False
    )


async def run(ctx: JobContext, params: FieldTripParams) -> None:
    pool = await ctx.db.pool()
    counts = {"alerts": 0, "e-mails": 0, "without e-mail address": 0}
    async with pool.acquire() as conn:
        notices = await conn.fetch(
            """SELECT n.*, t.number AS trip FROM sis.erp_transportation_notices n
                 LEFT JOIN sis.erp_field_trips t ON t.id = n.field_trip_id
                WHERE (n.channel IN ('alert', 'both') AND n.alerted_at IS NULL)
                   OR (n.channel IN ('email', 'both') AND n.emailed_at IS NULL)
                ORDER BY n.created_at, n.id LIMIT $1""",
            params.max_notices,
        )  # fmt: skip
        who = await sis.contacts(conn, [n["person_id"] for n in notices])
        for n in notices:
            alert = n["channel"] in ("alert", "both") and n["alerted_at"] is None
            email = n["channel"] in ("email", "both") and n["emailed_at"] is None
            address = who[n["person_id"]].email if n["person_id"] in who else None
            if email and not address:
                counts["without e-mail address"] += 1
                email = False
            counts["alerts"] += alert
            counts["e-mails"] += email
            if params.dry_run:
                continue
            async with conn.transaction():
                # Taken again under a row lock: a parallel run that delivered it first wins.
                still = await conn.fetchrow(
                    "SELECT alerted_at, emailed_at FROM sis.erp_transportation_notices WHERE id = $1 FOR UPDATE",
                    n["id"],
                )
                if still is None:
                    continue
                if alert and still["alerted_at"] is None:
                    reminder = await conn.fetchval(
                        """INSERT INTO sis.reminders (person_id, source, job_id, occurrence_id, title, body_text)
                           VALUES ($1, $2, $3, $4, $5, $6)
                           ON CONFLICT (person_id, source, occurrence_id) DO NOTHING RETURNING id""",
                        n["person_id"], f"field_trip:{n['id']}", ctx.job_id, ctx.occurrence_id,
                        n["subject"][:200], n["body"],
                    )  # fmt: skip
                    await conn.execute(
                        """UPDATE sis.erp_transportation_notices SET alerted_at = now(),
                                  reminder_id = coalesce($2, reminder_id) WHERE id = $1""",
                        n["id"], reminder,
                    )  # fmt: skip
                if not address and n["channel"] in ("email", "both"):
                    await conn.execute(
                        "UPDATE sis.erp_transportation_notices SET problem = $2 WHERE id = $1",
                        n["id"], NO_EMAIL,
                    )  # fmt: skip
                if email and address and still["emailed_at"] is None:
                    await conn.execute(
                        "UPDATE sis.erp_transportation_notices SET emailed_at = now(), problem = NULL WHERE id = $1",
                        n["id"],
                    )
                    try:
                        await ctx.mailer.send([address], n["subject"][:200], n["body"])
                    except Unavailable as exc:
                        raise JobFailed(
                            f"transportation notice {n['id']} was not mailed: {exc.message}"
                        ) from None
    out = ctx.output
    tail = " (dry run: nothing sent)" if params.dry_run else ""
    said = ", ".join(f"{v} {k}" for k, v in counts.items())
    out.summary = f"Field trip notifications: {said} of {len(notices)} notice(s){tail}"
    out.line(out.summary)
    if len(notices) == params.max_notices:
        out.line(f"stopped at max_notices ({params.max_notices}); the rest go on the next run")


job_type = JobType(
    name="messaging.field_trip_notifications",
    pool="integration",
    title="Field Trip Notifications (ERP)",
    description=(
        "Delivers the Transportation (field trip) notifications waiting for their people: "
        "in-app alerts and e-mails, each once. From " + SEED_001 + ": 'Field Trip Notifications "
        "(ERP)'."
    ),
    params=FieldTripParams,
    run=run,
)
