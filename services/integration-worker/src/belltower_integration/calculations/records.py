"""The record-keeping calculations: ``calc.grad_requirements_summary`` (Focus's Populate
Graduation Requirements Summary), ``calc.immunization_compliance`` (Focus's Nightly Immunization
Compliance Job) and ``calc.outstanding_invoices`` (Focus's Outstanding Student Invoices).

- Graduation requirements: for each student and each requirement of their level
  (``sis.graduation_requirements``), the credits earned (final grades whose letter earns credit,
  in the requirement's department or any course for a total; transfer credits count toward a
  total), the credits in progress (enrolled, not yet graded) and whether it is met, in
  ``sis.grad_requirements_summary``.
- Immunization compliance: each active student (enrolled in a term in progress) against
  ``sis.immunization_requirements``: the kinds never recorded, the kinds whose latest record has
  expired, compliant when neither, in ``sis.immunization_compliance`` (``checked_on`` is the
  day the row last changed). A student no longer active loses the row.
- Outstanding invoices: a student whose ledger balance is above ``min_balance`` gets the
  indicator ``outstanding_balance`` (``sis.person_indicators``, from today, open-ended; the icon
  next to the name); once the balance is paid down it is ended today.

Each writes only what differs, so a re-run changes nothing.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Annotated, Any

from belltower.jobtypes import JobContext, JobType

from .common import SEED_001, CalcParams, Counts, Meta, Scope, each_school, sync_rows

INDICATOR = "outstanding_balance"
GRAD_COLUMNS = ("credits_required", "credits_earned", "credits_in_progress", "met")
IMMUNIZATION_COLUMNS = ("compliant", "missing", "expired")


class GradSummaryParams(CalcParams, kw_only=True, forbid_unknown_fields=True):
    """``levels`` is the seed's Grades pull-down: empty, every level that has requirements."""


class ImmunizationComplianceParams(CalcParams, kw_only=True, forbid_unknown_fields=True):
    pass


class OutstandingParams(CalcParams, kw_only=True, forbid_unknown_fields=True):
    min_balance: Annotated[
        float, Meta(ge=0, le=1_000_000, description="a balance above this amount is outstanding")
    ] = 0.0


async def _credits_by_department(
    scope: Scope, sql: str, *first: Any
) -> dict[int, dict[int | None, Decimal]]:
    """Credits per student and course department from ``sql`` (person_id, department_id, credits)."""
    args: list[Any] = list(first)
    out: dict[int, dict[int | None, Decimal]] = defaultdict(dict)
    for r in await scope.conn.fetch(sql.format(where=scope.students(args)), *args):
        out[r["person_id"]][r["department_id"]] = r["credits"]
    return out


EARNED = """SELECT e.person_id, c.department_id, sum(e.credits) AS credits
              FROM sis.enrollments e
              JOIN sis.grades g ON g.enrollment_id = e.id AND g.final_posted
              JOIN sis.grade_scale gs ON gs.grade = g.grade AND gs.earns_credit
              JOIN sis.sections s ON s.id = e.section_id
              JOIN sis.courses c ON c.id = s.course_id
              JOIN sis.people p ON p.id = e.person_id
             WHERE {where}
             GROUP BY 1, 2"""
IN_PROGRESS = """SELECT e.person_id, c.department_id, sum(e.credits) AS credits
                   FROM sis.enrollments e
                   JOIN sis.sections s ON s.id = e.section_id
                   JOIN sis.courses c ON c.id = s.course_id
                   JOIN sis.terms t ON t.id = s.term_id
                   JOIN sis.people p ON p.id = e.person_id
                   LEFT JOIN sis.grades g ON g.enrollment_id = e.id
                  WHERE e.status = 'enrolled' AND t.ends_on >= $1 AND NOT coalesce(g.final_posted, false)
                    AND {where}
                  GROUP BY 1, 2"""


def _part(credits: dict[int | None, Decimal], department: int | None) -> Decimal:
    if department is None:
        return sum(credits.values(), Decimal(0))
    return credits.get(department, Decimal(0))


async def _grad(scope: Scope) -> Counts:
    earned = await _credits_by_department(scope, EARNED)
    in_progress = await _credits_by_department(scope, IN_PROGRESS, scope.today)
    args: list[Any] = []
    where = scope.students(args)
    transferred = {
        r["person_id"]: r["credits"]
        for r in await scope.conn.fetch(
            f"""SELECT t.person_id, sum(t.credits) AS credits FROM sis.transfer_credits t
                  JOIN sis.people p ON p.id = t.person_id WHERE {where} GROUP BY 1""",
            *args,
        )
    }
    computed = {}
    for r in await scope.conn.fetch(
        f"""SELECT p.id AS person_id, r.id AS requirement_id, r.department_id, r.credits_required
              FROM sis.people p JOIN sis.graduation_requirements r ON r.level_id = p.level_id
             WHERE {where}""",
        *args,
    ):
        person, dept = r["person_id"], r["department_id"]
        got = _part(earned.get(person, {}), dept)
        if dept is None:
            got += transferred.get(person, Decimal(0))
        going = _part(in_progress.get(person, {}), dept)
        computed[(person, r["requirement_id"])] = (
            r["credits_required"], got, going, got >= r["credits_required"],
        )  # fmt: skip
    held: list[Any] = []
    stored = {
        (r["person_id"], r["requirement_id"]): tuple(r[c] for c in GRAD_COLUMNS)
        for r in await scope.conn.fetch(
            f"""SELECT g.* FROM sis.grad_requirements_summary g JOIN sis.people p ON p.id = g.person_id
                 WHERE {scope.students(held)}""",
            *held,
        )
    }
    counts = await sync_rows(
        scope.conn, "grad_requirements_summary", ("person_id", "requirement_id"), GRAD_COLUMNS,
        computed, stored,
    )  # fmt: skip
    counts["requirements met"] = sum(1 for v in computed.values() if v[3])
    counts["students"] = len({k[0] for k in computed})
    return counts


async def _immunizations(scope: Scope) -> Counts:
    args: list[Any] = [scope.today]
    where = scope.students(args)
    rows = await scope.conn.fetch(
        f"""WITH latest AS (
                SELECT m.person_id, m.kind,
                       CASE WHEN bool_or(m.expires_on IS NULL) THEN 'infinity'::date
                            ELSE max(m.expires_on) END AS latest
                  FROM sis.immunizations m JOIN sis.people p ON p.id = m.person_id
                 WHERE {where}
                 GROUP BY 1, 2)
            SELECT p.id AS person_id,
                   coalesce(array_agg(r.kind ORDER BY r.kind) FILTER (WHERE i.latest IS NULL), '{{}}') AS missing,
                   coalesce(array_agg(r.kind ORDER BY r.kind)
                            FILTER (WHERE i.latest IS NOT NULL AND i.latest < $1), '{{}}') AS expired
              FROM sis.people p
             CROSS JOIN sis.immunization_requirements r
              LEFT JOIN latest i ON i.person_id = p.id AND i.kind = r.kind
             WHERE {where} AND EXISTS (
                   SELECT 1 FROM sis.enrollments e JOIN sis.sections s ON s.id = e.section_id
                     JOIN sis.terms t ON t.id = s.term_id
                    WHERE e.person_id = p.id AND e.status = 'enrolled' AND t.starts_on <= $1 AND t.ends_on >= $1)
             GROUP BY p.id""",
        *args,
    )
    computed = {
        (r["person_id"],): (
            not r["missing"] and not r["expired"],
            list(r["missing"]),
            list(r["expired"]),
        )
        for r in rows
    }
    held: list[Any] = []
    stored = {
        (r["person_id"],): (r["compliant"], list(r["missing"]), list(r["expired"]))
        for r in await scope.conn.fetch(
            f"""SELECT c.* FROM sis.immunization_compliance c JOIN sis.people p ON p.id = c.person_id
                 WHERE {scope.students(held)}""",
            *held,
        )
    }
    counts = await sync_rows(
        scope.conn, "immunization_compliance", ("person_id",), IMMUNIZATION_COLUMNS, computed, stored,
        stamp={"checked_on": scope.today},
    )  # fmt: skip
    counts["compliant"] = sum(1 for v in computed.values() if v[0])
    counts["not compliant"] = len(computed) - counts["compliant"]
    return counts


async def _outstanding(scope: Scope, min_balance: Decimal) -> Counts:
    args: list[Any] = [min_balance, scope.today, INDICATOR]
    where = scope.students(args)
    flagged = await scope.conn.fetchval(
        f"""WITH added AS (
                INSERT INTO sis.person_indicators (person_id, indicator, starts_on)
                SELECT p.id, $3, $2 FROM sis.people p JOIN sis.balances b ON b.person_id = p.id
                 WHERE b.balance > $1 AND {where} AND NOT EXISTS (
                       SELECT 1 FROM sis.person_indicators i WHERE i.person_id = p.id AND i.indicator = $3
                          AND i.starts_on <= $2 AND (i.ends_on IS NULL OR i.ends_on > $2))
                ON CONFLICT (person_id, indicator, starts_on) DO UPDATE SET ends_on = NULL
                RETURNING 1)
            SELECT count(*) FROM added""",
        *args,
    )
    cleared = await scope.conn.fetchval(
        f"""WITH ended AS (
                UPDATE sis.person_indicators i SET ends_on = $2
                  FROM sis.people p LEFT JOIN sis.balances b ON b.person_id = p.id
                 WHERE i.person_id = p.id AND i.indicator = $3 AND i.ends_on IS NULL
                   AND coalesce(b.balance, 0) <= $1 AND {where}
                RETURNING 1)
            SELECT count(*) FROM ended""",
        *args,
    )
    held: list[Any] = [INDICATOR]
    still = await scope.conn.fetchval(
        f"""SELECT count(*) FROM sis.person_indicators i JOIN sis.people p ON p.id = i.person_id
             WHERE i.indicator = $1 AND i.ends_on IS NULL AND {scope.students(held)}""",
        *held,
    )
    return {"flagged": flagged, "cleared": cleared, "outstanding": still}


async def run_grad(ctx: JobContext, params: GradSummaryParams) -> None:
    (await each_school(ctx, params, "Graduation requirements summary", _grad)).write(ctx)


async def run_immunizations(ctx: JobContext, params: ImmunizationComplianceParams) -> None:
    (await each_school(ctx, params, "Immunization compliance", _immunizations)).write(ctx)


async def run_outstanding(ctx: JobContext, params: OutstandingParams) -> None:
    async def work(scope: Scope) -> Counts:
        return await _outstanding(scope, Decimal(str(params.min_balance)))

    report = await each_school(ctx, params, "Outstanding student invoices", work)
    report.notes.append(f"a balance above {params.min_balance} is outstanding")
    report.write(ctx)


grad_summary_type = JobType(
    name="calc.grad_requirements_summary",
    pool="integration",
    title="Populate Graduation Requirements Summary",
    description=(
        "Populates the graduation requirements summary table (credits required, earned and in "
        "progress per student and requirement) so district reports can be written from it; limit "
        "it to grade levels with levels. From "
        + SEED_001
        + ": 'Populate Graduation Requirements Summary'."
    ),
    params=GradSummaryParams,
    run=run_grad,
)

immunization_compliance_type = JobType(
    name="calc.immunization_compliance",
    pool="integration",
    title="Nightly Immunization Compliance Job",
    description=(
        "Updates the immunization compliance records (missing and expired required immunizations) "
        "of all active students for the current term. From " + SEED_001 + ": 'Nightly Immunization "
        "Compliance Job'."
    ),
    params=ImmunizationComplianceParams,
    run=run_immunizations,
)

outstanding_invoices_type = JobType(
    name="calc.outstanding_invoices",
    pool="integration",
    title="Outstanding Student Invoices",
    description=(
        "Looks at each student's transaction history for an outstanding balance owed to the school "
        "and sets the outstanding_balance indicator (the icon next to the name) while one is due. "
        "From " + SEED_001 + ": 'Outstanding Student Invoices'."
    ),
    params=OutstandingParams,
    run=run_outstanding,
)
