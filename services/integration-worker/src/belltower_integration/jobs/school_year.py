"""Focus's school-year jobs over ``sis.student_enrollments``: ``enrollment.set_zoned_school``
(Set Zoned School), ``enrollment.set_next_school`` (Set Next School), ``enrollment.rollover``
(Rollover) and ``enrollment.automatic_course_requests`` (Automatic Course Requests).

- Zoning: the student's home address (the preferred one first) is parsed (the Parse Addresses
  parser, after Address Corrections' abbreviations) and looked up in ``sis.address_catalog``:
  same street name (and street type, when the catalog row has one), house number in the row's
  range and on its side (odd, even or both), postal code when the row has one, the grade among
  the row's grades (none: every grade), the school year the row is for (none: every year; a
  row for the year wins over an every-year row). Matches naming different schools are
  ambiguous, and nothing is set.
- Set Zoned School writes the zoned school and district of the active enrollments of the
  default school year, for the student's current grade.
- Set Next School writes ``next_school_id`` for the grade the student rolls into next year
  (``grade_levels.next_code``; a retained student's own grade), zoned for next year; the school
  must have that grade marked Used for Zoning and Students can roll into this grade level.
  Students it cannot zone keep the next school they had, and are listed.
- Rollover creates next year's enrollment from each active enrollment of the default school
  year (primary ones; second school ones too when the preference ``rollover_second_school`` is
  true) by its rolling retention: promote into the next grade, retain in the same grade, or do
  not enroll; at the next school when one is set, else the same school. The new row carries
  ``rolled_from_id``, so a re-run or a redelivered occurrence rolls nothing twice.
- Automatic Course Requests turns each queued ``sis.automatic_course_requests`` row of the
  school's students into a ``sis.course_requests`` row (or finds the one already there) and
  marks it processed, once.

Each writes only what differs, one transaction per school, with a dry run.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

import asyncpg

from belltower.errors import InvalidInput
from belltower.jobtypes import JobContext, JobType

from ..calculations.common import (
    SEED_001,
    CalcParams,
    Code,
    Counts,
    Meta,
    Scope,
    each_school,
    preference,
)
from .addresses import address_parts, corrected_line

Grades = Annotated[
    list[Code], Meta(max_length=50, description="grade level codes to run for; empty: every one")
]
LISTED = 50
"""Students named in the run output per school and kind of problem (the counts are complete)."""


async def default_school_year(conn: asyncpg.Connection, today: date) -> int:
    """The preference ``default_school_year``, else the school year whose dates hold ``today``."""
    chosen = await preference(conn, "default_school_year", "")
    if chosen.strip().isdigit():
        year = int(chosen)
        if await conn.fetchval("SELECT 1 FROM sis.school_years WHERE year = $1", year):
            return year
        raise InvalidInput(
            "preference.default_school_year", f"school year {year} is not in sis.school_years"
        )
    year = await conn.fetchval(
        "SELECT year FROM sis.school_years WHERE $1 BETWEEN starts_on AND ends_on ORDER BY year LIMIT 1",
        today,
    )
    if year is None:
        raise InvalidInput(
            "school_years", f"no school year holds {today} and no default_school_year is set"
        )
    return int(year)


def _active(alias: str = "se") -> str:
    return f"{alias}.drop_code IS NULL AND ({alias}.ends_on IS NULL OR {alias}.ends_on >= $2)"


def _levels(scope: Scope, args: list[Any], person: str = "p") -> str:
    """The ``levels`` parameter on the people row (empty: no condition)."""
    if not scope.levels:
        return "true"
    args.append(scope.levels)
    return (
        f"{person}.level_id IN (SELECT id FROM sis.levels WHERE code = ANY(${len(args)}::text[]))"
    )


# -- Zoning by the address catalog ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CatalogRow:
    id: int
    school_year: int | None
    street_name: str
    street_type: str | None
    house_from: int
    house_to: int
    side: str
    postal_code: str | None
    grades: tuple[str, ...]
    school_id: int
    district: str


@dataclass(frozen=True, slots=True)
class Zone:
    school_id: int | None
    district: str | None
    problem: str | None


def zone(
    line1: str, line2: str | None, postal: str | None, grade: str, catalog: list[CatalogRow]
) -> Zone:
    """The school an address is zoned to for ``grade`` by ``catalog`` (rows of one school year
    and every-year rows), or why none."""
    parts, problem = address_parts(corrected_line(line1), line2)
    if problem:
        return Zone(None, None, problem)
    number, street = parts.get("house_number"), parts.get("street_name")
    if not number or not street or not number.isdigit():
        return Zone(None, None, "no house number and street to look up")
    house = int(number)
    kind = (parts.get("street_type") or "").upper()
    zip5 = (postal or "").strip()[:5]
    matches = [
        row
        for row in catalog
        if row.street_name.upper() == street.upper()
        and (row.street_type is None or row.street_type.upper() == kind)
        and row.house_from <= house <= row.house_to
        and (row.side == "both" or (house % 2 == 1) == (row.side == "odd"))
        and (not row.postal_code or row.postal_code[:5] == zip5)
        and (not row.grades or grade in row.grades)
    ]
    if any(row.school_year is not None for row in matches):
        matches = [row for row in matches if row.school_year is not None]
    schools = {(row.school_id, row.district) for row in matches}
    if not schools:
        return Zone(None, None, "address not in the address catalog")
    if len(schools) > 1:
        rows = ", ".join(str(row.id) for row in matches)
        return Zone(None, None, f"address catalog rows {rows} zone it to different schools")
    school_id, district = schools.pop()
    return Zone(school_id, district, None)


async def _catalog(conn: asyncpg.Connection, year: int) -> list[CatalogRow]:
    rows = await conn.fetch(
        """SELECT id, school_year, street_name, street_type, house_from, house_to, side, postal_code,
                  grades, zoned_school_id, zoned_district
             FROM sis.address_catalog WHERE school_year IS NULL OR school_year = $1 ORDER BY id""",
        year,
    )
    return [
        CatalogRow(
            r["id"],
            r["school_year"],
            r["street_name"],
            r["street_type"],
            r["house_from"],
            r["house_to"],
            r["side"],
            r["postal_code"],
            tuple(g.upper() for g in r["grades"]),
            r["zoned_school_id"],
            r["zoned_district"],
        )
        for r in rows
    ]


_ENROLLED = """
SELECT se.id, se.person_id, p.sis_id, g.code AS grade, g.next_code, se.rolling_retention,
       se.next_school_id, se.zoned_school_id, se.zoned_district,
       a.line1, a.line2, a.postal_code
  FROM sis.student_enrollments se
  JOIN sis.people p ON p.id = se.person_id
  JOIN sis.grade_levels g ON g.id = se.grade_level_id
  LEFT JOIN LATERAL (SELECT line1, line2, postal_code FROM sis.addresses x
                      WHERE x.person_id = se.person_id AND x.kind = 'home'
                      ORDER BY x.preferred DESC, x.id LIMIT 1) a ON true
 WHERE se.division_id = $1 AND se.school_year = $3 AND se.is_primary AND {active}
   AND (cardinality($4::text[]) = 0 OR g.code = ANY($4::text[])) AND {levels}
 ORDER BY p.sis_id, se.id
"""


async def _enrolled(scope: Scope, year: int, grades: list[str]) -> list[Any]:
    args: list[Any] = [scope.division_id, scope.today, year, [g.upper() for g in grades]]
    sql = _ENROLLED.format(active=_active(), levels=_levels(scope, args))
    return list(await scope.conn.fetch(sql, *args))


class Listing:
    """Students named per problem in the run output (the first ``LISTED`` of each)."""

    def __init__(self, notes: list[str]) -> None:
        self.notes = notes
        self.seen: dict[str, int] = defaultdict(int)

    def add(self, school: str, problem: str, sis_id: str) -> None:
        key = f"{school}: {problem}"
        self.seen[key] += 1
        if self.seen[key] <= LISTED:
            self.notes.append(f"{school} {sis_id}: {problem}")


class ZoningParams(CalcParams, kw_only=True, forbid_unknown_fields=True):
    grades: Grades = []


async def run_set_zoned(ctx: JobContext, params: ZoningParams) -> None:
    notes: list[str] = []
    listing = Listing(notes)

    async def work(scope: Scope) -> Counts:
        year = await default_school_year(scope.conn, scope.today)
        catalog = await _catalog(scope.conn, year)
        counts = {"zoned schools set": 0, "unchanged": 0, "not zoned": 0}
        for row in await _enrolled(scope, year, params.grades):
            if row["line1"] is None:
                found = Zone(None, None, "no home address")
            else:
                found = zone(row["line1"], row["line2"], row["postal_code"], row["grade"], catalog)
            if found.school_id is None:
                counts["not zoned"] += 1
                listing.add(scope.code, found.problem or "not zoned", row["sis_id"])
                continue
            if (row["zoned_school_id"], row["zoned_district"]) == (found.school_id, found.district):
                counts["unchanged"] += 1
                continue
            await scope.conn.execute(
                """UPDATE sis.student_enrollments SET zoned_school_id = $2, zoned_district = $3,
                          occurrence_id = $4, updated_at = now() WHERE id = $1""",
                row["id"], found.school_id, found.district, scope.occurrence_id,
            )  # fmt: skip
            counts["zoned schools set"] += 1
        return counts

    report = await each_school(ctx, params, "Set zoned school", work)
    report.notes.extend(notes)
    report.write(ctx)


async def run_set_next(ctx: JobContext, params: ZoningParams) -> None:
    notes: list[str] = []
    listing = Listing(notes)

    async def work(scope: Scope) -> Counts:
        year = await default_school_year(scope.conn, scope.today)
        catalog = await _catalog(scope.conn, year + 1)
        open_grades = {
            (r["division_id"], r["code"].upper())
            for r in await scope.conn.fetch(
                "SELECT division_id, code FROM sis.grade_levels WHERE used_for_zoning AND can_roll_into"
            )
        }
        codes = dict(await scope.conn.fetch("SELECT id, code FROM sis.divisions"))
        counts = {"next schools set": 0, "unchanged": 0, "not set": 0}
        for row in await _enrolled(scope, year, params.grades):
            if row["rolling_retention"] == "do_not_enroll":
                continue
            grade = row["grade"] if row["rolling_retention"] == "retain" else row["next_code"]
            if grade is None:
                counts["not set"] += 1
                listing.add(scope.code, f"grade {row['grade']} has no next grade", row["sis_id"])
                continue
            grade = grade.upper()
            if row["line1"] is None:
                found = Zone(None, None, "no home address")
            else:
                found = zone(row["line1"], row["line2"], row["postal_code"], grade, catalog)
            if found.school_id is not None and (found.school_id, grade) not in open_grades:
                found = Zone(
                    None,
                    None,
                    f"zoned school {codes.get(found.school_id)} has no grade {grade} "
                    "used for zoning that students can roll into",
                )
            if found.school_id is None:
                counts["not set"] += 1
                listing.add(scope.code, found.problem or "not zoned", row["sis_id"])
                continue
            if row["next_school_id"] == found.school_id:
                counts["unchanged"] += 1
                continue
            await scope.conn.execute(
                """UPDATE sis.student_enrollments SET next_school_id = $2, occurrence_id = $3,
                          updated_at = now() WHERE id = $1""",
                row["id"], found.school_id, scope.occurrence_id,
            )  # fmt: skip
            counts["next schools set"] += 1
        return counts

    report = await each_school(ctx, params, "Set next school", work)
    report.notes.extend(notes)
    report.write(ctx)


# -- Rollover -----------------------------------------------------------------------------------


class RolloverParams(CalcParams, kw_only=True, forbid_unknown_fields=True):
    grades: Grades = []
    enrollment_code: Annotated[
        Code, Meta(description="the enrollment code the new year's records get")
    ] = "R1"


async def run_rollover(ctx: JobContext, params: RolloverParams) -> None:
    notes: list[str] = []
    listing = Listing(notes)
    said: list[str] = []

    async def work(scope: Scope) -> Counts:
        conn = scope.conn
        year = await default_school_year(conn, scope.today)
        following = await conn.fetchrow(
            "SELECT year, starts_on FROM sis.school_years WHERE year = $1", year + 1
        )
        if following is None:
            raise InvalidInput(
                "school_years", f"school year {year + 1} is not in sis.school_years: add it first"
            )
        second = (await preference(conn, "rollover_second_school", "false")).lower() == "true"
        if not said:
            said.append(
                f"rolling {year} into {year + 1}; second school enrollments "
                + ("rolled too" if second else "not rolled (preference rollover_second_school)")
            )
        grades = {
            (r["division_id"], r["code"].upper()): (r["id"], r["can_roll_into"])
            for r in await conn.fetch("SELECT id, division_id, code, can_roll_into FROM sis.grade_levels")
        }  # fmt: skip
        codes = dict(await conn.fetch("SELECT id, code FROM sis.divisions"))
        args: list[Any] = [scope.division_id, scope.today, year, [g.upper() for g in params.grades]]
        rows = await conn.fetch(
            f"""SELECT se.*, p.sis_id, g.code AS grade, g.next_code,
                       EXISTS (SELECT 1 FROM sis.student_enrollments r WHERE r.rolled_from_id = se.id) AS rolled
                  FROM sis.student_enrollments se
                  JOIN sis.people p ON p.id = se.person_id
                  JOIN sis.grade_levels g ON g.id = se.grade_level_id
                 WHERE se.division_id = $1 AND se.school_year = $3 AND {_active()}
                   AND (se.is_primary OR {"true" if second else "false"})
                   AND (cardinality($4::text[]) = 0 OR g.code = ANY($4::text[]))
                   AND {_levels(scope, args)}
                 ORDER BY p.sis_id, se.id""",
            *args,
        )
        counts = {
            "rolled": 0,
            "retained": 0,
            "not enrolling": 0,
            "already rolled": 0,
            "not rolled": 0,
        }
        for row in rows:
            if row["rolled"]:
                counts["already rolled"] += 1
                continue
            if row["rolling_retention"] == "do_not_enroll":
                counts["not enrolling"] += 1
                continue
            retain = row["rolling_retention"] == "retain"
            grade = row["grade"] if retain else row["next_code"]
            school = row["next_school_id"] or row["division_id"]
            if grade is None:
                counts["not rolled"] += 1
                listing.add(scope.code, f"grade {row['grade']} has no next grade and no next school", row["sis_id"])  # fmt: skip
                continue
            target = grades.get((school, grade.upper()))
            if target is None or not target[1]:
                counts["not rolled"] += 1
                listing.add(scope.code, f"{codes.get(school)} has no grade {grade} to roll into", row["sis_id"])  # fmt: skip
                continue
            there = await conn.fetchval(
                """SELECT 1 FROM sis.student_enrollments WHERE person_id = $1 AND division_id = $2
                      AND school_year = $3 AND is_primary = $4 AND drop_code IS NULL""",
                row["person_id"], school, year + 1, row["is_primary"],
            )  # fmt: skip
            if there:
                counts["already rolled"] += 1
                continue
            await conn.execute(
                """INSERT INTO sis.student_enrollments (person_id, division_id, school_year, grade_level_id,
                          is_primary, starts_on, enrollment_code, rolled_from_id, source_job_id, occurrence_id)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                   ON CONFLICT (rolled_from_id) DO NOTHING""",
                row["person_id"], school, year + 1, target[0], row["is_primary"],
                following["starts_on"], params.enrollment_code, row["id"], scope.job_id,
                scope.occurrence_id,
            )  # fmt: skip
            counts["rolled"] += 1
            counts["retained"] += retain
        return counts

    report = await each_school(ctx, params, "Rollover", work)
    report.notes.extend(said + notes)
    report.write(ctx)


# -- Automatic Course Requests ----------------------------------------------------------------


class CourseRequestParams(CalcParams, kw_only=True, forbid_unknown_fields=True):
    pass


async def run_course_requests(ctx: JobContext, params: CourseRequestParams) -> None:
    async def work(scope: Scope) -> Counts:
        args: list[Any] = []
        queued = await scope.conn.fetch(
            f"""SELECT q.id, q.person_id, q.course_id, q.school_year FROM sis.automatic_course_requests q
                  JOIN sis.people p ON p.id = q.person_id
                 WHERE q.processed_at IS NULL AND {scope.students(args)}
                 ORDER BY q.queued_at, q.id FOR UPDATE OF q""",
            *args,
        )
        made = found = 0
        for q in queued:
            request = await scope.conn.fetchval(
                """INSERT INTO sis.course_requests (person_id, course_id, school_year, division_id, source)
                   VALUES ($1, $2, $3, $4, 'automatic') ON CONFLICT (person_id, course_id, school_year)
                   DO NOTHING RETURNING id""",
                q["person_id"], q["course_id"], q["school_year"], scope.division_id,
            )  # fmt: skip
            result = "created"
            if request is None:
                result = "already requested"
                request = await scope.conn.fetchval(
                    """SELECT id FROM sis.course_requests
                        WHERE person_id = $1 AND course_id = $2 AND school_year = $3""",
                    q["person_id"], q["course_id"], q["school_year"],
                )  # fmt: skip
            await scope.conn.execute(
                """UPDATE sis.automatic_course_requests SET processed_at = now(), request_id = $2,
                          result = $3, occurrence_id = $4 WHERE id = $1""",
                q["id"], request, result, scope.occurrence_id,
            )  # fmt: skip
            made += result == "created"
            found += result != "created"
        return {"course requests created": made, "already requested": found}

    report = await each_school(ctx, params, "Automatic course requests", work)
    report.write(ctx)


set_zoned_type = JobType(
    name="enrollment.set_zoned_school",
    pool="integration",
    title="Set Zoned School",
    description=(
        "Sets the zoned school and zoned district on the active student enrollment records from "
        "the zoned school of the student's home address in the Address Catalog (it does not set "
        "the next school for rollover). From " + SEED_001 + ": 'Set Zoned School'."
    ),
    params=ZoningParams,
    run=run_set_zoned,
)

set_next_type = JobType(
    name="enrollment.set_next_school",
    pool="integration",
    title="Set Next School",
    description=(
        "Sets the next school on active student enrollment records from the Address Catalog for "
        "next school year and the grade the student rolls into, where that school's grade is "
        "Used for Zoning and open to rolling; addresses not in the catalog are listed. Run it "
        "before Rollover. From " + SEED_001 + ": 'Set Next School'."
    ),
    params=ZoningParams,
    run=run_set_next,
)

rollover_type = JobType(
    name="enrollment.rollover",
    pool="integration",
    title="Rollover",
    description=(
        "Creates next school year's enrollment records from the Next School and Rolling "
        "Retention of this year's (primary, and second school ones when the school preference "
        "says so), once per record. From " + SEED_001 + ": 'Rollover'."
    ),
    params=RolloverParams,
    run=run_rollover,
)

course_requests_type = JobType(
    name="enrollment.automatic_course_requests",
    pool="integration",
    title="Automatic Course Requests",
    description=(
        "Takes the queued automatic course requests and creates the students' course requests "
        "from them, each once. From " + SEED_001 + ": 'Automatic Course Requests'."
    ),
    params=CourseRequestParams,
    run=run_course_requests,
)


# -- Online Course Req. Populate Student Field ------------------------------------------------


class OnlineRequirementParams(CalcParams, kw_only=True, forbid_unknown_fields=True):
    pass


async def run_online_requirement(ctx: JobContext, params: OnlineRequirementParams) -> None:
    async def work(scope: Scope) -> Counts:
        args: list[Any] = []
        rows = await scope.conn.fetch(
            f"""SELECT p.id, o.value AS stored, o.met_by AS stored_by,
                       (SELECT e.id FROM sis.enrollments e
                          JOIN sis.sections s ON s.id = e.section_id
                          JOIN sis.courses c ON c.id = s.course_id
                          JOIN sis.grades gr ON gr.enrollment_id = e.id
                          JOIN sis.grade_scale gs ON gs.grade = gr.grade
                         WHERE e.person_id = p.id AND c.online AND e.status = 'completed'
                           AND gr.final_posted AND gs.earns_credit
                         ORDER BY s.ends_on, e.id LIMIT 1) AS met_by
                  FROM sis.people p
                  LEFT JOIN sis.online_course_requirement o ON o.person_id = p.id
                 WHERE {scope.students(args)}
                 ORDER BY p.id""",
            *args,
        )
        counts = {"set to Yes": 0, "set to No": 0, "unchanged": 0, "exempt": 0}
        for r in rows:
            if r["stored"] == "Exempt":
                counts["exempt"] += 1
                continue
            value = "Yes" if r["met_by"] is not None else "No"
            if (r["stored"], r["stored_by"]) == (value, r["met_by"]):
                counts["unchanged"] += 1
                continue
            await scope.conn.execute(
                """INSERT INTO sis.online_course_requirement (person_id, value, met_by, occurrence_id)
                   VALUES ($1, $2, $3, $4) ON CONFLICT (person_id) DO UPDATE
                   SET value = EXCLUDED.value, met_by = EXCLUDED.met_by,
                       occurrence_id = EXCLUDED.occurrence_id, updated_at = now()""",
                r["id"], value, r["met_by"], scope.occurrence_id,
            )  # fmt: skip
            counts[f"set to {value}"] += 1
        return counts

    report = await each_school(ctx, params, "Online course requirement", work)
    report.notes.append(
        "Yes: a completed online course with a posted final grade that earns credit; "
        "Exempt is the school's and is kept"
    )
    report.write(ctx)


online_requirement_type = JobType(
    name="enrollment.online_course_requirement",
    pool="integration",
    title="Online Course Req. Populate Student Field",
    description=(
        "Populates each student's Online Course Requirement field (No, Yes or Exempt, shown on "
        "Report Cards and the Graduation Requirements Report) from the online courses they "
        "have completed with credit; Exempt is left as the school set it. From "
        + SEED_001
        + ": 'Online Course Req. Populate Student Field'."
    ),
    params=OnlineRequirementParams,
    run=run_online_requirement,
)

JOB_TYPES: list[JobType[Any]] = [
    rollover_type,
    set_next_type,
    set_zoned_type,
    course_requests_type,
    online_requirement_type,
]
