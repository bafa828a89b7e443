"""``messaging.automated_emails``: the seeds' Automated Emails (Automated Cron Messages).

Each active row of ``sis.automated_messages`` whose ``next_send_at`` has come is rendered for
every person of its statuses (and, with ``to_guardians``, each student's guardians the school may
contact) and queued for the Communication Queue; then ``next_send_at`` moves to the cron
expression's next time after now, in the same transaction. A message's sending is keyed by the
time it was due, so a redelivered run queues nothing twice. A message that cannot be sent (a
cron expression or template that does not parse, nobody with an address) is reported; with
``mark_failed_when_errors`` the run then fails, as the seed's check box says.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from belltower import sis, templates
from belltower.errors import InvalidInput, JobFailed
from belltower.jobtypes import JobContext, JobType

from ..guardian_mail import GuardianParams, Meta, Queued, enqueue
from ..report import Tally

PEOPLE_SQL = """
SELECT p.id, p.sis_id, p.first_name, p.last_name, p.status FROM sis.people p
 WHERE p.status = ANY($1::text[]) ORDER BY p.id
"""


class AutomatedEmailsParams(GuardianParams, kw_only=True, forbid_unknown_fields=True):
    messages: Annotated[
        list[str], Meta(description="codes of the automated messages; empty: every active one")
    ] = []
    mark_failed_when_errors: Annotated[
        bool, Meta(description="mark the run failed when one or more e-mails had an error")
    ] = False


def _next(cron: str, after: datetime, zone: ZoneInfo) -> datetime:
    return next(CronSim(cron, after.astimezone(zone))).astimezone(UTC)


async def run(ctx: JobContext, params: AutomatedEmailsParams) -> None:
    pool = await ctx.db.pool()
    prefs = dict(await pool.fetch("SELECT key, value FROM sis.school_preferences"))
    try:
        zone = ZoneInfo(prefs.get("time_zone", "UTC"))
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            "sis.school_preferences.time_zone", "not a time zone", "an IANA name"
        ) from None
    now = datetime.now(UTC)
    codes = [c.upper() for c in params.messages]
    tally = Tally("Automated Emails")
    rows = await pool.fetch(
        """SELECT id, code FROM sis.automated_messages WHERE active
              AND (cardinality($1::text[]) = 0 OR upper(code) = ANY($1::text[])) ORDER BY code""",
        codes,
    )
    if unknown := sorted(set(codes) - {r["code"].upper() for r in rows}):
        raise InvalidInput("param.messages", f"no active automated messages {', '.join(unknown)}")
    queued = 0
    for row in rows:
        async with pool.acquire() as conn, conn.transaction():
            queued += await _one(conn, row["id"], now, zone, params, tally)
    tally.write(
        ctx, f"{len(rows)} automated messages: {queued} e-mails queued, {tally.failed} with errors"
    )
    if params.mark_failed_when_errors and tally.failed:
        raise JobFailed(f"{tally.failed} automated messages had errors (see the output); the e-mails "
                        "that could be sent are queued")  # fmt: skip


async def _one(
    conn: Any,
    message_id: int,
    now: datetime,
    zone: ZoneInfo,
    params: AutomatedEmailsParams,
    tally: Tally,
) -> int:
    m = await conn.fetchrow(
        "SELECT * FROM sis.automated_messages WHERE id = $1 FOR UPDATE", message_id
    )
    try:
        following = _next(m["cron"], now, zone)
    except (CronSimError, ValueError) as exc:
        tally.fail(m["code"], f"cron expression {m['cron']!r} does not parse: {exc}")
        return 0
    due = m["next_send_at"]
    if due is None or due > now:
        if due is None:
            await conn.execute(
                "UPDATE sis.automated_messages SET next_send_at = $2 WHERE id = $1",
                m["id"],
                following,
            )
        tally.skip(m["code"], f"next due {(due or following):%Y-%m-%d %H:%M} UTC")
        return 0
    try:
        queued = await _render_all(conn, m, due, params)
    except InvalidInput as exc:
        tally.fail(m["code"], exc.message)
        return 0
    new = await enqueue(conn, queued)
    await conn.execute(
        "UPDATE sis.automated_messages SET next_send_at = $2, last_sent_at = now() WHERE id = $1",
        m["id"],
        following,
    )
    if queued:
        tally.ok(m["code"], f"{new} e-mails queued (due {due:%Y-%m-%d %H:%M} UTC)")
    else:
        tally.fail(m["code"], "nobody with an e-mail address to send it to")
    return new


async def _render_all(
    conn: Any, m: Any, due: datetime, params: AutomatedEmailsParams
) -> list[Queued]:
    field = f"sis.automated_messages[{m['code']}]"
    templates.check_template(m["subject"], field + ".subject")
    templates.check_template(m["body_text"], field + ".body_text")
    people = await conn.fetch(PEOPLE_SQL, list(m["statuses"]))
    contacts = await sis.contacts(conn, [p["id"] for p in people])
    family = (
        await sis.guardians_of(conn, [p["id"] for p in people if p["status"] == "student"],
                               params.guardian_relationships, primary_only=params.guardian_primary_only)
        if m["to_guardians"] else {}
    )  # fmt: skip
    key = f"automated:{m['id']}:{due:%Y%m%dT%H%M%S}"
    out: list[Queued] = []
    for p in people:
        about = {"first_name": p["first_name"], "last_name": p["last_name"], "sis_id": p["sis_id"]}
        email = contacts[p["id"]].email if p["id"] in contacts else None
        if m["to_people"] and email:
            out.append(
                _render(
                    m,
                    field,
                    about | {"to_guardian": False},
                    email,
                    f"{key}:person:{p['id']}",
                    p["id"],
                    None,
                )
            )
        for g in family.get(p["id"], []):
            if g.email:
                context = about | {"to_guardian": True, "guardian_name": g.name}
                out.append(
                    _render(
                        m,
                        field,
                        context,
                        g.email,
                        f"{key}:guardian:{g.guardian_id}",
                        p["id"],
                        g.guardian_id,
                    )
                )
    return out


def _render(
    m: Any,
    field: str,
    context: dict[str, Any],
    to: str,
    key: str,
    person: int,
    guardian: int | None,
) -> Queued:
    subject = templates.render(m["subject"], field + ".subject", context).strip()
    body = templates.render(m["body_text"], field + ".body_text", context).strip() + "\n"
    return Queued("email", to, subject, body, key, person_id=person, guardian_id=guardian)


job_type = JobType(
    name="messaging.automated_emails",
    pool="integration",
    title="Automated Emails",
    description=(
        "Sends out the emails associated with the Automated Cron Messages: each message comes due "
        "by its cron expression and is queued for its recipients. Optionally marks the run failed "
        "when there is an error on one or more emails."
    ),
    params=AutomatedEmailsParams,
    run=run,
)
