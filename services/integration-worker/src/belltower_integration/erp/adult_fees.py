"""``finance.calculate_adult_fees``: Focus's Calculate Adult Fees (FPS) (seed 001).

"Sets the adult fee status first and second on the student schedule record as fees are being
deferred in POS. The scheduled job sets the schedule record to K when the schedule cost
reporting code (CRC) is 371 or 372." A schedule record is an enrollment; its CRC and the two
Adult Fee Status codes Florida's WDIS survey reports are ``sis.enrollments.cost_reporting_code``,
``adult_fee_status_first`` and ``adult_fee_status_second`` (migration 0064). Each record of
the terms chosen (not dropped) whose CRC is one of ``crc_codes`` gets the first status K and the
second blank (the state's rule: the second differs from the first or is blank). Records already
so are left alone, so a re-run changes nothing; records that carry K under another CRC are
counted, not changed. One transaction per school (the student's division); ``dry_run`` lists
what would change and writes nothing.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from belltower.jobtypes import JobContext, JobType

from ..calculations.common import (
    SEED_001,
    CalcParams,
    Codes,
    Counts,
    Meta,
    Scope,
    codes_to_ids,
    each_school,
)
from ..report import ChangeList

FEE_STATUS = "K"
DEFAULT_CRC = ("371", "372")

Crc = Annotated[str, Meta(pattern=r"^[0-9]{3}(?!\n)$", description="a three-digit CRC")]


class AdultFeeParams(CalcParams, kw_only=True, forbid_unknown_fields=True):
    crc_codes: Annotated[
        list[Crc],
        Meta(
            min_length=1,
            max_length=50,
            description="cost reporting codes whose schedule records get the status K",
        ),
    ] = msgspec.field(default_factory=lambda: list(DEFAULT_CRC))
    terms: Annotated[
        Codes, Meta(description="term codes whose schedules to set; empty: terms not yet ended")
    ] = []


def _scope_sql(scope: Scope, args: list[Any], terms: list[int]) -> str:
    """The school's students' schedule records (not dropped) in the terms asked for."""
    where = scope.students(args)
    args += [terms, scope.today]
    n = len(args)
    return f"""FROM sis.enrollments e
                 JOIN sis.sections s ON s.id = e.section_id
                 JOIN sis.terms t ON t.id = s.term_id
                 JOIN sis.courses c ON c.id = s.course_id
                 JOIN sis.people p ON p.id = e.person_id
                WHERE {where} AND e.status <> 'dropped'
                  AND CASE WHEN cardinality(${n - 1}::bigint[]) = 0 THEN t.ends_on >= ${n}
                           ELSE t.id = ANY(${n - 1}::bigint[]) END"""


def _status(first: str | None, second: str | None) -> str:
    return f"{first or 'blank'}/{second or 'blank'}"


async def run(ctx: JobContext, params: AdultFeeParams) -> None:
    changes = ChangeList(
        "Schedule records that would change (dry run)"
        if params.dry_run
        else "Schedule records changed"
    )
    codes = sorted(set(params.crc_codes))

    async def set_fees(scope: Scope) -> Counts:
        terms = await codes_to_ids(scope.conn, "terms", "terms", params.terms)
        args: list[Any] = []
        records = _scope_sql(scope, args, terms)
        args += [codes, FEE_STATUS]
        crc, status = f"${len(args) - 1}::text[]", f"${len(args)}"
        due = await scope.conn.fetch(
            f"""SELECT e.id, p.sis_id, c.code || '-' || s.section_code || ' ' || t.code AS section,
                       e.cost_reporting_code AS crc, e.adult_fee_status_first AS first,
                       e.adult_fee_status_second AS second
                  {records} AND e.cost_reporting_code = ANY({crc})
                   AND (e.adult_fee_status_first IS DISTINCT FROM {status}
                        OR e.adult_fee_status_second IS NOT NULL)
                 ORDER BY p.sis_id, section
                   FOR UPDATE OF e""",
            *args,
        )
        if due:
            await scope.conn.execute(
                """UPDATE sis.enrollments SET adult_fee_status_first = $2,
                          adult_fee_status_second = NULL, updated_at = now()
                    WHERE id = ANY($1::bigint[])""",
                [r["id"] for r in due], FEE_STATUS,
            )  # fmt: skip
        for r in due:
            changes.add(
                scope.code,
                f"{r['sis_id']} {r['section']} (CRC {r['crc']})",
                _status(r["first"], r["second"]),
                _status(FEE_STATUS, None),
            )
        counts = await scope.conn.fetchrow(
            f"""SELECT count(*) FILTER (WHERE e.cost_reporting_code = ANY({crc})) AS matching,
                       count(*) FILTER (WHERE e.adult_fee_status_first = {status}
                                          AND NOT coalesce(e.cost_reporting_code = ANY({crc}), false)) AS other
                  {records}""",
            *args,
        )
        return {
            "schedule records set to K": len(due),
            "already K": counts["matching"] - len(due),
            "K under another CRC (left as is)": counts["other"],
        }

    report = await each_school(ctx, params, "Calculate adult fees", set_fees)
    report.notes.append("cost reporting codes: " + ", ".join(codes))
    report.write(ctx)
    changes.write(ctx)


job_type = JobType(
    name="finance.calculate_adult_fees",
    pool="integration",
    title="Calculate Adult Fees (FPS)",
    description=(
        "Sets the Adult Fee Status (First) to K and the (Second) to blank on the student "
        "schedule records whose cost reporting code (CRC) is 371 or 372 (or the codes chosen). "
        "From " + SEED_001 + ": 'Calculate Adult Fees (FPS)'."
    ),
    params=AdultFeeParams,
    run=run,
)
