"""Benefit rate jobs of the Focus ERP (seed 001): ``hr.benefits_rates_update`` (Benefits Rates
Update (ERP), the employees' enrollments) and ``hr.retiree_benefits_rates_update`` (Retiree
Benefits Rates Update (ERP), the retirees'). Both do the seed's two parts:

1. age progression: the person's age on the run's day (from the birth date) picks the plan's
   age band in ``sis.erp_benefit_rates``;
2. ZIP code change: the ZIP code of the person's home address (the preferred one, else home,
   else mailing) picks the rate of the longest matching ZIP prefix.

An enrollment whose rate, age band or ZIP code differs from what it was last rated at gets the
new rate, and the change is recorded in ``sis.erp_benefit_rate_changes`` with its reason
(age, ZIP code, both, or the rate table). An enrollment with no matching rate is left alone and
counted. Everything is one transaction; a re-run finds the enrollments already rated, so it
changes nothing; ``dry_run`` reports and rolls back.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

import msgspec

from belltower.jobtypes import JobContext, JobType

from ..calculations.common import SEED_001, Code, Meta, Report, school_today
from .common import district_transaction


class BenefitsParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    plans: Annotated[
        list[Code], Meta(max_length=100, description="plan codes to rate; empty: every plan")
    ] = []
    as_of: Annotated[
        date | None, Meta(description="the day ages are counted on; default: the run's day")
    ] = None
    dry_run: Annotated[bool, Meta(description="report what would change, write nothing")] = False


def age_on(born: date, day: date) -> int:
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


RATE = """SELECT monthly_rate FROM sis.erp_benefit_rates
           WHERE plan_code = $1 AND min_age <= $2 AND max_age >= $2 AND starts_with($3, zip_prefix)
           ORDER BY length(zip_prefix) DESC, min_age DESC LIMIT 1"""


async def _rate(ctx: JobContext, params: BenefitsParams, retiree: bool, title: str) -> None:
    pool = await ctx.db.pool()
    today = await school_today(pool, ctx, params.as_of)
    counts = {
        "rates changed": 0,
        "ages progressed": 0,
        "ZIP codes changed": 0,
        "unchanged": 0,
        "no rate": 0,
    }
    async with district_transaction(pool, ctx.job_type, params.dry_run) as conn:
        rows = await conn.fetch(
            """SELECT e.*, p.birth_date, a.postal_code
                 FROM sis.erp_benefit_enrollments e JOIN sis.people p ON p.id = e.person_id
                 LEFT JOIN LATERAL (
                      SELECT left(a.postal_code, 5) AS postal_code FROM sis.addresses a
                       WHERE a.person_id = p.id AND a.kind IN ('home', 'mailing')
                       ORDER BY a.preferred DESC, a.kind = 'home' DESC, a.id LIMIT 1) a ON true
                WHERE e.retiree = $1
                  AND (cardinality($2::text[]) = 0 OR upper(e.plan_code) = ANY($2::text[]))
                ORDER BY e.person_id, e.plan_code
                FOR UPDATE OF e""",
            retiree, [p.upper() for p in params.plans],
        )  # fmt: skip
        changes: list[tuple[Any, ...]] = []
        for r in rows:
            if r["birth_date"] is None:
                counts["no rate"] += 1
                continue
            age = age_on(r["birth_date"], today)
            zip_code = r["postal_code"] or ""
            rate = await conn.fetchval(RATE, r["plan_code"], age, zip_code)
            if rate is None:
                counts["no rate"] += 1
                continue
            aged = r["rated_age"] != age
            moved = (r["rated_zip"] or "") != zip_code
            if rate == r["monthly_rate"] and not aged and not moved:
                counts["unchanged"] += 1
                continue
            counts["ages progressed"] += aged
            counts["ZIP codes changed"] += moved
            reason = (
                "age and ZIP code"
                if aged and moved
                else "age"
                if aged
                else "ZIP code"
                if moved
                else "rate table"
            )
            if rate != r["monthly_rate"]:
                counts["rates changed"] += 1
                changes.append(
                    (r["person_id"], r["plan_code"], today, r["monthly_rate"], rate, r["rated_age"],
                     age, r["rated_zip"], zip_code or None, reason, ctx.occurrence_id)
                )  # fmt: skip
            await conn.execute(
                """UPDATE sis.erp_benefit_enrollments
                      SET monthly_rate = $3, rated_age = $4, rated_zip = $5, rated_on = $6
                    WHERE person_id = $1 AND plan_code = $2""",
                r["person_id"], r["plan_code"], rate, age, zip_code or None, today,
            )  # fmt: skip
        if changes:
            await conn.executemany(
                """INSERT INTO sis.erp_benefit_rate_changes (person_id, plan_code, changed_on,
                          old_rate, new_rate, old_age, new_age, old_zip, new_zip, reason, occurrence_id)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                   ON CONFLICT (person_id, plan_code, occurrence_id) DO NOTHING""",
                changes,
            )
    report = Report(title, params.dry_run)
    report.schools.append(("district", "retirees" if retiree else "employees", counts))
    report.notes.append(f"ages on {today.isoformat()}; rates by age band and home ZIP code")
    report.write(ctx)


async def run_employees(ctx: JobContext, params: BenefitsParams) -> None:
    await _rate(ctx, params, retiree=False, title="Benefits rates update")


async def run_retirees(ctx: JobContext, params: BenefitsParams) -> None:
    await _rate(ctx, params, retiree=True, title="Retiree benefits rates update")


benefits_type = JobType(
    name="hr.benefits_rates_update",
    pool="integration",
    title="Benefits Rates Update (ERP)",
    description=(
        "Re-rates the employees' benefit enrollments: 1. age progression moves a person into the "
        "plan's next age band, 2. a change of home ZIP code picks that area's rate; each change is "
        "recorded. From " + SEED_001 + ": 'Benefits Rates Update (ERP)'."
    ),
    params=BenefitsParams,
    run=run_employees,
)

retiree_benefits_type = JobType(
    name="hr.retiree_benefits_rates_update",
    pool="integration",
    title="Retiree Benefits Rates Update (ERP)",
    description=(
        "Re-rates the retirees' benefit enrollments: 1. retiree age progression moves a retiree "
        "into the plan's next age band, 2. a change of home ZIP code picks that area's rate; each "
        "change is recorded. From " + SEED_001 + ": 'Retiree Benefits Rates Update (ERP)'."
    ),
    params=BenefitsParams,
    run=run_retirees,
)
