"""E-mail to students' families: the seeds' Email Notifications and SSS Parent Portal
Notifications.

``messaging.email_notifications`` queues an e-mail for each student notification not yet queued
(``sis.student_notifications``: attendance, billing fees, grades, discipline, assignments,
events) to the student and to their guardians, and marks it queued in the same transaction.
``messaging.sss_parent_notifications`` e-mails each student's primary guardian (contact priority
1) about a Student Support Services alert left unread in the parent portal for 24 hours
(``sis.sss_alerts``), once per alert. Both queue into the communication queue, which sends
e-mail when it runs; each (notification or alert, recipient) is queued once ever.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from belltower import sis
from belltower.jobtypes import JobContext, JobType

from ..guardian_mail import GuardianParams, Meta, Queued, enqueue
from ..report import Tally

Category = Literal["attendance", "billing", "grades", "discipline", "assignments", "events"]
Batch = Annotated[int, Meta(ge=1, le=10_000, description="at most this many per run")]


class EmailNotificationsParams(GuardianParams, kw_only=True, forbid_unknown_fields=True):
    categories: Annotated[
        list[Category], Meta(description="which notifications; empty: every category")
    ] = []
    notify_students: Annotated[bool, Meta(description="e-mail the student too")] = True
    notify_guardians: Annotated[bool, Meta(description="e-mail the student's guardians")] = True
    batch_size: Batch = 1000


class SssParentParams(GuardianParams, kw_only=True, forbid_unknown_fields=True):
    unread_hours: Annotated[
        int, Meta(ge=1, le=24 * 60, description="e-mail once an alert is unread this long")
    ] = 24
    guardian_primary_only: Annotated[
        bool, Meta(description="only the primary contact (contact priority 1), as the seed says")
    ] = True
    batch_size: Batch = 1000


def _family(
    what: str, key: str, subject: str, body: str, student: int, guardians: list[sis.Guardian],
    contact: sis.Contact | None, tally: Tally,
) -> list[Queued]:  # fmt: skip
    """The e-mails about one thing: to the student (when ``contact`` is given) and guardians."""
    out = []
    if contact is not None and contact.email:
        out.append(
            Queued(
                "email", contact.email, subject, body, f"{key}:person:{student}", person_id=student
            )
        )
    for g in guardians:
        if g.email:
            out.append(Queued("email", g.email, subject, body, f"{key}:guardian:{g.guardian_id}",
                              person_id=student, guardian_id=g.guardian_id))  # fmt: skip
    if out:
        tally.ok(what, f"{len(out)} e-mails queued")
    else:
        tally.skip(what, "nobody to e-mail: no address the school may use")
    return out


async def email_notifications(ctx: JobContext, params: EmailNotificationsParams) -> None:
    pool = await ctx.db.pool()
    tally = Tally("Email Notifications")
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            """SELECT id, student_id, category, subject, body_text FROM sis.student_notifications
                WHERE queued_at IS NULL AND (cardinality($1::text[]) = 0 OR category = ANY($1::text[]))
                ORDER BY created_at, id LIMIT $2 FOR UPDATE SKIP LOCKED""",
            list(params.categories), params.batch_size,
        )  # fmt: skip
        students = [r["student_id"] for r in rows]
        people = await sis.contacts(conn, students) if params.notify_students else {}
        family = await _guardians(conn, students, params) if params.notify_guardians else {}
        queued: list[Queued] = []
        for r in rows:
            queued += _family(
                f"#{r['id']} {r['category']}: {r['subject']}", f"notification:{r['id']}", r["subject"],
                r["body_text"], r["student_id"], family.get(r["student_id"], []),
                people.get(r["student_id"]), tally,
            )  # fmt: skip
        new = await enqueue(conn, queued)
        await conn.execute(
            "UPDATE sis.student_notifications SET queued_at = now() WHERE id = ANY($1::bigint[])",
            [r["id"] for r in rows],
        )
    tally.write(
        ctx,
        f"{len(rows)} notifications: {new} e-mails queued, {tally.skipped} with nobody to e-mail",
    )


async def sss_parent_notifications(ctx: JobContext, params: SssParentParams) -> None:
    pool = await ctx.db.pool()
    tally = Tally("SSS Parent Portal Notifications")
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            """SELECT id, student_id, title, body_text, created_at FROM sis.sss_alerts
                WHERE read_at IS NULL AND parent_emailed_at IS NULL
                  AND created_at <= now() - make_interval(hours => $1)
                ORDER BY created_at, id LIMIT $2 FOR UPDATE SKIP LOCKED""",
            params.unread_hours, params.batch_size,
        )  # fmt: skip
        family = await _guardians(conn, [r["student_id"] for r in rows], params)
        queued: list[Queued] = []
        told: list[int] = []
        for r in rows:
            subject = f"Unread alert in the parent portal: {r['title']}"
            body = (f"An alert about your student has been waiting unread in the parent portal since "
                    f"{r['created_at']:%Y-%m-%d %H:%M} UTC:\n\n{r['body_text']}\n")  # fmt: skip
            mine = _family(f"alert #{r['id']}: {r['title']}", f"sss_alert:{r['id']}", subject, body,
                           r["student_id"], family.get(r["student_id"], []), None, tally)  # fmt: skip
            queued += mine
            if mine:
                told.append(r["id"])
        new = await enqueue(conn, queued)
        await conn.execute(
            "UPDATE sis.sss_alerts SET parent_emailed_at = now() WHERE id = ANY($1::bigint[])", told
        )
    tally.write(ctx, f"{len(rows)} alerts unread for {params.unread_hours} h: {new} e-mails queued to parents, "
                     f"{tally.skipped} with no parent to e-mail")  # fmt: skip


async def _guardians(
    conn: Any, students: list[int], params: GuardianParams
) -> dict[int, list[sis.Guardian]]:
    return await sis.guardians_of(
        conn, students, params.guardian_relationships, primary_only=params.guardian_primary_only
    )


email_notifications_type = JobType(
    name="messaging.email_notifications",
    pool="integration",
    title="Email Notifications",
    description=(
        "Queues up student notifications regarding Attendance, Billing Fees, Grades, Discipline, "
        "Assignments, and Events to send emails to parents/students. The Communication Queue "
        "job sends them."
    ),
    params=EmailNotificationsParams,
    run=email_notifications,
)

sss_parent_type = JobType(
    name="messaging.sss_parent_notifications",
    pool="integration",
    title="SSS Parent Portal Notifications",
    description=(
        "Sends an email to the parent (contact priority of 1) if an SSS alert remains unread for "
        "24 hours. The Communication Queue job sends it."
    ),
    params=SssParentParams,
    run=sss_parent_notifications,
)
