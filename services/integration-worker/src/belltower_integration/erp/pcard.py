"""``finance.pcard_reminder``: Focus's PCard Email Reminder (ERP) (seed 001).

Draft and Pending Approval P-Card requisitions (``sis.erp_pcard_requisitions``) that have been
in that status for the set number of days or more are mailed to the P-Card Administrator: one
message per status, listing them, with the subject and opening text of the ERP clauses
``pcard_draft_email`` and ``pcard_pending_approval_email`` (``sis.erp_clauses``, rendered in
the template sandbox with ``days`` and ``count``). The days and the administrator's address come
from the school preferences ``pcard_reminder_days`` and ``pcard_administrator`` (ERP > Setup >
Settings), which the job's ``days`` and ``administrator`` override. A requisition is reminded
once per status (``sis.erp_pcard_reminders``); one sent back to draft later is reminded again
only if it re-enters the status after its reminder. The reminders are recorded in the same
transaction that the mail is sent in, so a re-run of the occurrence sends nothing twice;
``dry_run`` lists and sends nothing.
"""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Annotated, Any

import msgspec

from belltower.errors import JobFailed, Unavailable
from belltower.jobtypes import JobContext, JobType
from belltower.templates import render

from ..calculations.common import SEED_001, Meta, preference, school_today

STATUSES = {
    "draft": ("pcard_draft_email", "Draft"),
    "pending_approval": ("pcard_pending_approval_email", "Pending Approval"),
}
EMAIL_PATTERN = r"^[^@\s<>,;\x00-\x1f]{1,64}@[^@\s<>,;\x00-\x1f]{1,190}$"
EMAIL = re.compile(EMAIL_PATTERN)
Email = Annotated[str, Meta(pattern=EMAIL_PATTERN, max_length=254)]


class PCardParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    days: Annotated[
        Annotated[int, Meta(ge=1, le=365)] | None,
        Meta(description="days old; default: the pcard_reminder_days setting"),
    ] = None
    administrator: Annotated[
        Email | None,
        Meta(description="the P-Card Administrator; default: the pcard_administrator setting"),
    ] = None
    dry_run: Annotated[bool, Meta(description="list what would be sent, send nothing")] = False


async def run(ctx: JobContext, params: PCardParams) -> None:
    pool = await ctx.db.pool()
    today = await school_today(pool, ctx, None)
    setting = await preference(pool, "pcard_reminder_days", "7")
    days = params.days or (int(setting) if setting.isdigit() and 0 < int(setting) <= 365 else 7)
    admin = params.administrator or (await preference(pool, "pcard_administrator", "")).strip()
    if not EMAIL.fullmatch(admin):
        raise JobFailed(
            "no P-Card Administrator: set the pcard_administrator school preference "
            "(ERP > Setup > Settings) or the job's administrator"
        )
    out = ctx.output
    sent = 0
    found = 0
    async with pool.acquire() as conn:
        for status, (clause_code, label) in STATUSES.items():
            # One transaction per status: its reminders are recorded with the mail that tells them.
            async with conn.transaction():
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext('finance.pcard_reminder'))"
                )
                rows = await conn.fetch(
                    """SELECT r.*, p.first_name, p.last_name FROM sis.erp_pcard_requisitions r
                         JOIN sis.people p ON p.id = r.requester_id
                        WHERE r.status = $1 AND r.status_since <= $2
                          AND NOT EXISTS (SELECT 1 FROM sis.erp_pcard_reminders m
                                           WHERE m.requisition_id = r.id AND m.status = $1
                                             AND m.sent_at::date >= r.status_since)
                        ORDER BY r.status_since, r.number""",
                    status, today - timedelta(days=days),
                )  # fmt: skip
                if not rows:
                    continue
                found += len(rows)
                clause = await conn.fetchrow(
                    "SELECT * FROM sis.erp_clauses WHERE code = $1", clause_code
                )
                if clause is None:
                    raise JobFailed(
                        f"the ERP clause {clause_code!r} is not set up (ERP > Setup > Clauses)"
                    )
                context: dict[str, Any] = {"days": days, "count": len(rows)}
                subject = render(clause["subject"], f"clause.{clause_code}.subject", context)[:200]
                opening = render(clause["body"], f"clause.{clause_code}.body", context)
                listed = [
                    (r["number"], f"{r['first_name']} {r['last_name']}", r["vendor"], f"{r['amount']:,.2f}",
                     (today - r["status_since"]).days)
                    for r in rows
                ]  # fmt: skip
                text = (
                    opening
                    + "\n\n"
                    + "\n".join(
                        f"{n}  {who}  {vendor}  {amount}  ({age} days)"
                        for n, who, vendor, amount, age in listed
                    )
                )
                body_html = (
                    f"<p>{html.escape(opening)}</p><table><tr><th>Requisition</th><th>Requester</th>"
                    "<th>Vendor</th><th>Amount</th><th>Days</th></tr>"
                    + "".join(
                        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
                        for row in listed
                    )
                    + "</table>"
                )
                out.line(
                    f"{label}: {len(rows)} requisition(s) {days} days old or more: "
                    + ", ".join(r[0] for r in listed)
                )
                if params.dry_run:
                    continue
                await conn.executemany(
                    """INSERT INTO sis.erp_pcard_reminders (requisition_id, status, sent_to, occurrence_id)
                       VALUES ($1, $2, $3, $4)
                       ON CONFLICT (requisition_id, status) DO UPDATE
                       SET sent_to = EXCLUDED.sent_to, occurrence_id = EXCLUDED.occurrence_id, sent_at = now()""",
                    [(r["id"], status, admin, ctx.occurrence_id) for r in rows],
                )
                try:
                    await ctx.mailer.send([admin], subject, text, body_html)
                except Unavailable as exc:
                    raise JobFailed(f"the reminder was not mailed: {exc.message}") from None
                sent += 1
    tail = " (dry run: nothing sent)" if params.dry_run else ""
    out.summary = (
        f"PCard email reminder: {found} requisition(s) {days} days old or more, "
        f"{sent} e-mail(s) to the P-Card Administrator{tail}"
    )
    out.line(out.summary)


job_type = JobType(
    name="finance.pcard_reminder",
    pool="integration",
    title="PCard Email Reminder (ERP)",
    description=(
        "E-mails the P-Card Administrator the Draft and Pending Approval P-Card requisitions "
        "that have reached the set number of days old, with the texts of the ERP clauses "
        "'Default P-Card Draft Email Text' and 'Default P-Card Pending Approval Email'. From "
        + SEED_001
        + ": 'PCard Email Reminder (ERP)'."
    ),
    params=PCardParams,
    run=run,
)
