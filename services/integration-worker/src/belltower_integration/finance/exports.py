"""The snapshot exports: Billing Summary, PowerFAIDS, Nelnet current balances, JFA users and the
Conclusive course history. Each reads the SIS once, writes one file into the batch folder
atomically (the SFTP Upload job sends it on), records it, and writes nothing again when the
same occurrence runs again."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Protocol

from belltower import sis
from belltower.fences import BatchPath
from belltower.jobtypes import JobContext, JobType

from ..report import Tally
from . import common
from .common import CUSTOMER, EMAIL, DryRun, FileName, Limits, Meta
from .files import export
from .layout import Field, Layout
from .layouts import billing, conclusive, jfa, nelnet, powerfaids

Folder = Annotated[BatchPath, Meta(description="folder inside the batch folder")]


class FileParams(Protocol):
    """Where a snapshot export goes; every export job's parameters have these."""

    @property
    def folder(self) -> str: ...
    @property
    def file_name(self) -> str: ...
    @property
    def dry_run(self) -> bool: ...


async def _snapshot(
    ctx: JobContext,
    params: FileParams,
    what: str,
    layout: Layout,
    rows: list[dict[str, Any]],
    noun: str,
    facts: tuple[str, ...] = (),
    fields: tuple[Field, ...] | None = None,
) -> None:
    """Write the export (once per occurrence), then the run's output."""
    tally = Tally(what)
    target = common.file_in(ctx, params.folder, params.file_name)
    done = await export(ctx, tally, layout, rows, target, dry_run=params.dry_run, fields=fields)
    for fact in facts:
        tally.fact(fact)
    again = " (already written)" if done.again else ""
    tally.write(ctx, f"{target.name}: {done.rows} {noun}{again}")


# -- Billing Summary --------------------------------------------------------------------------

SummaryColumn = Literal[
    "Student ID", "Last Name", "First Name", "Email", "Paperless", "Term", "Charges", "Payments",
    "Financial Aid", "Other Credits", "Balance", "Last Posting", "Payment Plan",
]  # fmt: skip


class BillingSummaryParams(Limits, kw_only=True, forbid_unknown_fields=True):
    term: common.TermCode = ""
    all_terms: Annotated[bool, Meta(description="every term's postings, not one term's")] = False
    columns: Annotated[
        list[SummaryColumn],
        Meta(max_length=13, description="the report's columns, in order; empty: all of them"),
    ] = []
    paperless_only: Annotated[bool, Meta(description="only accounts set to paperless billing")] = (
        False
    )
    nonzero_only: Annotated[bool, Meta(description="leave out accounts with a zero balance")] = (
        False
    )
    folder: Folder = "billing"
    file_name: FileName = "BillingSummary_{date}.csv"
    dry_run: DryRun = False


async def billing_summary(ctx: JobContext, params: BillingSummaryParams) -> None:
    pool = await ctx.db.pool()
    await sis.check_demographics(pool, params.demographics())
    term = (
        None if params.all_terms else await common.term(pool, params.term, ctx.scheduled_for.date())
    )
    args: list[Any] = [term["id"] if term else None]
    sql = f"""
        WITH ledger AS (
            SELECT t.person_id,
                   coalesce(sum(t.amount) FILTER (WHERE c.kind = 'charge'), 0) AS charges,
                   coalesce(-sum(t.amount) FILTER (WHERE c.kind = 'payment'), 0) AS payments,
                   coalesce(-sum(t.amount) FILTER (WHERE c.kind = 'financial_aid'), 0) AS aid,
                   coalesce(sum(t.amount) FILTER (WHERE c.kind IN ('refund', 'adjustment')), 0) AS other,
                   sum(t.amount) AS balance, max(t.posted_on) AS last_posted_on
              FROM sis.transactions t JOIN sis.transaction_codes c ON c.code = t.code
             WHERE $1::bigint IS NULL OR t.term_id = $1
             GROUP BY t.person_id)
        SELECT p.sis_id, p.last_name, p.first_name, {EMAIL},
               CASE WHEN coalesce(ba.paperless, false) THEN 'Y' ELSE 'N' END AS paperless,
               l.charges, l.payments, l.aid, l.other, l.balance, l.last_posted_on,
               (SELECT pp.plan_code FROM sis.payment_plans pp WHERE pp.person_id = p.id
                   AND pp.status = 'active' AND ($1::bigint IS NULL OR pp.term_id = $1)
                 ORDER BY pp.enrolled_on DESC LIMIT 1) AS plan_code
          FROM ledger l JOIN sis.people p ON p.id = l.person_id
          LEFT JOIN sis.billing_accounts ba ON ba.person_id = p.id
         WHERE {common.where(params, args)}
           {"AND coalesce(ba.paperless, false)" if params.paperless_only else ""}
           {"AND l.balance <> 0" if params.nonzero_only else ""}
         ORDER BY p.last_name, p.first_name, p.sis_id"""
    rows = [
        dict(r) | {"term_code": term["code"] if term else None}
        for r in await pool.fetch(sql, *args)
    ]
    fields = tuple(billing.SUMMARY.field(c) for c in params.columns) if params.columns else None
    due = sum(1 for r in rows if r["balance"] > 0)
    scope = "all terms" if term is None else f"term {term['code']}"
    fact = f"{scope}: {len(rows)} accounts, {due} with a balance due"
    await _snapshot(
        ctx, params, "Billing Summary", billing.SUMMARY, rows, "accounts", (fact,), fields
    )


billing_summary_type = JobType(
    name="finance.billing_summary",
    pool="integration",
    title="Billing Summary",
    description=(
        "Creates and exports a custom version of the Billing Summary Report at regular intervals "
        "(to aid paperless billing): one line per student account with the columns chosen, for "
        "a term or all terms, into the batch folder. The layout is Belltower's own "
        "(docs/billing-and-aid.md)."
    ),
    params=BillingSummaryParams,
    run=billing_summary,
)


# -- PowerFAIDS Export ------------------------------------------------------------------------


class PowerFaidsParams(Limits, kw_only=True, forbid_unknown_fields=True):
    term: common.TermCode = ""
    include_not_enrolled: Annotated[
        bool, Meta(description="also students with no credits in the term (status N)")
    ] = False
    folder: Folder = "powerfaids"
    file_name: FileName = "PowerFAIDS_{date}.txt"
    dry_run: DryRun = False


def enrollment_status(credits: Any, full_time: Any) -> str:
    """Federal enrollment status from the term's credits and its full-time threshold."""
    if credits <= 0:
        return "N"
    if credits >= full_time:
        return "F"
    if credits * 4 >= full_time * 3:
        return "T"
    return "H" if credits * 2 >= full_time else "L"


async def powerfaids_export(ctx: JobContext, params: PowerFaidsParams) -> None:
    pool = await ctx.db.pool()
    await sis.check_demographics(pool, params.demographics())
    term = await common.term(pool, params.term, ctx.scheduled_for.date())
    args: list[Any] = [term["id"]]
    sql = f"""
        SELECT p.sis_id, p.last_name, p.first_name, p.middle_name, p.birth_date,
               l.code AS level, d.code AS division, c.code AS campus,
               (SELECT e.address FROM sis.emails e WHERE e.person_id = p.id
                 ORDER BY e.is_primary DESC, e.id LIMIT 1) AS email,
               coalesce((SELECT sum(en.credits) FROM sis.enrollments en
                           JOIN sis.sections s ON s.id = en.section_id
                          WHERE en.person_id = p.id AND s.term_id = $1
                            AND en.status IN ('enrolled', 'completed')), 0) AS credits
          FROM sis.people p
          LEFT JOIN sis.levels l ON l.id = p.level_id
          LEFT JOIN sis.divisions d ON d.id = p.division_id
          LEFT JOIN sis.campuses c ON c.id = p.campus_id
         WHERE {common.where(params, args)}
         ORDER BY p.sis_id"""
    year = common.award_year(term["starts_on"])
    rows = []
    for r in await pool.fetch(sql, *args):
        if r["credits"] <= 0 and not params.include_not_enrolled:
            continue
        status = enrollment_status(r["credits"], term["full_time_credits"])
        rows.append(
            dict(r) | {"award_year": year, "term_code": term["code"], "enrollment_status": status}
        )
    by_status = {s: sum(1 for r in rows if r["enrollment_status"] == s) for s in "FTHLN"}
    fact = f"term {term['code']} ({year}): " + ", ".join(
        f"{s} {n}" for s, n in by_status.items() if n
    )
    await _snapshot(
        ctx, params, "PowerFAIDS export", powerfaids.ENROLLMENT, rows, "students", (fact,)
    )


powerfaids_type = JobType(
    name="finance.powerfaids_export",
    pool="integration",
    title="PowerFAIDS Export",
    description=(
        "Creates a PowerFAIDS export file on a regular interval: a fixed-width flat file with a "
        ".txt extension saved in the batch folder, one record per student with the term's "
        "enrolled credits and enrollment status (separate from the XML export). The record "
        "layout is Belltower's own (no public PowerFAIDS layout; docs/billing-and-aid.md)."
    ),
    params=PowerFaidsParams,
    run=powerfaids_export,
)


# -- Nelnet Current Balance Export ------------------------------------------------------------


class BalanceParams(Limits, kw_only=True, forbid_unknown_fields=True):
    accounts_only: Annotated[
        bool, Meta(description="only students with a billing account (Nelnet users)")
    ] = False
    folder: Folder = "nelnet/outbound"
    file_name: FileName = "nelnet_balances_{stamp}.txt"
    dry_run: DryRun = False


async def nelnet_balances(ctx: JobContext, params: BalanceParams) -> None:
    pool = await ctx.db.pool()
    await sis.check_demographics(pool, params.demographics())
    args: list[Any] = []
    sql = f"""
        SELECT {CUSTOMER}, p.sis_id, p.last_name, p.first_name, {EMAIL}, b.balance
          FROM sis.balances b JOIN sis.people p ON p.id = b.person_id
          LEFT JOIN sis.billing_accounts ba ON ba.person_id = p.id
         WHERE {common.where(params, args)} {"AND ba.person_id IS NOT NULL" if params.accounts_only else ""}
         ORDER BY customer_id"""
    as_of = ctx.scheduled_for.date()
    rows = [dict(r) | {"as_of": as_of} for r in await pool.fetch(sql, *args)]
    what = "Nelnet current balance export"
    await _snapshot(ctx, params, what, nelnet.CURRENT_BALANCE, rows, "balances")


nelnet_balance_type = JobType(
    name="finance.nelnet_balance_export",
    pool="integration",
    title="Nelnet Current Balance Export",
    description=(
        "A redundant reconciliation export that keeps every Nelnet user's balance in sync "
        "between the two systems: each student's current ledger balance, in a file in the batch "
        "folder for the SFTP Upload job. Nelnet publishes no file specification: the layout is "
        "Belltower's own (docs/billing-and-aid.md)."
    ),
    params=BalanceParams,
    run=nelnet_balances,
)


# -- JFA User Export --------------------------------------------------------------------------


class JfaUsersParams(Limits, kw_only=True, forbid_unknown_fields=True):
    term: common.TermCode = ""
    folder: Folder = "jfa"
    file_name: FileName = "jfa_users_{date}.csv"
    dry_run: DryRun = False


async def jfa_users(ctx: JobContext, params: JfaUsersParams) -> None:
    pool = await ctx.db.pool()
    await sis.check_demographics(pool, params.demographics())
    term = await common.term(pool, params.term, ctx.scheduled_for.date())
    args: list[Any] = [term["id"]]
    sql = f"""
        SELECT p.sis_id, p.last_name, p.first_name, p.middle_name, p.birth_date, p.status,
               (SELECT e.address FROM sis.emails e WHERE e.person_id = p.id ORDER BY e.is_primary DESC, e.id LIMIT 1) AS email,
               (SELECT f.number FROM sis.phones f WHERE f.person_id = p.id ORDER BY f.is_primary DESC, f.id LIMIT 1) AS phone,
               a.line1 AS street, a.city, a.region, a.postal_code,
               d.code AS division, c.code AS campus, l.code AS level,
               coalesce((SELECT sum(en.credits) FROM sis.enrollments en JOIN sis.sections s ON s.id = en.section_id
                          WHERE en.person_id = p.id AND s.term_id = $1 AND en.status IN ('enrolled', 'completed')), 0) AS credits
          FROM sis.people p
          LEFT JOIN LATERAL (SELECT * FROM sis.addresses x WHERE x.person_id = p.id
                              ORDER BY x.preferred DESC, x.id LIMIT 1) a ON true
          LEFT JOIN sis.divisions d ON d.id = p.division_id
          LEFT JOIN sis.campuses c ON c.id = p.campus_id
          LEFT JOIN sis.levels l ON l.id = p.level_id
         WHERE {common.where(params, args)}
         ORDER BY p.sis_id"""
    rows = [dict(r) for r in await pool.fetch(sql, *args)]
    await _snapshot(ctx, params, "JFA user export", jfa.USERS, rows, "users")


jfa_users_type = JobType(
    name="finance.jfa_user_export",
    pool="integration",
    title="Notifier: JFA User Export",
    description=(
        "Exports user data from the SIS to the Jenzabar Financial Aid system: each person of "
        "the chosen statuses with contact data and the term's credits, in a file in the batch "
        "folder for the SFTP Upload job. The layout is Belltower's own (the JFA integration "
        "documentation is not public; docs/billing-and-aid.md)."
    ),
    params=JfaUsersParams,
    run=jfa_users,
)


# -- Conclusive Export ------------------------------------------------------------------------


class ConclusiveParams(Limits, kw_only=True, forbid_unknown_fields=True):
    folder: Folder = "conclusive"
    file_name: FileName = "conclusive_{date}.csv"
    dry_run: DryRun = False


async def conclusive_export(ctx: JobContext, params: ConclusiveParams) -> None:
    pool = await ctx.db.pool()
    await sis.check_demographics(pool, params.demographics())
    args: list[Any] = []
    sql = f"""
        SELECT p.sis_id, p.last_name, p.first_name, l.code AS level, dp.code AS department,
               t.code AS term_code, c.code AS course_code, s.section_code, c.title AS course_title,
               en.credits, g.grade, en.status
          FROM sis.enrollments en
          JOIN sis.people p ON p.id = en.person_id
          JOIN sis.sections s ON s.id = en.section_id
          JOIN sis.courses c ON c.id = s.course_id
          JOIN sis.terms t ON t.id = s.term_id
          LEFT JOIN sis.grades g ON g.enrollment_id = en.id
          LEFT JOIN sis.levels l ON l.id = p.level_id
          LEFT JOIN sis.departments dp ON dp.id = p.department_id
         WHERE {common.where(params, args)} AND en.status <> 'dropped'
         ORDER BY p.sis_id, t.starts_on, c.code, s.section_code"""
    rows = [dict(r) for r in await pool.fetch(sql, *args)]
    fact = f"{len({r['sis_id'] for r in rows})} students' course history"
    await _snapshot(
        ctx, params, "Conclusive export", conclusive.COURSE_HISTORY, rows, "courses", (fact,)
    )


conclusive_type = JobType(
    name="exports.conclusive",
    pool="integration",
    title="Conclusive Export",
    description=(
        "Sends an export file to Conclusive on a regular basis so Advisor degree audits stay "
        "updated: every student's course history (terms, courses, credits, grades, status) in a "
        "file in the batch folder, sent on by the SFTP Upload job. The layout is Belltower's own "
        "(docs/billing-and-aid.md)."
    ),
    params=ConclusiveParams,
    run=conclusive_export,
)

JOB_TYPES = (
    billing_summary_type,
    powerfaids_type,
    nelnet_balance_type,
    jfa_users_type,
    conclusive_type,
)
