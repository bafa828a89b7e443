"""``hr.update_employee_agreements``: Focus's Update Employee Agreements (ERP) (seed 001).

The "Scan For New Employees" of Employment Agreement Maintenance, run on schedule for the one
agreement the job names (``agreement``, the Document pull-down): every staff or faculty employee
(``sis.employees``) hired on or before the agreement's **published date** (not its deadline
date), in one of its departments and positions (empty: any), who does not have the agreement yet
is assigned it (``sis.erp_agreement_assignments``). Assignments are unique per agreement and
employee, so a re-run changes nothing; ``dry_run`` reports and rolls back. An unknown agreement
code fails the run naming the known ones.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

import msgspec

from belltower.errors import InvalidInput
from belltower.jobtypes import JobContext, JobType

from ..calculations.common import SEED_001, Code, Meta, Report, school_today
from .common import district_transaction


class AgreementParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    agreement: Annotated[Code, Meta(description="the agreement (document) code to update")]
    as_of: Annotated[
        date | None, Meta(description="the day assignments are dated; default: the run's day")
    ] = None
    dry_run: Annotated[bool, Meta(description="report what would change, write nothing")] = False


async def run(ctx: JobContext, params: AgreementParams) -> None:
    pool = await ctx.db.pool()
    today = await school_today(pool, ctx, params.as_of)
    async with district_transaction(pool, ctx.job_type, params.dry_run) as conn:
        doc = await conn.fetchrow(
            "SELECT * FROM sis.erp_agreements WHERE upper(code) = upper($1) FOR UPDATE",
            params.agreement,
        )
        if doc is None:
            known = [
                r["code"]
                for r in await conn.fetch("SELECT code FROM sis.erp_agreements ORDER BY code")
            ]
            raise InvalidInput(
                "param.agreement",
                f"no agreement {params.agreement!r}",
                ", ".join(known) or "(none)",
            )
        row = await conn.fetchrow(
            """WITH eligible AS (
                   SELECT e.person_id FROM sis.employees e JOIN sis.people p ON p.id = e.person_id
                    WHERE p.status IN ('staff', 'faculty') AND e.hire_date IS NOT NULL
                      AND e.hire_date <= $2
                      AND (cardinality($3::text[]) = 0 OR e.department = ANY($3::text[]))
                      AND (cardinality($4::text[]) = 0 OR e.position = ANY($4::text[]))),
               added AS (
                   INSERT INTO sis.erp_agreement_assignments (agreement_id, person_id, assigned_on, occurrence_id)
                   SELECT $1, person_id, $5, $6 FROM eligible
                   ON CONFLICT (agreement_id, person_id) DO NOTHING
                   RETURNING 1)
               SELECT (SELECT count(*) FROM added) AS added, (SELECT count(*) FROM eligible) AS eligible""",
            doc["id"], doc["published_on"], list(doc["departments"]), list(doc["positions"]), today,
            ctx.occurrence_id,
        )  # fmt: skip
    report = Report(f"Employee agreement {doc['code']}", params.dry_run)
    report.schools.append(
        (
            doc["code"],
            doc["title"],
            {
                "employees assigned": row["added"],
                "already assigned": row["eligible"] - row["added"],
            },
        )
    )
    report.notes.append(
        f"employees hired on or before the published date {doc['published_on'].isoformat()}"
    )
    report.write(ctx)


job_type = JobType(
    name="hr.update_employee_agreements",
    pool="integration",
    title="Update Employee Agreements (ERP)",
    description=(
        "Scans for new employees and assigns them the selected employment agreement: employees "
        "hired on or before the agreement's published date (not its deadline date), in its "
        "departments and positions. From " + SEED_001 + ": 'Update Employee Agreements (ERP)'."
    ),
    params=AgreementParams,
    run=run,
)
