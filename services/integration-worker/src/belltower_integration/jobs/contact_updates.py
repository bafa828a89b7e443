"""``messaging.communication_status_update``: Focus's Communication Status Update(s).

The texts and calls the Communication Queue sent (``sis.outbox``, whose delivery status the
queue follows up with the provider) that could not reach their recipient: a final status of
``failed``, ``undelivered``, ``busy`` or ``no-answer`` (not a STOP: an opted-out number is
reachable, it only must not be texted), or a queued text or call refused for good before it
left. For each recipient and unreachable number the Call Out System re-enrollment form is
published once (``sis.contact_update_requests``): the Student form to a person, the Parent form
to a guardian, about the student the message was for. A request whose form the recipient has
since submitted (``sis.form_submissions`` of that form, person and guardian, after publishing)
is completed, and the completed forms, with the updated contact information they hold and the
unsuccessful messages behind them, are e-mailed to the school's group, each once.

One transaction per run: the e-mail goes out before the requests are marked forwarded, and a
failed send rolls them back, so the next run sends it again (at least once, like SMTP).
"""

from __future__ import annotations

import html
import json
from datetime import timedelta
from typing import Annotated, Any

import asyncpg
import msgspec

from belltower import sis
from belltower.errors import InvalidInput
from belltower.jobtypes import JobContext, JobType

from ..calculations.common import SEED_001, Code
from ..report import Tally

Meta = msgspec.Meta
UNREACHED = ("failed", "undelivered", "busy", "no-answer")
STUDENT_FORM = "callout_student_reenrollment_form"
PARENT_FORM = "callout_parent_reenrollment_form"


class StatusUpdateParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    student_form: Annotated[
        Code | None,
        Meta(
            description=f"the Student re-enrollment form's code; default: preference {STUDENT_FORM}"
        ),
    ] = None
    parent_form: Annotated[
        Code | None,
        Meta(
            description=f"the Parent re-enrollment form's code; default: preference {PARENT_FORM}"
        ),
    ] = None
    group: Annotated[
        Code, Meta(description="the notification group the completed forms are e-mailed to")
    ] = "REGISTRAR"
    look_back_days: Annotated[
        int, Meta(ge=1, le=366, description="unsuccessful messages this recent publish a form")
    ] = 30
    dry_run: Annotated[
        bool, Meta(description="report what would be published and e-mailed, change nothing")
    ] = False


async def _form(conn: asyncpg.Connection, code: str | None, key: str, field: str) -> int:
    chosen = code or await conn.fetchval(
        "SELECT value FROM sis.school_preferences WHERE key = $1", key
    )
    if not chosen:
        raise InvalidInput(
            f"param.{field}", "no re-enrollment form chosen",
            f"the form's code in {field}, or the school preference {key}",
        )  # fmt: skip
    form = await conn.fetchval("SELECT id FROM sis.forms WHERE upper(code) = upper($1)", chosen)
    if form is None:
        raise InvalidInput(f"param.{field}", f"no form {chosen!r}", "a code in sis.forms")
    return int(form)


_UNSUCCESSFUL = """
SELECT q.person_id, q.guardian_id, q.to_address, count(*)::int AS failures,
       max(coalesce(o.status_at, q.created_at)) AS last_at,
       (array_agg(coalesce(o.status || coalesce(' (error ' || o.error_code || ')', ''),
                           q.last_error, 'failed')
                  ORDER BY coalesce(o.status_at, q.created_at) DESC))[1] AS last_failure
  FROM sis.communication_queue q
  LEFT JOIN sis.outbox o ON o.queue_id = q.id
 WHERE q.channel IN ('sms', 'voice') AND q.person_id IS NOT NULL
   AND ((o.status = ANY($1::text[]) AND coalesce(o.error_code, 0) <> 21610)
        OR (o.id IS NULL AND q.state = 'failed'))
   AND coalesce(o.status_at, q.created_at) >= $2
   AND NOT EXISTS (SELECT 1 FROM sis.sms_opt_outs x WHERE x.phone = q.to_address)
 GROUP BY q.person_id, q.guardian_id, q.to_address
 ORDER BY q.person_id, q.guardian_id NULLS FIRST, q.to_address
"""

_COMPLETE = """
UPDATE sis.contact_update_requests r SET submission_id = f.sid, completed_at = f.submitted_at
  FROM (SELECT DISTINCT ON (r2.id) r2.id AS rid, s.id AS sid, s.submitted_at
          FROM sis.contact_update_requests r2
          JOIN sis.form_submissions s ON s.form_id = r2.form_id AND s.person_id = r2.person_id
               AND s.guardian_id IS NOT DISTINCT FROM r2.guardian_id AND s.submitted_at >= r2.published_at
         WHERE r2.submission_id IS NULL
         ORDER BY r2.id, s.submitted_at, s.id) f
 WHERE r.id = f.rid
RETURNING r.id
"""

_TO_FORWARD = """
SELECT r.id, r.unreachable, r.failures, r.last_failure, r.last_failed_at, r.completed_at,
       p.sis_id, p.first_name || ' ' || p.last_name AS student, f.title AS form, s.answers,
       g.sis_id AS guardian_sis_id, g.first_name || ' ' || g.last_name AS guardian
  FROM sis.contact_update_requests r
  JOIN sis.people p ON p.id = r.person_id
  JOIN sis.forms f ON f.id = r.form_id
  JOIN sis.form_submissions s ON s.id = r.submission_id
  LEFT JOIN sis.guardians g ON g.id = r.guardian_id
 WHERE r.forwarded_at IS NULL
 ORDER BY r.completed_at, r.id
   FOR UPDATE OF r
"""


def _who(row: Any) -> str:
    if row["guardian_sis_id"]:
        return f"{row['guardian']} ({row['guardian_sis_id']}), parent of {row['student']} ({row['sis_id']})"
    return f"{row['student']} ({row['sis_id']})"


def _answers(row: Any) -> list[tuple[str, str]]:
    raw = row["answers"]
    data = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(data, dict):
        return [("answers", str(data))]
    return [(str(k), str(v)) for k, v in data.items()]


def _mail(rows: list[Any]) -> tuple[str, str, str]:
    subject = f"Updated contact information: {len(rows)} completed re-enrollment form" + (
        "s" if len(rows) != 1 else ""
    )
    text, parts = [subject, ""], [f"<p>{html.escape(subject)}</p>"]
    for row in rows:
        head = f"{_who(row)}: {row['form']}, completed {row['completed_at']:%Y-%m-%d %H:%M}"
        failed = (
            f"unreachable at {row['unreachable']}: {row['failures']} unsuccessful message(s), "
            f"last {row['last_failed_at']:%Y-%m-%d %H:%M} ({row['last_failure']})"
        )
        answers = _answers(row)
        text += [head, "  " + failed, *(f"  {k}: {v}" for k, v in answers), ""]
        parts.append(
            f"<h3>{html.escape(head)}</h3><p>{html.escape(failed)}</p><table>"
            + "".join(
                f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in answers
            )
            + "</table>"
        )
    return subject, "\n".join(text), "".join(parts)


async def run(ctx: JobContext, params: StatusUpdateParams) -> None:
    pool = await ctx.db.pool()
    tally = Tally("Communication status update")
    since = ctx.scheduled_for - timedelta(days=params.look_back_days)
    published = refreshed = completed = forwarded = 0
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", ctx.job_type)
            student_form = await _form(conn, params.student_form, STUDENT_FORM, "student_form")
            parent_form = await _form(conn, params.parent_form, PARENT_FORM, "parent_form")
            members = await sis.group_members(conn, params.group)
            to = sorted({m.contact.email for m in members if m.by_email and m.contact.email})
            for row in await conn.fetch(_UNSUCCESSFUL, list(UNREACHED), since):
                form = parent_form if row["guardian_id"] is not None else student_form
                inserted = await conn.fetchval(
                    """INSERT INTO sis.contact_update_requests (person_id, guardian_id, form_id, unreachable,
                              failures, last_failure, last_failed_at, occurrence_id)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                       ON CONFLICT (person_id, coalesce(guardian_id, 0), unreachable) DO UPDATE
                          SET failures = EXCLUDED.failures, last_failure = EXCLUDED.last_failure,
                              last_failed_at = EXCLUDED.last_failed_at
                        WHERE contact_update_requests.forwarded_at IS NULL
                          AND (contact_update_requests.failures, contact_update_requests.last_failed_at)
                              IS DISTINCT FROM (EXCLUDED.failures, EXCLUDED.last_failed_at)
                       RETURNING (xmax = 0)""",
                    row["person_id"], row["guardian_id"], form, row["to_address"], row["failures"],
                    row["last_failure"][:300], row["last_at"], ctx.occurrence_id,
                )  # fmt: skip
                if inserted:
                    published += 1
                    whom = "guardian" if row["guardian_id"] else "person"
                    tally.ok(row["to_address"], f"re-enrollment form published to the {whom} "
                             f"({row['failures']} unsuccessful, last: {row['last_failure']})")  # fmt: skip
                elif inserted is not None:
                    refreshed += 1
            completed = len(await conn.fetch(_COMPLETE))
            rows = list(await conn.fetch(_TO_FORWARD))
            if rows and not to:
                raise InvalidInput(
                    "param.group", f"group {params.group} has no member taking e-mail",
                    "a group with members to e-mail the completed forms to",
                )  # fmt: skip
            if rows and not params.dry_run:
                subject, text, body = _mail(rows)
                await ctx.mailer.send(to, subject, text, body)
                await conn.execute(
                    "UPDATE sis.contact_update_requests SET forwarded_at = now() WHERE id = ANY($1::bigint[])",
                    [r["id"] for r in rows],
                )
            forwarded = len(rows)
            for row in rows:
                tally.ok(_who(row), f"completed {row['form']} e-mailed to {params.group}")
        except BaseException:
            await tx.rollback()
            raise
        if params.dry_run:
            await tx.rollback()
        else:
            await tx.commit()
    verb = "would be " if params.dry_run else ""
    tally.fact(f"{refreshed} open requests had new unsuccessful messages")
    tally.fact(f"{completed} forms completed since the last run; completed forms {verb}e-mailed to "
               f"{', '.join(to) or '(nobody)'}")  # fmt: skip
    tally.write(
        ctx,
        f"{published} forms {verb}published, {completed} completed, {forwarded} {verb}e-mailed"
        + (" (dry run: nothing written or sent)" if params.dry_run else ""),
    )


job_type = JobType(
    name="messaging.communication_status_update",
    pool="integration",
    title="Communication Status Update",
    description=(
        "For messages and phone calls of the Communication module that could not reach the "
        "number a recipient supplied, publishes the Call Out System Student or Parent "
        "re-enrollment form to that student, parent or user once; when they complete it, "
        "e-mails the completed form with the updated contact information and the unsuccessful "
        "calls to the school's group. From " + SEED_001 + ": 'Communication Status Update' "
        "and 'Communication Status Updates'."
    ),
    params=StatusUpdateParams,
    run=run,
)
