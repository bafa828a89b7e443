"""``calc.daily_attendance`` (Focus's Recalculate Daily Attendance) and
``calc.attendance_summary`` (Focus's Attendance Summary Calculation).

Daily attendance: a student's day in ``sis.attendance_days`` comes from that day's class marks
(``sis.attendance``): the day is missed when the share of periods missed reaches
``absent_percent`` (tardies count as attended unless ``tardy_is_present`` is false), and a missed
day is excused when at least as many of its missed periods were excused as not. The job
recalculates the last ``days_back`` days up to today.

Attendance summary: for each student enrolled in a term (an enrollment in one of its sections,
not dropped), from the term's start through today (or the term's end): the days enrolled (days
on which a section of theirs met, up to a withdrawal) and the days present, excused and
unexcused (by daily attendance status), in ``sis.attendance_summaries``.
Schedule it after Recalculate Daily Attendance.

Both write only what differs from the stored rows, so a re-run changes nothing.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Annotated, Any

from belltower.jobtypes import JobContext, JobType
from belltower.sis.formulas import daily_status

from .common import (
    SEED_001,
    CalcParams,
    Codes,
    Counts,
    Meta,
    Scope,
    each_school,
    sync_rows,
    terms_of,
)

DAY_COLUMNS = (
    "periods", "periods_present", "periods_tardy", "periods_absent", "periods_excused", "status",
)  # fmt: skip
SUMMARY_COLUMNS = ("days_enrolled", "days_present", "days_excused", "days_unexcused", "through_on")


class DailyAttendanceParams(CalcParams, kw_only=True, forbid_unknown_fields=True):
    days_back: Annotated[
        int, Meta(ge=1, le=400, description="past days to recalculate, today included")
    ] = 7
    absent_percent: Annotated[
        int,
        Meta(
            ge=1, le=100, description="a day is missed when this share (%) of its periods is missed"
        ),
    ] = 50
    tardy_is_present: Annotated[
        bool, Meta(description="a tardy period counts as attended; false: as missed")
    ] = True


class AttendanceSummaryParams(CalcParams, kw_only=True, forbid_unknown_fields=True):
    terms: Annotated[
        Codes, Meta(description="term codes to summarize; empty: the terms in progress today")
    ] = []


async def run_daily(ctx: JobContext, params: DailyAttendanceParams) -> None:
    async def work(scope: Scope) -> Counts:
        first = scope.today - timedelta(days=params.days_back - 1)
        args: list[Any] = [first, scope.today]
        where = scope.students(args)
        marks: dict[tuple[int, Any], list[str]] = defaultdict(list)
        for r in await scope.conn.fetch(
            f"""SELECT a.person_id, a.meets_on, a.mark FROM sis.attendance a
                  JOIN sis.people p ON p.id = a.person_id
                 WHERE a.meets_on BETWEEN $1 AND $2 AND {where}""",
            *args,
        ):
            marks[(r["person_id"], r["meets_on"])].append(r["mark"])
        computed = {}
        for key, day_marks in marks.items():
            d = daily_status(
                day_marks,
                absent_percent=params.absent_percent,
                tardy_is_present=params.tardy_is_present,
            )
            computed[key] = (d.periods, d.present, d.tardy, d.absent, d.excused, d.status)
        stored = {
            (r["person_id"], r["on_date"]): tuple(r[c] for c in DAY_COLUMNS)
            for r in await scope.conn.fetch(
                f"""SELECT d.* FROM sis.attendance_days d JOIN sis.people p ON p.id = d.person_id
                     WHERE d.on_date BETWEEN $1 AND $2 AND {where}""",
                *args,
            )
        }
        counts = await sync_rows(
            scope.conn, "attendance_days", ("person_id", "on_date"), DAY_COLUMNS, computed, stored
        )
        return {f"days {k}": v for k, v in counts.items()}

    report = await each_school(ctx, params, "Daily attendance", work)
    report.notes.append(
        f"a day is missed at {params.absent_percent}% of its periods missed; tardies count as "
        + ("attended" if params.tardy_is_present else "missed")
    )
    report.write(ctx)


async def run_summary(ctx: JobContext, params: AttendanceSummaryParams) -> None:
    async def work(scope: Scope) -> Counts:
        terms = await terms_of(scope, params.terms)
        computed: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        stored: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        for term in terms:
            args: list[Any] = [term["id"], term["starts_on"], term["through_on"]]
            where = scope.students(args)
            for r in await scope.conn.fetch(
                f"""WITH enrolled AS (
                           SELECT e.person_id, count(DISTINCT m.meets_on) AS days
                             FROM sis.enrollments e
                             JOIN sis.sections s ON s.id = e.section_id
                             JOIN sis.section_meetings m ON m.section_id = s.id
                             JOIN sis.people p ON p.id = e.person_id
                            WHERE s.term_id = $1 AND e.status <> 'dropped' AND m.meets_on BETWEEN $2 AND $3
                              AND (e.withdrawn_on IS NULL OR m.meets_on <= e.withdrawn_on) AND {where}
                            GROUP BY e.person_id)
                    SELECT p.id AS person_id, coalesce(max(n.days), 0) AS enrolled,
                           count(*) FILTER (WHERE d.status = 'present') AS present,
                           count(*) FILTER (WHERE d.status = 'excused') AS excused,
                           count(*) FILTER (WHERE d.status = 'absent') AS unexcused
                      FROM sis.people p
                      LEFT JOIN enrolled n ON n.person_id = p.id
                      LEFT JOIN sis.attendance_days d
                        ON d.person_id = p.id AND d.on_date BETWEEN $2 AND $3
                     WHERE {where} AND EXISTS (
                           SELECT 1 FROM sis.enrollments e JOIN sis.sections s ON s.id = e.section_id
                            WHERE e.person_id = p.id AND s.term_id = $1 AND e.status <> 'dropped')
                     GROUP BY p.id""",
                *args,
            ):
                computed[(r["person_id"], term["id"])] = (
                    r["enrolled"], r["present"], r["excused"], r["unexcused"], term["through_on"],
                )  # fmt: skip
            held: list[Any] = [term["id"]]
            for r in await scope.conn.fetch(
                f"""SELECT a.* FROM sis.attendance_summaries a JOIN sis.people p ON p.id = a.person_id
                     WHERE a.term_id = $1 AND {scope.students(held)}""",
                *held,
            ):
                stored[(r["person_id"], r["term_id"])] = tuple(r[c] for c in SUMMARY_COLUMNS)
        counts = await sync_rows(
            scope.conn, "attendance_summaries", ("person_id", "term_id"), SUMMARY_COLUMNS,
            computed, stored,
        )  # fmt: skip
        return {f"summaries {k}": v for k, v in counts.items()}

    report = await each_school(ctx, params, "Attendance summary", work)
    report.write(ctx)


daily_attendance_type = JobType(
    name="calc.daily_attendance",
    pool="integration",
    title="Recalculate Daily Attendance",
    description=(
        "Recalculates each student's daily attendance (present, absent, excused) from the day's "
        "class marks for the past number of days, with a configurable share of missed periods that "
        "makes a day missed. From " + SEED_001 + ": 'Recalculate Daily Attendance'."
    ),
    params=DailyAttendanceParams,
    run=run_daily,
)

attendance_summary_type = JobType(
    name="calc.attendance_summary",
    pool="integration",
    title="Attendance Summary Calculation",
    description=(
        "Calculates a summary of the daily attendance and populates the student's term enrollment "
        "fields Days Enrolled, Days Present, Days Excused and Days Unexcused. From "
        + SEED_001
        + ": 'Attendance Summary Calculation'."
    ),
    params=AttendanceSummaryParams,
    run=run_summary,
)
