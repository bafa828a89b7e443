"""The ERP invoice jobs of the Focus catalog, over ``sis.erp_invoices`` and its allocations:

- ``finance.automatic_billing_invoices`` (Automatic Billing Invoices): every active rule of the
  Automatic Invoices module (``sis.erp_automatic_invoices``) bills each student matching its
  search terms (division and level codes) once per interval: annual (the school year from
  July 1), term (the term in progress), monthly or weekly (ISO week). A student already invoiced
  for the rule and interval is skipped (the rule, student and interval are unique on the invoice).
- ``finance.void_overdue_ar_invoices`` (Void Overdue AR Invoices): Accounts Receivable invoices
  at least ``min_age_days`` old with no valid payment left (never paid, or paid and fully
  refunded) are voided; invoices with a deferral or a partial payment are left alone.
- ``finance.delete_stale_pos_invoices`` (Delete Stale POS Invoices): Point of Sale invoices with
  no active allocation are flagged deleted (Focus's ``gl_ap_invoice.deleted``); AR and internal
  account invoices never are. One that still holds a valid payment is kept and counted.
- ``finance.payment_plan_invoices`` (Create Payment Plan Invoices): each payment plan not yet
  processed gets one POS invoice per installment (the total split to the cent, the remainder on
  the last), due weekly, every two weeks or monthly from its first due date.
- ``finance.pos_invoice_table_update`` (POS Invoice Table Update): the billing table's figures
  (each allocation's paid part, each invoice's total, amount paid and balance) are recomputed
  from the active allocations and the valid payments; only rows that differ are written.

Each runs one transaction per school (the billed student's division) and writes only what is
not there yet, so a re-run of an occurrence changes nothing; ``dry_run`` reports and rolls back.
"""

from __future__ import annotations

import calendar
from datetime import date, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Annotated, Any, Literal

import msgspec

from belltower.jobtypes import JobContext, JobType

from ..calculations.common import SEED_001, CalcParams, Counts, Meta, Scope, each_school

CENT = Decimal("0.01")


def period_key(interval: str, today: date, term_code: str | None) -> str | None:
    """The interval ``today`` falls in, as the key an invoice is unique by (None: no term now)."""
    if interval == "annual":
        start = today.year if today.month >= 7 else today.year - 1
        return f"{start}-{(start + 1) % 100:02d}"
    if interval == "term":
        return term_code
    if interval == "monthly":
        return f"{today.year}-{today.month:02d}"
    year, week, _ = today.isocalendar()
    return f"{year}-W{week:02d}"


def add_months(day: date, months: int) -> date:
    """``day`` ``months`` later, on the month's last day when the month is shorter."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def installments(
    total: Decimal, count: int, first_due: date, frequency: str
) -> list[tuple[int, Decimal, date]]:
    """(number, amount, due date) of each installment; the cents left over go on the last."""
    each = (total / count).quantize(CENT, rounding=ROUND_DOWN)
    out = []
    for n in range(1, count + 1):
        amount = each if n < count else total - each * (count - 1)
        if frequency == "monthly":
            due = add_months(first_due, n - 1)
        else:
            due = first_due + timedelta(days=(7 if frequency == "weekly" else 14) * (n - 1))
        out.append((n, amount, due))
    return out


def _students(scope: Scope, args: list[Any], person: str = "p") -> str:
    return scope.students(args, person)


# Automatic Billing Invoices ----------------------------------------------------------------


class AutomaticBillingParams(CalcParams, kw_only=True, forbid_unknown_fields=True):
    rules: Annotated[
        list[Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]{1,32}$")]],
        Meta(max_length=100, description="automatic-invoice codes to run; empty: every active one"),
    ] = []


async def _automatic(scope: Scope, wanted: list[str]) -> Counts:
    conn = scope.conn
    rules = await conn.fetch(
        """SELECT * FROM sis.erp_automatic_invoices
            WHERE active AND starts_on <= $1 AND (ends_on IS NULL OR ends_on >= $1)
              AND (cardinality(divisions) = 0 OR $2 = ANY(divisions))
              AND (cardinality($3::text[]) = 0 OR upper(code) = ANY($3::text[]))
            ORDER BY code""",
        scope.today, scope.code, [w.upper() for w in wanted],
    )  # fmt: skip
    term = await conn.fetchval(
        "SELECT code FROM sis.terms WHERE starts_on <= $1 AND ends_on >= $1 ORDER BY starts_on LIMIT 1",
        scope.today,
    )
    counts: Counts = {"invoiced": 0, "already invoiced": 0, "rules": 0}
    for rule in rules:
        key = period_key(rule["interval"], scope.today, term)
        if key is None:
            continue
        counts["rules"] += 1
        args: list[Any] = [
            rule["id"], key, scope.today, rule["due_days"], rule["description"], rule["amount"],
            rule["code"], scope.job_id, scope.occurrence_id, list(rule["levels"]),
        ]  # fmt: skip
        where = _students(scope, args)
        row = await conn.fetchrow(
            f"""WITH picked AS (
                    SELECT p.id, p.sis_id FROM sis.people p
                     WHERE {where}
                       AND (cardinality($10::text[]) = 0 OR p.level_id IN
                            (SELECT id FROM sis.levels WHERE code = ANY($10::text[])))),
                made AS (
                    INSERT INTO sis.erp_invoices (invoice_number, module, person_id, invoice_date,
                           due_date, description, total, balance, automatic_invoice_id, period_key,
                           source_job_id, source_occurrence_id)
                    SELECT 'ABI-' || $7::text || '-' || $2::text || '-' || picked.sis_id, 'pos', picked.id,
                           $3::date, $3::date + $4::int, $5::text || ' (' || $2::text || ')',
                           $6::numeric, $6::numeric, $1::bigint, $2::text, $8::text, $9::text
                      FROM picked
                    ON CONFLICT DO NOTHING
                    RETURNING id),
                lines AS (
                    INSERT INTO sis.erp_invoice_allocations (invoice_id, line_number, item_code,
                           description, gl_account, amount)
                    SELECT made.id, 1, r.item_code, r.description, r.gl_account, r.amount
                      FROM made, sis.erp_automatic_invoices r WHERE r.id = $1
                    RETURNING 1)
                SELECT (SELECT count(*) FROM made) AS made, (SELECT count(*) FROM picked) AS picked,
                       (SELECT count(*) FROM lines) AS lines""",
            *args,
        )
        counts["invoiced"] += row["made"]
        counts["already invoiced"] += row["picked"] - row["made"]
    return counts


async def run_automatic(ctx: JobContext, params: AutomaticBillingParams) -> None:
    async def work(scope: Scope) -> Counts:
        return await _automatic(scope, params.rules)

    (await each_school(ctx, params, "Automatic billing invoices", work)).write(ctx)


# Void Overdue AR Invoices ------------------------------------------------------------------

# Per invoice: the valid money on it, net of refunds, and whether any of it is a deferral.
MONEY = """SELECT invoice_id,
                  coalesce(sum(CASE kind WHEN 'payment' THEN amount WHEN 'refund' THEN -amount END), 0) AS net_paid,
                  coalesce(sum(amount) FILTER (WHERE kind = 'payment'), 0) AS paid,
                  bool_or(kind = 'deferral') AS deferred
             FROM sis.erp_payments WHERE valid AND invoice_id IS NOT NULL GROUP BY invoice_id"""


class VoidOverdueParams(CalcParams, kw_only=True, forbid_unknown_fields=True):
    min_age_days: Annotated[
        int, Meta(ge=1, le=3650, description="void invoices at least this many days old")
    ] = 90


async def _void(scope: Scope, days: int) -> Counts:
    args: list[Any] = [scope.today - timedelta(days=days), scope.today, scope.occurrence_id]
    where = _students(scope, args)
    row = await scope.conn.fetchrow(
        f"""WITH money AS ({MONEY}),
            old AS (
                SELECT i.id, coalesce(m.net_paid, 0) AS net_paid, coalesce(m.paid, 0) AS paid,
                       coalesce(m.deferred, false) AS deferred
                  FROM sis.erp_invoices i JOIN sis.people p ON p.id = i.person_id
                  LEFT JOIN money m ON m.invoice_id = i.id
                 WHERE i.module = 'ar' AND NOT i.deleted AND i.voided_on IS NULL
                   AND i.invoice_date <= $1 AND {where}),
            voided AS (
                UPDATE sis.erp_invoices i
                   SET voided_on = $2, balance = 0, updated_at = now(),
                       void_reason = CASE WHEN old.paid > 0 THEN 'overdue: paid and fully refunded'
                                          ELSE 'overdue: unpaid' END || ' (occurrence ' || $3::text || ')'
                  FROM old WHERE i.id = old.id AND NOT old.deferred AND old.net_paid <= 0
                RETURNING old.paid > 0 AS refunded)
            SELECT (SELECT count(*) FROM voided) AS voided,
                   (SELECT count(*) FROM voided WHERE refunded) AS refunded,
                   (SELECT count(*) FROM old WHERE deferred) AS deferred,
                   (SELECT count(*) FROM old WHERE NOT deferred AND net_paid > 0) AS partly_paid""",
        *args,
    )
    return {
        "voided": row["voided"],
        "of them refunded in full": row["refunded"],
        "kept: deferred": row["deferred"],
        "kept: partly paid": row["partly_paid"],
    }


async def run_void(ctx: JobContext, params: VoidOverdueParams) -> None:
    async def work(scope: Scope) -> Counts:
        return await _void(scope, params.min_age_days)

    report = await each_school(ctx, params, "Void overdue AR invoices", work)
    report.notes.append(f"AR invoices {params.min_age_days} days old or more with no valid payment")
    report.write(ctx)


# Delete Stale POS Invoices -----------------------------------------------------------------


class DeleteStaleParams(CalcParams, kw_only=True, forbid_unknown_fields=True):
    min_age_days: Annotated[
        int,
        Meta(ge=0, le=3650, description="only invoices at least this many days old (0: any)"),
    ] = 1


async def _delete_stale(scope: Scope, days: int) -> Counts:
    args: list[Any] = [scope.today - timedelta(days=days)]
    where = _students(scope, args)
    row = await scope.conn.fetchrow(
        f"""WITH money AS ({MONEY}),
            stale AS (
                SELECT i.id, coalesce(m.net_paid, 0) <> 0 OR coalesce(m.deferred, false) AS has_money
                  FROM sis.erp_invoices i JOIN sis.people p ON p.id = i.person_id
                  LEFT JOIN money m ON m.invoice_id = i.id
                 WHERE i.module = 'pos' AND NOT i.deleted AND i.voided_on IS NULL
                   AND i.invoice_date <= $1 AND {where}
                   AND NOT EXISTS (SELECT 1 FROM sis.erp_invoice_allocations a
                                    WHERE a.invoice_id = i.id AND a.active)),
            flagged AS (
                UPDATE sis.erp_invoices i SET deleted = true, deleted_at = now(), balance = 0,
                       updated_at = now()
                  FROM stale WHERE i.id = stale.id AND NOT stale.has_money
                RETURNING 1)
            SELECT (SELECT count(*) FROM flagged) AS flagged,
                   (SELECT count(*) FROM stale WHERE has_money) AS kept""",
        *args,
    )
    return {"flagged deleted": row["flagged"], "kept: holds payments": row["kept"]}


async def run_delete_stale(ctx: JobContext, params: DeleteStaleParams) -> None:
    async def work(scope: Scope) -> Counts:
        return await _delete_stale(scope, params.min_age_days)

    report = await each_school(ctx, params, "Delete stale POS invoices", work)
    report.notes.append("Point of Sale invoices with no active allocation (AR and internal never)")
    report.write(ctx)


# Create Payment Plan Invoices ---------------------------------------------------------------


class PaymentPlanParams(CalcParams, kw_only=True, forbid_unknown_fields=True):
    pass


async def _plans(scope: Scope) -> Counts:
    conn = scope.conn
    args: list[Any] = []
    where = _students(scope, args)
    plans = await conn.fetch(
        f"""SELECT pp.*, p.sis_id FROM sis.erp_payment_plans pp JOIN sis.people p ON p.id = pp.person_id
             WHERE pp.processed_at IS NULL AND {where} ORDER BY pp.id FOR UPDATE OF pp""",
        *args,
    )
    counts: Counts = {"plans processed": 0, "installment invoices": 0}
    for plan in plans:
        rows = [
            (
                f"PP-{plan['id']}-{n:02d}",
                plan["person_id"],
                scope.today,
                due,
                f"{plan['description']} (installment {n} of {plan['installments']})",
                amount,
                plan["id"],
                n,
                scope.job_id,
                scope.occurrence_id,
            )
            for n, amount, due in installments(
                plan["total"], plan["installments"], plan["first_due_on"], plan["frequency"]
            )
        ]
        made = await conn.fetch(
            """INSERT INTO sis.erp_invoices (invoice_number, module, person_id, invoice_date, due_date,
                      description, total, balance, payment_plan_id, installment, source_job_id,
                      source_occurrence_id)
               SELECT n, 'pos', person, day, due, what, amount, amount, plan, k, job, occ
                 FROM unnest($1::text[], $2::bigint[], $3::date[], $4::date[], $5::text[],
                             $6::numeric[], $7::bigint[], $8::smallint[], $9::text[], $10::text[])
                      AS t(n, person, day, due, what, amount, plan, k, job, occ)
               ON CONFLICT DO NOTHING
               RETURNING id, total""",
            *[list(col) for col in zip(*rows, strict=True)],
        )
        await conn.executemany(
            """INSERT INTO sis.erp_invoice_allocations (invoice_id, line_number, item_code,
                      description, gl_account, amount) VALUES ($1, 1, $2, $3, $4, $5)""",
            [
                (r["id"], plan["item_code"], plan["description"], plan["gl_account"], r["total"])
                for r in made
            ],
        )
        await conn.execute(
            "UPDATE sis.erp_payment_plans SET processed_at = now() WHERE id = $1", plan["id"]
        )
        counts["plans processed"] += 1
        counts["installment invoices"] += len(made)
    return counts


async def run_plans(ctx: JobContext, params: PaymentPlanParams) -> None:
    (await each_school(ctx, params, "Payment plan invoices", _plans)).write(ctx)


# POS Invoice Table Update ------------------------------------------------------------------

Module = Literal["pos", "ar", "internal"]


class TableUpdateParams(CalcParams, kw_only=True, forbid_unknown_fields=True):
    modules: Annotated[
        list[Module],
        Meta(min_length=1, max_length=3, description="which invoices to bring up to date"),
    ] = msgspec.field(default_factory=lambda: ["pos"])


async def _table_update(scope: Scope, modules: list[str]) -> Counts:
    args: list[Any] = [modules]
    where = _students(scope, args)
    scoped = f"""SELECT i.* FROM sis.erp_invoices i JOIN sis.people p ON p.id = i.person_id
                  WHERE i.module = ANY($1::text[]) AND {where}"""
    lines = await scope.conn.fetchval(
        f"""WITH inv AS ({scoped}),
            money AS (SELECT invoice_id, greatest(net_paid, 0) AS paid FROM ({MONEY}) m),
            running AS (
                SELECT a.id, a.invoice_id, CASE WHEN a.active THEN a.amount ELSE 0 END AS due,
                       sum(CASE WHEN a.active THEN a.amount ELSE 0 END)
                           OVER (PARTITION BY a.invoice_id ORDER BY a.line_number) AS upto
                  FROM sis.erp_invoice_allocations a JOIN inv ON inv.id = a.invoice_id),
            target AS (
                SELECT r.id, greatest(0, least(r.due, coalesce(m.paid, 0) - (r.upto - r.due)))::numeric(12, 2) AS paid
                  FROM running r LEFT JOIN money m ON m.invoice_id = r.invoice_id),
            changed AS (
                UPDATE sis.erp_invoice_allocations a SET amount_paid = t.paid
                  FROM target t WHERE a.id = t.id AND a.amount_paid <> t.paid
                RETURNING 1)
            SELECT count(*) FROM changed""",
        *args,
    )
    row = await scope.conn.fetchrow(
        f"""WITH inv AS ({scoped}),
            money AS (SELECT invoice_id, greatest(net_paid, 0) AS paid FROM ({MONEY}) m),
            target AS (
                SELECT inv.id,
                       coalesce((SELECT sum(a.amount) FROM sis.erp_invoice_allocations a
                                  WHERE a.invoice_id = inv.id AND a.active), 0)::numeric(12, 2) AS total,
                       coalesce(m.paid, 0)::numeric(12, 2) AS paid,
                       inv.deleted OR inv.voided_on IS NOT NULL AS closed
                  FROM inv LEFT JOIN money m ON m.invoice_id = inv.id),
            changed AS (
                UPDATE sis.erp_invoices i
                   SET total = t.total, amount_paid = t.paid,
                       balance = CASE WHEN t.closed THEN 0 ELSE t.total - t.paid END, updated_at = now()
                  FROM target t
                 WHERE i.id = t.id AND (i.total, i.amount_paid, i.balance) IS DISTINCT FROM
                       (t.total, t.paid, CASE WHEN t.closed THEN 0 ELSE t.total - t.paid END)
                RETURNING 1)
            SELECT (SELECT count(*) FROM changed) AS changed, (SELECT count(*) FROM inv) AS seen""",
        *args,
    )
    return {
        "invoices updated": row["changed"],
        "allocations updated": lines,
        "unchanged": row["seen"] - row["changed"],
    }


async def run_table_update(ctx: JobContext, params: TableUpdateParams) -> None:
    modules: list[str] = sorted(set(params.modules))

    async def work(scope: Scope) -> Counts:
        return await _table_update(scope, modules)

    report = await each_school(ctx, params, "POS invoice table update", work)
    report.notes.append(f"invoices of module {', '.join(modules)}")
    report.write(ctx)


def _type(name: str, title: str, what: str, params: type[Any], run: Any) -> JobType[Any]:
    return JobType(
        name=name,
        pool="integration",
        title=title,
        description=f"{what} From {SEED_001}: '{title}'.",
        params=params,
        run=run,
    )


automatic_billing_type = _type(
    "finance.automatic_billing_invoices", "Automatic Billing Invoices",
    "Creates the Automated Billing Invoices (POS invoices) of the Automatic Invoices module's "
    "rules: each student matching a rule's search terms who has not been invoiced for the rule's "
    "interval (annual, term, monthly, weekly) gets one; one already invoiced is skipped.",
    AutomaticBillingParams, run_automatic,
)  # fmt: skip
void_overdue_type = _type(
    "finance.void_overdue_ar_invoices", "Void Overdue AR Invoices",
    "Voids Accounts Receivable invoices at least min_age_days old that are completely unpaid "
    "(no valid payment, or partly paid then fully refunded); invoices with deferrals or partial "
    "payments are left alone.",
    VoidOverdueParams, run_void,
)  # fmt: skip
delete_stale_type = _type(
    "finance.delete_stale_pos_invoices", "Delete Stale POS Invoices (ERP)",
    "Flags Point of Sale invoices that have no active allocation as deleted; Accounts Receivable "
    "and internal account invoices are never deleted.",
    DeleteStaleParams, run_delete_stale,
)  # fmt: skip
payment_plan_type = _type(
    "finance.payment_plan_invoices", "Create Payment Plan Invoices (ERP)",
    "Processes the payment plans not yet processed: one POS invoice per installment, due on the "
    "plan's schedule.",
    PaymentPlanParams, run_plans,
)  # fmt: skip
table_update_type = _type(
    "finance.pos_invoice_table_update", "POS Invoice Table Update",
    "Updates the billing table's invoice and allocation figures (total, amount paid, balance, "
    "each allocation's paid part) from the active allocations and the valid payments.",
    TableUpdateParams, run_table_update,
)  # fmt: skip
