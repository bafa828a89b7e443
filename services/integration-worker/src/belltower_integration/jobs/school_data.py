"""Focus's Recalc DT Grades Fix (``grades.recalc_dt_grades``) and Refresh Choice Data
(``enrollment.refresh_choice_data``).

- Recalc DT Grades: for each section of the school in a marking period (term) that has begun
  (``current_only``: only those in progress on the day), each enrolled or completed student's
  DT running grade (``sis.running_grades``) is re-computed from the teacher gradebook: the
  points earned over the points possible of the assignments graded for them (excused ones and
  ungraded ones left out), as a percent and the letter of ``sis.percent_scale``; a student
  with nothing graded yet has an empty one. The DT and DY grades of a section with no
  assignments are deleted.
- Refresh Choice Data: each school choice application of the statuses asked (default:
  Waiting), for the default school year or the next, gets the student's current data: the
  school and grade of their active primary enrollment, its zoned school, and their latest
  cumulative GPA. An audit row (``sis.school_choice_audit``) is written for each field that
  actually changed, and only then.

Both write only what differs, one transaction per school, with a dry run.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec

from belltower.jobtypes import JobContext, JobType

from ..calculations.common import SEED_001, CalcParams, Counts, Meta, Scope, each_school
from .school_year import default_school_year

Status = Annotated[str, Meta(pattern=r"^[A-Za-z][A-Za-z ._-]{0,39}(?!\n)$")]


class RecalcParams(CalcParams, kw_only=True, forbid_unknown_fields=True):
    current_only: Annotated[
        bool,
        Meta(
            description="only the current marking period (Select Current Quarters Selected Schools)"
        ),
    ] = False


def letter(percent: Decimal, scale: list[tuple[str, Decimal]]) -> str | None:
    """The letter of ``percent`` on ``scale`` (grade, minimum percent), highest minimum first."""
    for grade, minimum in scale:
        if percent >= minimum:
            return grade
    return None


async def run_recalc(ctx: JobContext, params: RecalcParams) -> None:
    async def work(scope: Scope) -> Counts:
        conn = scope.conn
        scale = [
            (r["grade"], r["min_percent"])
            for r in await conn.fetch("SELECT grade, min_percent FROM sis.percent_scale ORDER BY min_percent DESC")
        ]  # fmt: skip
        period = (
            "t.starts_on <= $2 AND t.ends_on >= $2" if params.current_only else "t.starts_on <= $2"
        )
        deleted = await conn.fetch(
            f"""DELETE FROM sis.running_grades r USING sis.enrollments e, sis.sections s, sis.terms t
                 WHERE e.id = r.enrollment_id AND s.id = e.section_id AND t.id = s.term_id
                   AND s.division_id = $1 AND {period}
                   AND NOT EXISTS (SELECT 1 FROM sis.gradebook_assignments a WHERE a.section_id = s.id)
             RETURNING r.enrollment_id""",
            scope.division_id, scope.today,
        )  # fmt: skip
        rows = await conn.fetch(
            f"""SELECT e.id, r.percent AS stored_percent, r.grade AS stored_grade, r.enrollment_id IS NOT NULL AS has,
                       sum(sc.points) FILTER (WHERE sc.points IS NOT NULL AND NOT sc.excused) AS earned,
                       sum(a.points_possible) FILTER (WHERE sc.points IS NOT NULL AND NOT sc.excused) AS possible
                  FROM sis.enrollments e
                  JOIN sis.sections s ON s.id = e.section_id
                  JOIN sis.terms t ON t.id = s.term_id
                  JOIN sis.gradebook_assignments a ON a.section_id = s.id
                  LEFT JOIN sis.gradebook_scores sc ON sc.assignment_id = a.id AND sc.person_id = e.person_id
                  LEFT JOIN sis.running_grades r ON r.enrollment_id = e.id AND r.kind = 'DT'
                 WHERE s.division_id = $1 AND {period} AND e.status IN ('enrolled', 'completed')
                 GROUP BY e.id, r.percent, r.grade, r.enrollment_id
                 ORDER BY e.id""",
            scope.division_id, scope.today,
        )  # fmt: skip
        counts = {"DT grades updated": 0, "unchanged": 0, "deleted (no assignments)": len(deleted)}
        for r in rows:
            percent = grade = None
            if r["possible"]:
                percent = (r["earned"] * 100 / r["possible"]).quantize(Decimal("0.01"))
                grade = letter(percent, scale)
            if r["has"] and (r["stored_percent"], r["stored_grade"]) == (percent, grade):
                counts["unchanged"] += 1
                continue
            await conn.execute(
                """INSERT INTO sis.running_grades (enrollment_id, kind, percent, grade, occurrence_id)
                   VALUES ($1, 'DT', $2, $3, $4) ON CONFLICT (enrollment_id, kind) DO UPDATE
                   SET percent = EXCLUDED.percent, grade = EXCLUDED.grade,
                       occurrence_id = EXCLUDED.occurrence_id, calculated_at = now()""",
                r["id"], percent, grade, scope.occurrence_id,
            )  # fmt: skip
            counts["DT grades updated"] += 1
        return counts

    report = await each_school(ctx, params, "Recalc DT grades", work)
    report.notes.append(
        "marking periods: " + ("the current one" if params.current_only else "every one begun")
    )
    report.write(ctx)


# -- Refresh Choice Data -------------------------------------------------------------------------

FIELDS = ("current_school_id", "current_grade", "zoned_school_id", "gpa")


class ChoiceParams(CalcParams, kw_only=True, forbid_unknown_fields=True):
    statuses: Annotated[
        list[Status],
        Meta(min_length=1, max_length=20, description="application statuses to refresh"),
    ] = msgspec.field(default_factory=lambda: ["Waiting"])
    year: Annotated[
        Literal["current", "next"], Meta(description="the default school year or the next")
    ] = "current"


async def run_choice(ctx: JobContext, params: ChoiceParams) -> None:
    async def work(scope: Scope) -> Counts:
        conn = scope.conn
        year = await default_school_year(conn, scope.today)
        args: list[Any] = [year + (params.year == "next"), params.statuses, year, scope.today]
        rows = await conn.fetch(
            f"""SELECT c.id, c.current_school_id, c.current_grade, c.zoned_school_id, c.gpa,
                       se.division_id AS new_school, g.code AS new_grade, se.zoned_school_id AS new_zoned,
                       (SELECT ar.cumulative_gpa_unweighted FROM sis.academic_records ar
                          JOIN sis.terms t ON t.id = ar.term_id
                         WHERE ar.person_id = c.person_id ORDER BY t.ends_on DESC LIMIT 1) AS new_gpa
                  FROM sis.school_choice_application_status c
                  JOIN sis.people p ON p.id = c.person_id
                  LEFT JOIN LATERAL (SELECT * FROM sis.student_enrollments x
                                      WHERE x.person_id = c.person_id AND x.school_year = $3 AND x.is_primary
                                        AND x.drop_code IS NULL AND (x.ends_on IS NULL OR x.ends_on >= $4)
                                      ORDER BY x.starts_on DESC, x.id DESC LIMIT 1) se ON true
                  LEFT JOIN sis.grade_levels g ON g.id = se.grade_level_id
                 WHERE c.school_year = $1 AND c.status = ANY($2::text[]) AND {scope.students(args)}
                 ORDER BY c.id FOR UPDATE OF c""",
            *args,
        )
        counts = {"applications refreshed": 0, "unchanged": 0, "fields audited": 0}
        for r in rows:
            new = {"current_school_id": r["new_school"], "current_grade": r["new_grade"],
                   "zoned_school_id": r["new_zoned"], "gpa": r["new_gpa"]}  # fmt: skip
            changed = [f for f in FIELDS if r[f] != new[f]]
            if not changed:
                counts["unchanged"] += 1
                continue
            sets = ", ".join(f"{f} = ${i}" for i, f in enumerate(changed, 2))
            await conn.execute(
                f"UPDATE sis.school_choice_application_status SET {sets}, refreshed_at = now() WHERE id = $1",
                r["id"], *(new[f] for f in changed),
            )  # fmt: skip
            await conn.executemany(
                """INSERT INTO sis.school_choice_audit (application_id, field, old_value, new_value, changed_by)
                   VALUES ($1, $2, $3, $4, $5)""",
                [
                    (r["id"], f, None if r[f] is None else str(r[f]),
                     None if new[f] is None else str(new[f]), f"belltower:{scope.job_id}")
                    for f in changed
                ],
            )  # fmt: skip
            counts["applications refreshed"] += 1
            counts["fields audited"] += len(changed)
        return counts

    report = await each_school(ctx, params, "Refresh choice data", work)
    report.notes.append(f"statuses {', '.join(params.statuses)}; {params.year} school year")
    report.write(ctx)


recalc_type = JobType(
    name="grades.recalc_dt_grades",
    pool="integration",
    title="Recalc DT Grades Fix",
    description=(
        "Re-computes the stored running gradebook grades from the teacher gradebook (only the "
        "current marking period when asked) and deletes the DT and Dy grades of sections that "
        "have no assignments. From " + SEED_001 + ": 'Recalc DT Grades Fix'."
    ),
    params=RecalcParams,
    run=run_recalc,
)

choice_type = JobType(
    name="enrollment.refresh_choice_data",
    pool="integration",
    title="Refresh Choice Data",
    description=(
        "Refreshes the student data of school choice applications of the chosen statuses "
        "(default Waiting), for the default school year or the next, with an audit log entry "
        "only for an actual change. From " + SEED_001 + ": 'Refresh Choice Data'."
    ),
    params=ChoiceParams,
    run=run_choice,
)
