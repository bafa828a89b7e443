"""Focus's school-operations jobs (enrollment.*) against the real SIS schema: two tiny K-12
schools per test (divisions of their own), an address catalog, and every job limited to them.

One database (a clone of the demo-school template) serves the module: the calculation tests'
module-scoped database and its runner, connection and school fixtures, imported from there.
"""

from __future__ import annotations

import itertools
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from belltower_dev.demo.school_ops import school_year_of as year_of
from belltower_integration.jobs.school_year import CatalogRow, zone
from tests.catalog.conftest import JobRunner
from tests.catalog.school import School
from tests.catalog.test_calculations import calc_database, conn, runner, school

__all__ = ["calc_database", "conn", "runner", "school"]  # the fixtures this module uses

pytestmark = pytest.mark.slow
_n = itertools.count(1)
D = Decimal


class K12:
    """An elementary school (KG-05) and a middle school (06-08), their grades and a catalog."""

    def __init__(self, s: School, year: int) -> None:
        self.s, self.conn, self.year = s, s.conn, year
        n = next(_n)
        self.elem_code, self.mid_code = f"EL{n}", f"MI{n}"
        self.street = f"Oak{n}"

    async def build(self) -> K12:
        self.elem = await self.s.division(self.elem_code)
        self.mid = await self.s.division(self.mid_code)
        self.grades: dict[tuple[int, str], int] = {}
        for division, codes in (
            (self.elem, ["KG", "01", "02", "03", "04", "05"]),
            (self.mid, ["06", "07", "08"]),
        ):
            for i, code in enumerate(codes):
                nxt = {"KG": "01", "08": None}.get(
                    code, f"{int(code) + 1:02d}" if code != "KG" else None
                )
                self.grades[(division, code)] = await self.conn.fetchval(
                    """INSERT INTO sis.grade_levels (division_id, code, name, sort_order, next_code)
                       VALUES ($1, $2, $2, $3, $4) RETURNING id""",
                    division, code, i, nxt,
                )  # fmt: skip
        # Odd numbers 1-99 go to the elementary school for KG-05, 6-8 to the middle school;
        # even numbers are zoned only for next year, to the elementary school.
        for year, side, grades, division, district in (
            (None, "odd", ["KG", "01", "02", "03", "04", "05"], self.elem, "North"),
            (None, "odd", ["06", "07", "08"], self.mid, "North"),
            (self.year + 1, "even", [], self.elem, "North"),
        ):
            await self.conn.execute(
                """INSERT INTO sis.address_catalog (school_year, street_name, street_type, house_from,
                          house_to, side, postal_code, grades, zoned_school_id, zoned_district)
                   VALUES ($1, $2, 'ST', 1, 99, $3, '60601', $4, $5, $6)""",
                year, self.street, side, grades, division, district,
            )  # fmt: skip
        return self

    async def student(
        self, name: str, school: int, grade: str, house: int | None = 11, **enrollment: Any
    ) -> tuple[dict[str, Any], int]:
        who = await self.s.person(
            name, division=self.elem_code if school == self.elem else self.mid_code
        )
        if house is not None:
            await self.conn.execute(
                """INSERT INTO sis.addresses (person_id, kind, preferred, line1, city, postal_code)
                   VALUES ($1, 'home', true, $2, 'Lakeside', '60601-1234')""",
                who["id"], f"{house} {self.street} Street",
            )  # fmt: skip
        columns = [
            "person_id",
            "division_id",
            "school_year",
            "grade_level_id",
            "starts_on",
            *enrollment,
        ]
        values = [
            who["id"],
            school,
            self.year,
            self.grades[(school, grade)],
            date(self.year, 8, 15),
            *enrollment.values(),
        ]
        eid = await self.conn.fetchval(
            f"INSERT INTO sis.student_enrollments ({', '.join(columns)}) "
            f"VALUES ({', '.join(f'${i}' for i in range(1, len(values) + 1))}) RETURNING id",
            *values,
        )
        return who, eid


@pytest.fixture
async def k12(school: School, sis_today: date) -> K12:
    return await K12(school, year_of(sis_today)).build()


@pytest.mark.unit
def test_zone_matches_street_side_range_grade_and_prefers_the_years_row() -> None:
    every = CatalogRow(1, None, "Oak", "ST", 1, 99, "odd", "60601", ("05",), 10, "North")
    other = CatalogRow(2, None, "Oak", "ST", 1, 99, "odd", None, ("06",), 11, "North")
    this_year = CatalogRow(3, 2026, "Oak", None, 1, 49, "both", None, (), 12, "South")
    assert zone("11 Oak Street", None, "60601-1234", "05", [every, other]).school_id == 10
    assert zone("11 Oak St", None, "60601", "06", [every, other]).school_id == 11
    assert (
        zone("12 Oak St", None, "60601", "05", [every]).problem
        == "address not in the address catalog"
    )
    assert zone("11 Oak Ave", None, "60601", "05", [every]).school_id is None
    assert zone("11 Oak St", None, "60602", "05", [every]).school_id is None
    assert zone("11 Oak St", None, "60601", "05", [every, this_year]).school_id == 12
    assert zone("PO Box 12", None, None, "05", [every]).problem == "not a street address (PO Box)"
    clash = CatalogRow(4, 2026, "Oak", None, 1, 99, "both", None, (), 13, "East")
    assert "zone it to different schools" in (
        zone("11 Oak St", None, None, "05", [this_year, clash]).problem or ""
    )


async def _enrollments(conn: asyncpg.Connection, school: int, year: int) -> dict[str, Any]:
    rows = await conn.fetch(
        """SELECT p.first_name, se.*, g.code AS grade FROM sis.student_enrollments se
             JOIN sis.people p ON p.id = se.person_id JOIN sis.grade_levels g ON g.id = se.grade_level_id
            WHERE se.division_id = $1 AND se.school_year = $2""",
        school, year,
    )  # fmt: skip
    return {r["first_name"]: r for r in rows}


async def test_zoned_then_next_school_then_rollover_once(
    runner: JobRunner, k12: K12, conn: asyncpg.Connection
) -> None:
    params = {"divisions": [k12.elem_code, k12.mid_code]}
    ann, _ = await k12.student("Ann", k12.elem, "05")  # odd: zoned to the middle school for 06
    bob, _ = await k12.student("Bob", k12.elem, "03", house=12)  # even: only next year's row
    cal, _ = await k12.student("Cal", k12.elem, "04", house=None)  # no home address
    _dee, _ = await k12.student("Dee", k12.elem, "02", rolling_retention="retain")
    eve, _ = await k12.student("Eve", k12.mid, "08")  # last grade, no next school
    fay, _ = await k12.student("Fay", k12.elem, "01", rolling_retention="do_not_enroll")
    gus, _ = await k12.student("Gus", k12.elem, "01", drop_code="W01")  # dropped: not active
    hal, _ = await k12.student("Hal", k12.elem, "KG", is_primary=False)  # second school

    zoned = await runner("enrollment.set_zoned_school", params)
    assert zoned.status == "succeeded", zoned.error
    now = await _enrollments(conn, k12.elem, k12.year)
    assert (now["Ann"]["zoned_school_id"], now["Ann"]["zoned_district"]) == (k12.elem, "North")
    assert now["Bob"]["zoned_school_id"] is None and now["Gus"]["zoned_school_id"] is None
    assert f"{bob['sis_id']}: address not in the address catalog" in zoned.text
    assert f"{cal['sis_id']}: no home address" in zoned.text
    assert "4 zoned schools set" in zoned.summary  # Ann, Dee, Fay (elementary) and Eve (middle)
    again = await runner("enrollment.set_zoned_school", params)
    assert "0 zoned schools set" in again.summary and "4 unchanged" in again.summary

    dry = await runner("enrollment.set_next_school", {**params, "dry_run": True})
    assert "3 next schools set" in dry.summary and "dry run" in dry.summary
    assert (await _enrollments(conn, k12.elem, k12.year))["Ann"]["next_school_id"] is None
    nxt = await runner("enrollment.set_next_school", params)
    assert nxt.status == "succeeded", nxt.error
    now = await _enrollments(conn, k12.elem, k12.year)
    # Ann moves up to 06: the middle school; Bob (04 next year, even side) the elementary
    # school; Dee is retained in 02 at the elementary school; Cal has no address; Eve's 08 is last.
    assert now["Ann"]["next_school_id"] == k12.mid
    assert now["Bob"]["next_school_id"] == k12.elem
    assert now["Dee"]["next_school_id"] == k12.elem
    assert now["Cal"]["next_school_id"] is None and now["Fay"]["next_school_id"] is None
    assert f"{eve['sis_id']}: grade 08 has no next grade" in nxt.text
    # The middle school's 06 closes to rolling: Ann cannot be given it.
    await conn.execute(
        "UPDATE sis.grade_levels SET can_roll_into = false WHERE id = $1",
        k12.grades[(k12.mid, "06")],
    )
    closed = await runner(
        "enrollment.set_next_school", {"divisions": [k12.elem_code], "grades": ["05"]}
    )
    assert f"{ann['sis_id']}: zoned school {k12.mid_code} has no grade 06" in closed.text
    assert "0 next schools set" in closed.summary and "1 not set" in closed.summary
    await conn.execute(
        "UPDATE sis.grade_levels SET can_roll_into = true WHERE id = $1",
        k12.grades[(k12.mid, "06")],
    )

    rolled = await runner("enrollment.rollover", params, occurrence_id="roll-1")
    assert rolled.status == "succeeded", rolled.error
    assert "second school enrollments not rolled" in rolled.text
    mid_next = await _enrollments(conn, k12.mid, k12.year + 1)
    elem_next = await _enrollments(conn, k12.elem, k12.year + 1)
    assert {n: r["grade"] for n, r in mid_next.items()} == {"Ann": "06"}
    assert {n: r["grade"] for n, r in elem_next.items()} == {"Bob": "04", "Cal": "05", "Dee": "02"}
    assert (
        mid_next["Ann"]["enrollment_code"] == "R1" and mid_next["Ann"]["occurrence_id"] == "roll-1"
    )
    assert "4 rolled" in rolled.summary and "1 retained" in rolled.summary
    assert "1 not enrolling" in rolled.summary and "1 not rolled" in rolled.summary
    assert f"{eve['sis_id']}: grade 08 has no next grade and no next school" in rolled.text

    redelivered = await runner("enrollment.rollover", params, occurrence_id="roll-1")
    assert "0 rolled" in redelivered.summary and "4 already rolled" in redelivered.summary
    # The preference turns second school records on: Hal's KG rolls into 01, once.
    await conn.execute(
        "UPDATE sis.school_preferences SET value = 'true' WHERE key = 'rollover_second_school'"
    )
    try:
        second = await runner("enrollment.rollover", params)
        assert "1 rolled" in second.summary, second.summary
        hal_next = await conn.fetchrow(
            "SELECT is_primary, grade_level_id FROM sis.student_enrollments WHERE person_id = $1 AND school_year = $2",
            hal["id"], k12.year + 1,
        )  # fmt: skip
        assert (
            hal_next["is_primary"] is False
            and hal_next["grade_level_id"] == k12.grades[(k12.elem, "01")]
        )
    finally:
        await conn.execute(
            "UPDATE sis.school_preferences SET value = 'false' WHERE key = 'rollover_second_school'"
        )
    assert not await conn.fetchval(
        "SELECT count(*) FROM sis.student_enrollments WHERE person_id = ANY($1::bigint[]) AND school_year = $2",
        [fay["id"], gus["id"]], k12.year + 1,
    )  # fmt: skip


async def test_automatic_course_requests_are_made_once(
    runner: JobRunner, k12: K12, school: School, conn: asyncpg.Connection
) -> None:
    ann, _ = await k12.student("Ann", k12.mid, "07")
    bob, _ = await k12.student("Bob", k12.mid, "07")
    other = await school.person("Zed", division="OTHER")
    course = await conn.fetchval("SELECT id FROM sis.courses ORDER BY id LIMIT 1")
    await conn.execute(
        "INSERT INTO sis.course_requests (person_id, course_id, school_year) VALUES ($1, $2, $3)",
        bob["id"], course, k12.year + 1,
    )  # fmt: skip
    for who in (ann, bob, other):
        await conn.execute(
            "INSERT INTO sis.automatic_course_requests (person_id, course_id, school_year, reason) "
            "VALUES ($1, $2, $3, 'next course in sequence')",
            who["id"], course, k12.year + 1,
        )  # fmt: skip
    params = {"divisions": [k12.mid_code]}
    dry = await runner("enrollment.automatic_course_requests", {**params, "dry_run": True})
    assert "1 course requests created, 1 already requested" in dry.summary, dry.summary
    ran = await runner("enrollment.automatic_course_requests", params)
    assert "1 course requests created, 1 already requested" in ran.summary, ran.summary
    rows = await conn.fetch(
        "SELECT person_id, result, request_id IS NOT NULL AS linked FROM sis.automatic_course_requests "
        "WHERE person_id = ANY($1::bigint[]) ORDER BY id",
        [ann["id"], bob["id"], other["id"]],
    )
    assert [(r["person_id"], r["result"], r["linked"]) for r in rows] == [
        (ann["id"], "created", True), (bob["id"], "already requested", True), (other["id"], None, False),
    ]  # fmt: skip
    assert (
        await conn.fetchval(
            "SELECT source FROM sis.course_requests WHERE person_id = $1", ann["id"]
        )
        == "automatic"
    )
    again = await runner("enrollment.automatic_course_requests", params)
    assert "nothing to do" in again.summary or "0 course requests created" in again.summary


async def test_online_course_requirement_yes_no_and_exempt_kept(
    runner: JobRunner, school: School, conn: asyncpg.Connection
) -> None:
    code = f"ON{next(_n)}"
    online = await school.section(division=code)
    await conn.execute(
        "UPDATE sis.courses SET online = true FROM sis.sections s WHERE s.id = $1 AND courses.id = s.course_id",
        online,
    )
    passed, failed, exempt, none = [
        await school.person(n, division=code) for n in ("Pat", "Fin", "Exa", "Non")
    ]
    for who, grade in ((passed, "B"), (failed, "F"), (exempt, "F")):
        eid = await conn.fetchval(
            "INSERT INTO sis.enrollments (person_id, section_id, status, credits) VALUES ($1, $2, 'completed', 3) RETURNING id",
            who["id"], online,
        )  # fmt: skip
        await school.grade(eid, grade, is_official=True, final_posted=True)
    await conn.execute(
        "INSERT INTO sis.online_course_requirement (person_id, value) VALUES ($1, 'Exempt')",
        exempt["id"],
    )
    ran = await runner("enrollment.online_course_requirement", {"divisions": [code]})
    assert ran.status == "succeeded", ran.error
    values = dict(
        await conn.fetch(
            "SELECT person_id, value FROM sis.online_course_requirement WHERE person_id = ANY($1::bigint[])",
            [passed["id"], failed["id"], exempt["id"], none["id"]],
        )
    )
    assert values == {
        passed["id"]: "Yes",
        failed["id"]: "No",
        exempt["id"]: "Exempt",
        none["id"]: "No",
    }
    assert "1 set to Yes, 2 set to No, 0 unchanged, 1 exempt" in ran.summary
    again = await runner("enrollment.online_course_requirement", {"divisions": [code]})
    assert "0 set to Yes, 0 set to No, 3 unchanged, 1 exempt" in again.summary


async def test_medical_events_once_per_school_and_time_and_pill_counts(
    runner: JobRunner, k12: K12, conn: asyncpg.Connection, sis_today: date
) -> None:
    ann, _ = await k12.student("Ann", k12.elem, "05")
    # Ann is enrolled in the middle school too (a second school): events at both.
    await conn.execute(
        """INSERT INTO sis.student_enrollments (person_id, division_id, school_year, grade_level_id,
                  is_primary, starts_on) VALUES ($1, $2, $3, $4, false, $5)""",
        ann["id"], k12.mid, k12.year, k12.grades[(k12.mid, "06")], date(k12.year, 8, 15),
    )  # fmt: skip
    bob, _ = await k12.student("Bob", k12.elem, "04")
    order = await conn.fetchval(
        """INSERT INTO sis.medication_orders (person_id, medication, form, dose, admin_times, ordered_on,
                  pills_dispensed, pills_per_dose)
           VALUES ($1, 'Methylphenidate', 'tablet', '10 mg', '{08:30,12:00}', $2, 30, 2) RETURNING id""",
        ann["id"], sis_today,
    )  # fmt: skip
    await conn.execute(
        "INSERT INTO sis.medication_administrations (order_id, administered_at, doses) VALUES ($1, now(), 1), ($1, now(), 2)",
        order,
    )
    # Bob's order ended yesterday, and one starts tomorrow: neither is on today's calendar.
    for starts, ends in ((-10, -1), (1, None)):
        await conn.execute(
            """INSERT INTO sis.medication_orders (person_id, medication, admin_times, ordered_on,
                      admin_starts_on, admin_ends_on) VALUES ($1, 'Inhaler', '{10:00}', $2, $3, $4)""",
            bob["id"], sis_today - timedelta(days=20), sis_today + timedelta(days=starts),
            sis_today + timedelta(days=ends) if ends is not None else None,
        )  # fmt: skip
    params = {"divisions": [k12.elem_code, k12.mid_code], "as_of": sis_today.isoformat()}
    ran = await runner("health.medical", params, job_id="med")
    assert ran.status == "succeeded", ran.error
    events = await conn.fetch(
        "SELECT calendar, title, description, category, starts_at FROM sis.calendar_events "
        "WHERE source_job_id = 'med' ORDER BY calendar, starts_at"
    )
    assert [e["calendar"] for e in events] == [k12.elem_code] * 2 + [k12.mid_code] * 2
    assert {e["title"] for e in events} == {"Medication: Methylphenidate (tablet) for Ann Tester"}
    assert {e["category"] for e in events} == {"Medical"}
    assert "Administered by: Nurse" in events[0]["description"]
    assert "4 events added" in ran.summary and "1 pill counts updated" in ran.summary
    assert (
        await conn.fetchval("SELECT pill_count FROM sis.medication_orders WHERE id = $1", order)
        == 24
    )
    again = await runner("health.medical", params, job_id="med")
    assert "0 events added, 4 events already there, 0 pill counts updated" in again.summary
    # A changed medication form matches no event: a new one for each time and school.
    await conn.execute("UPDATE sis.medication_orders SET form = 'liquid' WHERE id = $1", order)
    changed = await runner("health.medical", params, job_id="med")
    assert "4 events added" in changed.summary


@pytest.mark.unit
def test_certification_rules() -> None:
    from belltower_integration.jobs.school_records import meets, status_of

    assert meets("MATH", "6-12", "math", "6-12") and not meets("MATH", "5-9", "MATH", "6-12")
    assert meets("MATH", "", "MATH", "")  # no scope in the Directory: any scope
    assert meets("120", "X", "120", "Q")  # a coverage group ignores the scope...
    assert not meets("120", "X", "120", "A") and meets("120", "A", "120", "A")  # ...unless A, L, T
    assert status_of(None, [("MATH", "")], []) == ("no teacher", None)
    assert status_of(5, [], []) == ("no requirement", None)
    assert status_of(5, [("MATH", ""), ("120", "")], [(9, "ENGL", ""), (10, "120", "Z")]) == (
        "in field",
        10,
    )
    assert status_of(5, [("MATH", "")], [(9, "ENGL", "")]) == ("out of field", None)


async def test_update_teacher_certification_in_and_out_of_field(
    runner: JobRunner, school: School, conn: asyncpg.Connection, sis_today: date
) -> None:
    code = f"CE{next(_n)}"
    teacher = await school.person("Tia", status="faculty", division=code)
    certified, uncertified, unlisted = [
        await school.section(division=code, lead=teacher) for _ in range(3)
    ]
    for sid, need in ((certified, "MATH"), (uncertified, "CHEM")):
        await conn.execute(
            "INSERT INTO sis.course_certifications (course_id, code) SELECT course_id, $2 FROM sis.sections WHERE id = $1",
            sid, need,
        )  # fmt: skip
    cert = await conn.fetchval(
        "INSERT INTO sis.teacher_certifications (person_id, code, scope, expires_on) VALUES ($1, 'MATH', '6-12', $2) RETURNING id",
        teacher["id"], sis_today + timedelta(days=300),
    )  # fmt: skip
    await conn.execute(
        "INSERT INTO sis.teacher_certifications (person_id, code, expires_on) VALUES ($1, 'CHEM', $2)",
        teacher["id"], sis_today - timedelta(days=1),
    )  # fmt: skip
    params = {"divisions": [code]}
    dry = await runner("staff.update_teacher_certification", {**params, "dry_run": True})
    assert "3 changed" in dry.summary and dry.summary.endswith("(dry run: nothing written)")
    ran = await runner("staff.update_teacher_certification", params)
    statuses = dict(
        await conn.fetch(
            "SELECT id, cert_status FROM sis.sections WHERE id = ANY($1::bigint[])",
            [certified, uncertified, unlisted],
        )
    )
    assert statuses == {
        certified: "in field",
        uncertified: "out of field",
        unlisted: "no requirement",
    }
    assert (
        await conn.fetchval("SELECT cert_met_by FROM sis.sections WHERE id = $1", certified) == cert
    )
    assert "1 in field, 1 out of field, 1 no requirement, 0 no teacher, 3 changed" in ran.summary
    again = await runner("staff.update_teacher_certification", params)
    assert "0 changed" in again.summary
    # A newly imported certificate brings the chemistry section in field.
    await conn.execute(
        "INSERT INTO sis.teacher_certifications (person_id, code) VALUES ($1, 'CHEM')",
        teacher["id"],
    )
    imported = await runner("staff.update_teacher_certification", params)
    assert "2 in field" in imported.summary and "1 changed" in imported.summary


async def test_sss_withdrawn_students_events_alerts_and_fefp_codes(
    runner: JobRunner, k12: K12, school: School, conn: asyncpg.Connection, sis_today: date
) -> None:
    # Ann withdrew from the elementary school and enrolled in the middle school; Bob is still
    # enrolled; Cal withdrew and has not enrolled anywhere.
    ann, ann_elem = await k12.student("Ann", k12.elem, "05")
    bob, _ = await k12.student("Bob", k12.elem, "05")
    cal, _ = await k12.student("Cal", k12.elem, "04")
    await conn.execute(
        "UPDATE sis.student_enrollments SET drop_code = 'W02', ends_on = $2 WHERE person_id = ANY($1::bigint[])",
        [ann["id"], cal["id"]], sis_today - timedelta(days=2),
    )  # fmt: skip
    await conn.execute(
        """INSERT INTO sis.student_enrollments (person_id, division_id, school_year, grade_level_id,
                  starts_on, enrollment_code) VALUES ($1, $2, $3, $4, $5, 'E02')""",
        ann["id"], k12.mid, k12.year, k12.grades[(k12.mid, "06")], sis_today - timedelta(days=1),
    )  # fmt: skip
    for who in (ann, ann, bob, cal):
        await conn.execute(
            "INSERT INTO sis.mtss_events (person_id, division_id, title, tier, starts_on) VALUES ($1, $2, 'Reading', 2, $3)",
            who["id"], k12.elem, sis_today - timedelta(days=60),
        )  # fmt: skip
    params = {"divisions": [k12.elem_code, k12.mid_code]}
    alerted = await runner("sss.mtss_enrollment_alert", params)
    assert "0 alerts raised" in alerted.summary  # nothing inactive yet

    off = await runner("sss.deactivate_mtss_withdrawn", params)
    assert off.status == "succeeded", off.error
    assert "3 events inactivated, 2 students" in off.summary, off.summary
    active = dict(
        await conn.fetch(
            "SELECT person_id, bool_or(active) FROM sis.mtss_events WHERE person_id = ANY($1::bigint[]) GROUP BY 1",
            [ann["id"], bob["id"], cal["id"]],
        )
    )
    assert active == {ann["id"]: False, bob["id"]: True, cal["id"]: False}
    reason = await conn.fetchval(
        "SELECT inactivated_reason FROM sis.mtss_events WHERE person_id = $1 LIMIT 1", ann["id"]
    )
    assert reason == f"withdrawn from {k12.elem_code}"
    assert "0 events inactivated" in (await runner("sss.deactivate_mtss_withdrawn", params)).summary

    alerted = await runner("sss.mtss_enrollment_alert", params)
    assert "1 alerts raised" in alerted.summary, alerted.summary
    alert = await conn.fetchrow("SELECT * FROM sis.portal_alerts WHERE person_id = $1", ann["id"])
    assert alert["profile"] == "SSS Coordinator" and alert["division_id"] == k12.mid
    assert f"2 inactive MTSS event(s) from {k12.elem_code}" in alert["message"]
    again = await runner("sss.mtss_enrollment_alert", params)
    assert "0 alerts raised, 1 already alerted" in again.summary
    assert ann_elem  # the elementary enrollment stays, dropped

    # FEFP: Dan's only active exceptionality is dismissed; Eve still has a primary one.
    code = f"SS{next(_n)}"
    dan, eve = await school.person("Dan", division=code), await school.person("Eve", division=code)
    for who, rows in (
        (dan, [("K", "D", -5, True), ("G", "P", None, False)]),
        (eve, [("K", "D", -5, True), ("L", "P", None, True)]),
    ):
        for exc, service, dismissed, is_active in rows:
            await conn.execute(
                "INSERT INTO sis.ese_exceptionalities (person_id, code, service_type, dismissed_on, active) VALUES ($1, $2, $3, $4, $5)",
                who["id"], exc, service, sis_today + timedelta(days=dismissed) if dismissed is not None else None, is_active,
            )  # fmt: skip
        for field in ("ese_code", "charter_mckay", "other_field"):
            await conn.execute(
                "INSERT INTO sis.student_field_values (person_id, field, value) VALUES ($1, $2, '252')",
                who["id"],
                field,
            )
    dry = await runner("sss.remove_fefp_dismissed", {"divisions": [code], "dry_run": True})
    assert "2 fields cleared, 1 students" in dry.summary
    ran = await runner("sss.remove_fefp_dismissed", {"divisions": [code]})
    values = {
        (r["person_id"], r["field"]): r["value"]
        for r in await conn.fetch(
            "SELECT * FROM sis.student_field_values WHERE person_id = ANY($1::bigint[])",
            [dan["id"], eve["id"]],
        )
    }
    assert values[(dan["id"], "ese_code")] is None and values[(dan["id"], "charter_mckay")] is None
    assert values[(dan["id"], "other_field")] == "252" and values[(eve["id"], "ese_code")] == "252"
    assert "2 fields cleared" in ran.summary
    assert (
        "0 fields cleared"
        in (await runner("sss.remove_fefp_dismissed", {"divisions": [code]})).summary
    )


async def test_class_size_averages_current_and_separate_records(
    runner: JobRunner, school: School, conn: asyncpg.Connection, sis_today: date
) -> None:
    code = f"CS{next(_n)}"
    kids = [await school.person(f"K{i}", division=code) for i in range(5)]
    small, big, elective = [await school.section(division=code) for _ in range(3)]
    for sid, group in ((small, "4-8"), (big, "4-8"), (elective, None)):
        await conn.execute(
            "UPDATE sis.courses SET class_size_group = $2 FROM sis.sections s WHERE s.id = $1 AND courses.id = s.course_id",
            sid, group,
        )  # fmt: skip
    for kid in kids[:2]:
        await school.enroll(kid, small)
    for kid in kids:
        await school.enroll(kid, big)
        await school.enroll(kid, elective)
    await school.enroll(await school.person("Gone", division=code), small, status="dropped")
    params = {"divisions": [code]}
    ran = await runner("florida.class_size_averages", params)
    assert ran.status == "succeeded", ran.error
    rows = {
        r["grade_group"]: r
        for r in await conn.fetch(
            "SELECT * FROM sis.florida_classsize_counts WHERE division_id = (SELECT id FROM sis.divisions WHERE code = $1)",
            code,
        )
    }
    middle = rows["4-8"]
    assert (middle["sections"], middle["students"], middle["average"], middle["effective_on"]) == (
        2,
        7,
        3.5,
        None,
    )
    assert rows["PK-3"]["sections"] == 0 and rows["PK-3"]["average"] is None
    assert "3 records written" in ran.summary
    assert (
        "0 records written, 3 unchanged"
        in (await runner("florida.class_size_averages", params)).summary
    )
    on = (sis_today - timedelta(days=1)).isoformat()
    separate = await runner(
        "florida.class_size_averages", {**params, "as_of": on, "separate_records": True}
    )
    assert "3 records written" in separate.summary and f"effective date {on}" in separate.text
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM sis.florida_classsize_counts WHERE effective_on = $1",
            sis_today - timedelta(days=1),
        )
        == 3
    )
    refused = await runner("florida.class_size_averages", {**params, "separate_records": True})
    assert refused.status == "failed" and "given date only" in (refused.error or "")


async def test_eoy_attendance_fields_leave_out_suspension_days(
    runner: JobRunner, k12: K12, conn: asyncpg.Connection, sis_today: date
) -> None:
    ann, enrollment = await k12.student("Ann", k12.mid, "07")
    await conn.execute(
        "UPDATE sis.student_enrollments SET starts_on = $2 WHERE id = $1",
        enrollment,
        sis_today - timedelta(days=10),
    )
    marks = ["present", "present", "absent", "excused", "absent", "present"]
    for i, status in enumerate(marks):
        await conn.execute(
            """INSERT INTO sis.attendance_days (person_id, on_date, periods, periods_present, periods_tardy,
                      periods_absent, periods_excused, status) VALUES ($1, $2, 1, 0, 0, 0, 0, $3)""",
            ann["id"], sis_today - timedelta(days=6 - i), status,
        )  # fmt: skip
    # Before the enrollment began: not counted.
    await conn.execute(
        """INSERT INTO sis.attendance_days (person_id, on_date, periods, periods_present, periods_tardy,
                  periods_absent, periods_excused, status) VALUES ($1, $2, 1, 0, 0, 1, 0, 'absent')""",
        ann["id"], sis_today - timedelta(days=20),
    )  # fmt: skip
    # Out of school on the last absence (day -2).
    await conn.execute(
        "INSERT INTO sis.suspensions (person_id, kind, starts_on, ends_on) VALUES ($1, 'out_of_school', $2, $2)",
        ann["id"], sis_today - timedelta(days=2),
    )  # fmt: skip
    params = {"divisions": [k12.mid_code]}
    ran = await runner("florida.eoy_attendance", params)
    assert ran.status == "succeeded", ran.error
    row = await conn.fetchrow("SELECT * FROM sis.student_enrollments WHERE id = $1", enrollment)
    assert (row["fl_days_present"], row["fl_days_absent"], row["fl_days_absent_not_disc"]) == (
        3,
        3,
        2,
    )
    assert "1 enrollments updated" in ran.summary
    assert (
        "0 enrollments updated, 1 unchanged"
        in (await runner("florida.eoy_attendance", params)).summary
    )


async def test_recalc_dt_grades_from_the_gradebook(
    runner: JobRunner, school: School, conn: asyncpg.Connection
) -> None:
    code = f"GB{next(_n)}"
    ann, bob = await school.person("Ann", division=code), await school.person("Bob", division=code)
    graded, empty = await school.section(division=code), await school.section(division=code)
    enrolled = {
        (who["first"], sid): await school.enroll(who, sid)
        for who in (ann, bob)
        for sid in (graded, empty)
    }
    quiz, test, late = [
        await conn.fetchval(
            "INSERT INTO sis.gradebook_assignments (section_id, title, points_possible) VALUES ($1, $2, $3) RETURNING id",
            graded, title, D(points),
        )
        for title, points in (("Quiz", "10"), ("Test", "90"), ("Late", "50"))
    ]  # fmt: skip
    # Ann: 9/10 + 72/90 = 81/100 (the late one excused) = B; Bob: nothing graded yet.
    for assignment, points, excused in ((quiz, "9", False), (test, "72", False), (late, "0", True)):
        await conn.execute(
            "INSERT INTO sis.gradebook_scores (assignment_id, person_id, points, excused) VALUES ($1, $2, $3, $4)",
            assignment, ann["id"], D(points), excused,
        )  # fmt: skip
    # A stale DT grade on the section with no assignments, and a wrong one on Ann's.
    for eid, percent in ((enrolled[("Ann", empty)], "55"), (enrolled[("Ann", graded)], "99")):
        await conn.execute(
            "INSERT INTO sis.running_grades (enrollment_id, kind, percent, grade) VALUES ($1, 'DT', $2, 'A')",
            eid,
            D(percent),
        )
    params = {"divisions": [code]}
    ran = await runner("grades.recalc_dt_grades", params)
    assert ran.status == "succeeded", ran.error
    grades = {
        r["enrollment_id"]: (r["percent"], r["grade"])
        for r in await conn.fetch(
            "SELECT * FROM sis.running_grades WHERE enrollment_id = ANY($1::bigint[])",
            list(enrolled.values()),
        )
    }
    assert grades == {
        enrolled[("Ann", graded)]: (D("81.00"), "B"),
        enrolled[("Bob", graded)]: (None, None),
    }
    assert "2 DT grades updated, 0 unchanged, 1 deleted (no assignments)" in ran.summary
    again = await runner("grades.recalc_dt_grades", params)
    assert "0 DT grades updated, 2 unchanged, 0 deleted" in again.summary


async def test_refresh_choice_data_audits_only_real_changes(
    runner: JobRunner, k12: K12, conn: asyncpg.Connection
) -> None:
    ann, enrollment = await k12.student("Ann", k12.elem, "05")
    bob, _ = await k12.student("Bob", k12.elem, "04")
    await conn.execute(
        "UPDATE sis.student_enrollments SET zoned_school_id = $2 WHERE id = $1", enrollment, k12.mid
    )
    apps = {}
    for who, status in ((ann, "Waiting"), (bob, "Accepted")):
        apps[who["first"]] = await conn.fetchval(
            """INSERT INTO sis.school_choice_application_status (person_id, school_year, program, status, current_grade)
               VALUES ($1, $2, 'STEM magnet', $3, '04') RETURNING id""",
            who["id"], k12.year + 1, status,
        )  # fmt: skip
    params = {"divisions": [k12.elem_code], "year": "next"}
    dry = await runner("enrollment.refresh_choice_data", {**params, "dry_run": True})
    assert "1 applications refreshed" in dry.summary and "3 fields audited" in dry.summary
    await runner("enrollment.refresh_choice_data", params)
    row = await conn.fetchrow(
        "SELECT * FROM sis.school_choice_application_status WHERE id = $1", apps["Ann"]
    )
    assert (row["current_school_id"], row["current_grade"], row["zoned_school_id"]) == (
        k12.elem,
        "05",
        k12.mid,
    )
    audit = await conn.fetch(
        "SELECT field, old_value, new_value FROM sis.school_choice_audit WHERE application_id = $1 ORDER BY field",
        apps["Ann"],
    )
    assert [tuple(a) for a in audit] == [
        ("current_grade", "04", "05"), ("current_school_id", None, str(k12.elem)), ("zoned_school_id", None, str(k12.mid)),
    ]  # fmt: skip
    bob_row = await conn.fetchrow(
        "SELECT * FROM sis.school_choice_application_status WHERE id = $1", apps["Bob"]
    )
    assert bob_row["current_school_id"] is None  # Accepted: not asked for
    again = await runner("enrollment.refresh_choice_data", params)
    assert "0 applications refreshed, 1 unchanged, 0 fields audited" in again.summary
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM sis.school_choice_audit WHERE application_id = $1", apps["Ann"]
        )
        == 3
    )
    both = await runner(
        "enrollment.refresh_choice_data", {**params, "statuses": ["Waiting", "Accepted"]}
    )
    assert "1 applications refreshed, 1 unchanged" in both.summary


@pytest.mark.unit
def test_codes_and_statuses_refuse_a_trailing_newline_when_saved() -> None:
    from belltower.errors import InvalidInput
    from belltower_integration.jobs import registry
    from belltower_scheduler.catalog import validate_params

    for name, params in (
        ("enrollment.rollover", {"enrollment_code": "R1\n"}),
        ("enrollment.set_next_school", {"grades": ["05\n"]}),
        ("enrollment.refresh_choice_data", {"statuses": ["Waiting\n"]}),
        ("messaging.communication_status_update", {"group": "REGISTRAR\n"}),
    ):
        kind = registry.get(name)
        assert kind is not None
        with pytest.raises(InvalidInput):
            validate_params(kind.info(), params)
    kind = registry.get("enrollment.refresh_choice_data")
    assert kind is not None
    assert validate_params(kind.info(), {"statuses": ["Waiting", "On hold"]})
