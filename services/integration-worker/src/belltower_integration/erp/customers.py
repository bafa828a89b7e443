"""``finance.student_financial_data``: Focus's Update Student Financial Data (seed 001).

Carries changes to students' names and addresses from the SIS to the ERP's customer record
(``sis.erp_customers``), so invoices keep showing the student's information correctly. Every
student with an ERP invoice, a payment plan or a customer record is kept in step: the billing
name is the first, middle and last name; the address is the preferred one, else the billing,
mailing or home address. Only records that differ are written (and a new customer added), so a
re-run changes nothing. One transaction per school; ``dry_run`` reports and writes nothing.
"""

from __future__ import annotations

from typing import Any

from belltower.jobtypes import JobContext, JobType

from ..calculations.common import SEED_001, CalcParams, Counts, Scope, each_school

COLUMNS = ("billing_name", "line1", "line2", "city", "region", "postal_code", "country")


class FinancialDataParams(CalcParams, kw_only=True, forbid_unknown_fields=True):
    pass


async def _sync(scope: Scope) -> Counts:
    args: list[Any] = []
    where = scope.students(args)
    rows = await scope.conn.fetch(
        f"""WITH billed AS (
                SELECT person_id FROM sis.erp_invoices UNION SELECT person_id FROM sis.erp_payment_plans
                UNION SELECT person_id FROM sis.erp_customers),
            addr AS (
                SELECT DISTINCT ON (a.person_id) a.*
                  FROM sis.addresses a JOIN billed b ON b.person_id = a.person_id
                 ORDER BY a.person_id, a.preferred DESC,
                          array_position(ARRAY['billing', 'mailing', 'home', 'campus', 'work'], a.kind), a.id)
            SELECT p.id, concat_ws(' ', p.first_name, nullif(p.middle_name, ''), p.last_name) AS billing_name,
                   a.line1, a.line2, a.city, a.region, a.postal_code, a.country
              FROM sis.people p JOIN billed b ON b.person_id = p.id
              LEFT JOIN addr a ON a.person_id = p.id
             WHERE {where}""",
        *args,
    )
    computed = {(r["id"],): tuple(r[c] for c in COLUMNS) for r in rows}
    held: list[Any] = []
    stored = {
        (r["person_id"],): tuple(r[c] for c in COLUMNS)
        for r in await scope.conn.fetch(
            f"""SELECT c.* FROM sis.erp_customers c JOIN sis.people p ON p.id = c.person_id
                 WHERE {scope.students(held)}""",
            *held,
        )
    }
    # A customer is never removed here (the ERP keeps its history); every stored one is computed.
    return await _upsert(scope, computed, stored)


async def _upsert(
    scope: Scope,
    computed: dict[tuple[Any, ...], tuple[Any, ...]],
    stored: dict[tuple[Any, ...], tuple[Any, ...]],
) -> Counts:
    changed = [(k[0], *v) for k, v in computed.items() if stored.get(k) != v]
    if changed:
        # One statement for the lot (a row per round trip costs a second per few hundred).
        columns = list(zip(*changed, strict=True))
        await scope.conn.execute(
            f"""INSERT INTO sis.erp_customers (person_id, {", ".join(COLUMNS)})
                SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
                                     $6::text[], $7::text[], $8::text[])
                ON CONFLICT (person_id) DO UPDATE SET
                {", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS)}, synced_at = now()""",
            *[list(c) for c in columns],
        )
    added = sum(1 for k, *_ in changed if (k,) not in stored)
    return {
        "customers added": added,
        "customers updated": len(changed) - added,
        "unchanged": len(computed) - len(changed),
    }


async def run(ctx: JobContext, params: FinancialDataParams) -> None:
    (await each_school(ctx, params, "Student financial data", _sync)).write(ctx)


job_type = JobType(
    name="finance.student_financial_data",
    pool="integration",
    title="Update Student Financial Data",
    description=(
        "Updates the ERP's customer record of each billed student with any change to the "
        "student's name and address in the SIS, so invoices keep reflecting the student's "
        "information correctly. From " + SEED_001 + ": 'Update Student Financial Data'."
    ),
    params=FinancialDataParams,
    run=run,
)
