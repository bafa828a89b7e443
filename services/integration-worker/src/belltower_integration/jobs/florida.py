"""Focus's Florida state reporting calculations: ``florida.class_size_averages`` (Class Size
Averages) and ``florida.eoy_attendance`` (EOY Attendance Calculation).

- Class size averages: on the day counted (the run's day, or ``as_of``), per school and class
  size group (``courses.class_size_group``: PK-3, 4-8, 9-12; other courses are not counted),
  the sections meeting that day, the students enrolled in them that day (enrolled or completed,
  registered by then, not dropped or withdrawn by then) and the average class size (students
  / sections), into ``sis.florida_classsize_counts``. The current record of each school and
  group is kept up to date; with ``as_of`` and ``separate_records`` the counts are saved as
  separate records for that effective date instead.
- EOY attendance: each enrollment of the default school year at the school (``sis.student_
  enrollments``) gets ``fl_days_present``, ``fl_days_absent`` and ``fl_days_absent_not_disc``
  from the student's daily attendance (``sis.attendance_days``) between its start and its
  end (or the day): present days, absent days (excused or not) and the absent days that fell
  outside an out-of-school suspension (``sis.suspensions``), as EOY Processing's Update
  Enrollment Attendance Fields does.

Both write only what differs, one transaction per school, with a dry run.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from belltower.errors import InvalidInput
from belltower.jobtypes import JobContext, JobType

from ..calculations.common import SEED_001, CalcParams, Counts, Meta, Scope, each_school
from .school_year import default_school_year

GROUPS = ("PK-3", "4-8", "9-12")


class ClassSizeParams(CalcParams, kw_only=True, forbid_unknown_fields=True):
    separate_records: Annotated[
        bool,
        Meta(description="with as_of: save separate records for that effective date"),
    ] = False


async def run_class_size(ctx: JobContext, params: ClassSizeParams) -> None:
    if params.separate_records and params.as_of is None:
        raise InvalidInput(
            "param.separate_records", "separate records are saved for a given date only",
            "as_of (the effective date) with separate_records, or separate_records false",
        )  # fmt: skip
    effective = params.as_of if params.separate_records else None

    async def work(scope: Scope) -> Counts:
        day = scope.today
        counted = {
            r["grade_group"]: (r["sections"], r["students"])
            for r in await scope.conn.fetch(
                """SELECT c.class_size_group AS grade_group, count(*)::int AS sections,
                          coalesce(sum(n.students), 0)::int AS students
                     FROM sis.sections s JOIN sis.courses c ON c.id = s.course_id
                     CROSS JOIN LATERAL (
                          SELECT count(*) AS students FROM sis.enrollments e
                           WHERE e.section_id = s.id AND e.status IN ('enrolled', 'completed')
                             AND e.registered_at::date <= $2
                             AND (e.dropped_at IS NULL OR e.dropped_at::date > $2)
                             AND (e.withdrawn_on IS NULL OR e.withdrawn_on > $2)) n
                    WHERE s.division_id = $1 AND c.class_size_group IS NOT NULL
                      AND s.starts_on <= $2 AND s.ends_on >= $2
                    GROUP BY c.class_size_group""",
                scope.division_id,
                day,
            )
        }
        stored = {
            r["grade_group"]: (r["sections"], r["students"], r["counted_on"])
            for r in await scope.conn.fetch(
                """SELECT grade_group, sections, students, counted_on FROM sis.florida_classsize_counts
                    WHERE division_id = $1 AND effective_on IS NOT DISTINCT FROM $2""",
                scope.division_id,
                effective,
            )
        }
        counts = {"records written": 0, "unchanged": 0, "sections": 0, "students": 0}
        for group in GROUPS:
            sections, students = counted.get(group, (0, 0))
            counts["sections"] += sections
            counts["students"] += students
            if stored.get(group) == (sections, students, day):
                counts["unchanged"] += 1
                continue
            average = (Decimal(students) / sections).quantize(Decimal("0.01")) if sections else None
            await scope.conn.execute(
                """INSERT INTO sis.florida_classsize_counts (division_id, grade_group, effective_on,
                          counted_on, sections, students, average, occurrence_id)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                   ON CONFLICT (division_id, grade_group, coalesce(effective_on, '-infinity'::date))
                   DO UPDATE SET counted_on = EXCLUDED.counted_on, sections = EXCLUDED.sections,
                                 students = EXCLUDED.students, average = EXCLUDED.average,
                                 occurrence_id = EXCLUDED.occurrence_id, calculated_at = now()""",
                scope.division_id, group, effective, day, sections, students, average,
                scope.occurrence_id,
            )  # fmt: skip
            counts["records written"] += 1
        return counts

    report = await each_school(ctx, params, "Class size averages", work)
    report.notes.append(
        f"separate records for effective date {effective}" if effective else "current records"
    )
    report.write(ctx)


class EoyAttendanceParams(CalcParams, kw_only=True, forbid_unknown_fields=True):
    pass


async def run_eoy_attendance(ctx: JobContext, params: EoyAttendanceParams) -> None:
    async def work(scope: Scope) -> Counts:
        year = await default_school_year(scope.conn, scope.today)
        args: list[Any] = [scope.division_id, scope.today, year]
        rows = await scope.conn.fetch(
            """SELECT se.id, se.fl_days_present, se.fl_days_absent, se.fl_days_absent_not_disc,
                      count(*) FILTER (WHERE d.status = 'present') AS present,
                      count(*) FILTER (WHERE d.status IN ('absent', 'excused')) AS absent,
                      count(*) FILTER (WHERE d.status IN ('absent', 'excused') AND NOT EXISTS (
                          SELECT 1 FROM sis.suspensions x WHERE x.person_id = se.person_id
                             AND x.kind = 'out_of_school' AND d.on_date BETWEEN x.starts_on AND x.ends_on
                      )) AS absent_not_disc
                 FROM sis.student_enrollments se
                 LEFT JOIN sis.attendance_days d ON d.person_id = se.person_id
                      AND d.on_date >= se.starts_on AND d.on_date <= least(coalesce(se.ends_on, $2), $2)
                WHERE se.division_id = $1 AND se.school_year = $3
                GROUP BY se.id ORDER BY se.id""",
            *args,
        )
        counts = {"enrollments updated": 0, "unchanged": 0}
        for r in rows:
            computed = tuple(Decimal(r[k]) for k in ("present", "absent", "absent_not_disc"))
            have = (r["fl_days_present"], r["fl_days_absent"], r["fl_days_absent_not_disc"])
            if have == computed:
                counts["unchanged"] += 1
                continue
            await scope.conn.execute(
                """UPDATE sis.student_enrollments SET fl_days_present = $2, fl_days_absent = $3,
                          fl_days_absent_not_disc = $4, occurrence_id = $5, updated_at = now()
                    WHERE id = $1""",
                r["id"], *computed, scope.occurrence_id,
            )  # fmt: skip
            counts["enrollments updated"] += 1
        return counts

    report = await each_school(ctx, params, "EOY attendance calculation", work)
    report.write(ctx)


class_size_type = JobType(
    name="florida.class_size_averages",
    pool="integration",
    title="Class Size Averages (Florida State Reporting)",
    description=(
        "Calculates the average class sizes of each school's core-curricular classes by class "
        "size group and populates the FLORIDA_CLASSSIZE_COUNTS table; for a given date, can "
        "save separate records for that effective date. From "
        + SEED_001
        + ": 'Class Size Averages (Florida State Reporting)'."
    ),
    params=ClassSizeParams,
    run=run_class_size,
)

eoy_attendance_type = JobType(
    name="florida.eoy_attendance",
    pool="integration",
    title="EOY Attendance Calculation (Florida State Reporting)",
    description=(
        "Updates the fl_days_present, fl_days_absent and fl_days_absent_not_disc columns of "
        "the students' enrollment records, as EOY Processing's Update Enrollment Attendance "
        "Fields does. From "
        + SEED_001
        + ": 'EOY Attendance Calculation (Florida State Reporting)'."
    ),
    params=EoyAttendanceParams,
    run=run_eoy_attendance,
)
