"""The calculation jobs against the real SIS schema, on tiny schools worked out by hand.

One database (a clone of the demo-school template) serves the whole module; each test builds
its own school (a division of its own), and every job is limited to that school, so the tests
do not see each other's rows nor the demo's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from belltower.settings import Settings
from tests.catalog.conftest import JobRunner
from tests.catalog.school import School
from tests.conftest import cloned

D = Decimal


@pytest.fixture(scope="module")
def calc_database(pg_server: Any, sis_template_database: str) -> Iterator[str]:
    """One clone of the demo school for the whole module (each test makes its own school)."""
    with cloned(pg_server, sis_template_database, "belltower_calc") as url:
        yield url


@pytest.fixture
async def runner(
    calc_database: str, mail_sink: Any, tmp_batch_folder: Any
) -> AsyncIterator[JobRunner]:
    r = JobRunner(
        Settings(
            database_url=calc_database,
            smtp_host=mail_sink.host,
            smtp_port=mail_sink.port,
            batch_folder=tmp_batch_folder,
        )
    )
    yield r
    await r.db.close()


@pytest.fixture
async def conn(calc_database: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(calc_database)
    yield c
    await c.close()


@pytest.fixture
def school(conn: asyncpg.Connection, sis_today: Any) -> School:
    return School(conn, sis_today)


async def section(
    s: School, division: str, term: str, credits: int, weight: str = "0", **kw: Any
) -> int:
    sid = await s.section(division=division, credits=credits, **kw)
    await s.conn.execute(
        "UPDATE sis.sections SET term_id = (SELECT id FROM sis.terms WHERE code = $2) WHERE id = $1",
        sid, term,
    )  # fmt: skip
    await s.conn.execute(
        "UPDATE sis.courses SET gpa_weight = $2 FROM sis.sections s WHERE s.id = $1 AND courses.id = s.course_id",
        sid, D(weight),
    )  # fmt: skip
    return sid


async def graded(
    s: School, person: dict[str, Any], sid: int, grade: str, official: bool = True
) -> None:
    credits = await s.conn.fetchval(
        "SELECT c.credits FROM sis.sections s JOIN sis.courses c ON c.id = s.course_id WHERE s.id = $1",
        sid,
    )
    eid = await s.conn.fetchval(
        "INSERT INTO sis.enrollments (person_id, section_id, status, credits) "
        "VALUES ($1, $2, 'completed', $3) RETURNING id",
        person["id"], sid, credits,
    )  # fmt: skip
    await s.grade(eid, grade, is_official=official, final_posted=True)


async def records(conn: asyncpg.Connection, division: str) -> dict[tuple[str, str], Any]:
    rows = await conn.fetch(
        """SELECT p.first_name, t.code AS term, a.* FROM sis.academic_records a
             JOIN sis.people p ON p.id = a.person_id JOIN sis.terms t ON t.id = a.term_id
            WHERE p.division_id = (SELECT id FROM sis.divisions WHERE code = $1)""",
        division,
    )
    return {(r["first_name"], r["term"]): r for r in rows}


async def gpa_school(s: School, division: str) -> None:
    """Worked by hand (credits: C1 3, C2 4 with an AP weight of 1.0, C3 3):

    previous term   C1  C2  unweighted         weighted
      Ann           A   B   (12+12)/7 = 3.429  (12+16)/7 = 4.000
      Bob           B   A   (9+16)/7  = 3.571  (9+20)/7  = 4.143
      Cal           A   B   3.429              4.000      (ties Ann)
      Dee           F   C   (0+8)/7   = 1.143  (0+12)/7  = 1.714 (no weight on an F; F earns no credit)
      Eve (ASSOC)   A   -   4.000              4.000      (another class)
    weighted ranks of the BACH class: Bob 1, Ann 2, Cal 2, Dee 4 ("1224").
    current term: Ann C3 C, Cal C3 A, Bob C3 W (not attempted), Dee C3 B unofficial (left out).
      Ann cumulative (24+6)/10 = 3.000 unweighted, (28+6)/10 = 3.400 weighted; Cal (24+12)/10 =
      3.600, (28+12)/10 = 4.000. Current term class: Cal 1, Ann 2 of 2.
    """
    ann, bob, cal, dee, eve = [
        await s.person(n, division=division) for n in ("Ann", "Bob", "Cal", "Dee", "Eve")
    ]
    await s.conn.execute("UPDATE sis.people SET level_id = 2 WHERE id = $1", eve["id"])
    c1 = await section(s, division, "PREV", 3)
    c2 = await section(s, division, "PREV", 4, "1.0")
    c3 = await section(s, division, "CURR", 3)
    for who, g1, g2 in ((ann, "A", "B"), (bob, "B", "A"), (cal, "A", "B"), (dee, "F", "C")):
        await graded(s, who, c1, g1)
        await graded(s, who, c2, g2)
    await graded(s, eve, c1, "A")
    await graded(s, ann, c3, "C")
    await graded(s, cal, c3, "A")
    await graded(s, bob, c3, "W")
    await graded(s, dee, c3, "B", official=False)


async def test_class_rank_and_gpa_match_the_hand_worked_school(
    runner: JobRunner, school: School, conn: asyncpg.Connection
) -> None:
    await gpa_school(school, "GPA1")
    params = {"divisions": ["GPA1"]}

    dry = await runner("calc.class_rank_gpa", {**params, "dry_run": True})
    assert dry.status == "succeeded", dry.error
    assert "7 added" in dry.summary and "dry run: nothing written" in dry.summary
    assert await records(conn, "GPA1") == {}

    occurrence = "occ-gpa-1"
    ran = await runner("calc.class_rank_gpa", params, occurrence_id=occurrence)
    assert ran.summary.startswith(
        "Class rank and GPA: 7 added, 0 updated, 0 unchanged, 0 removed, 5 students"
    )
    assert "GPA1" in ran.text and "<table>" in (ran.html or "")
    got = await records(conn, "GPA1")
    assert set(got) == {
        ("Ann", "PREV"), ("Bob", "PREV"), ("Cal", "PREV"), ("Dee", "PREV"), ("Eve", "PREV"),
        ("Ann", "CURR"), ("Cal", "CURR"),
    }  # fmt: skip
    want = {  # session unweighted, weighted, cumulative unweighted, weighted, rank, size, percentile
        ("Ann", "PREV"): ("3.429", "4.000", "3.429", "4.000", 2, 4, "75.00"),
        ("Bob", "PREV"): ("3.571", "4.143", "3.571", "4.143", 1, 4, "100.00"),
        ("Cal", "PREV"): ("3.429", "4.000", "3.429", "4.000", 2, 4, "75.00"),
        ("Dee", "PREV"): ("1.143", "1.714", "1.143", "1.714", 4, 4, "25.00"),
        ("Eve", "PREV"): ("4.000", "4.000", "4.000", "4.000", 1, 1, "100.00"),
        ("Ann", "CURR"): ("2.000", "2.000", "3.000", "3.400", 2, 2, "50.00"),
        ("Cal", "CURR"): ("4.000", "4.000", "3.600", "4.000", 1, 2, "100.00"),
    }
    for key, (su, sw, cu, cw, rank, size, pct) in want.items():
        r = got[key]
        assert (r["session_gpa_unweighted"], r["session_gpa_weighted"]) == (D(su), D(sw)), key
        assert (r["cumulative_gpa_unweighted"], r["cumulative_gpa_weighted"]) == (D(cu), D(cw)), key
        assert (r["class_rank"], r["class_size"], r["class_percentile"]) == (rank, size, D(pct)), (
            key
        )
        assert r["rank_basis"] == "weighted" and r["occurrence_id"] == occurrence
    dee = got[("Dee", "PREV")]
    assert (dee["session_attempted_credits"], dee["session_earned_credits"]) == (D(7), D(4))
    ann = got[("Ann", "CURR")]
    assert (ann["cumulative_attempted_credits"], ann["cumulative_earned_credits"]) == (D(10), D(10))

    again = await runner("calc.class_rank_gpa", params, occurrence_id=occurrence)
    assert again.summary.startswith(
        "Class rank and GPA: 0 added, 0 updated, 7 unchanged, 0 removed"
    )
    assert await records(conn, "GPA1") == got, "a redelivered occurrence rewrote records"

    unweighted = await runner(
        "calc.class_rank_gpa", {**params, "rank_by": "unweighted", "terms": ["PREV"]}
    )
    assert "0 added, 5 updated" in unweighted.summary  # rank basis changes on every PREV record
    prev = await records(conn, "GPA1")
    assert [prev[(n, "PREV")]["class_rank"] for n in ("Bob", "Ann", "Cal", "Dee")] == [1, 2, 2, 4]
    assert prev[("Ann", "CURR")]["rank_basis"] == "weighted", "a term not asked for was touched"


async def test_gpa_reset_rebuilds_once_per_occurrence(
    runner: JobRunner, school: School, conn: asyncpg.Connection
) -> None:
    await gpa_school(school, "GPA2")
    params = {"divisions": ["GPA2"]}
    await runner("calc.class_rank_gpa", params)
    before = {k: r["cumulative_gpa_weighted"] for k, r in (await records(conn, "GPA2")).items()}
    await conn.execute(
        "UPDATE sis.academic_records SET cumulative_gpa_weighted = 0.5 WHERE person_id IN "
        "(SELECT id FROM sis.people WHERE division_id = (SELECT id FROM sis.divisions WHERE code = 'GPA2'))"
    )
    dry = await runner("calc.gpa_reset", {**params, "dry_run": True})
    assert "7 records deleted, 7 records rebuilt" in dry.summary
    assert {r["cumulative_gpa_weighted"] for r in (await records(conn, "GPA2")).values()} == {
        D("0.5")
    }

    reset = await runner("calc.gpa_reset", params, occurrence_id="occ-reset")
    assert "7 records deleted, 7 records rebuilt" in reset.summary
    after = await records(conn, "GPA2")
    assert {k: r["cumulative_gpa_weighted"] for k, r in after.items()} == before
    redelivered = await runner("calc.gpa_reset", params, occurrence_id="occ-reset")
    assert "0 records deleted, 0 records rebuilt, 7 already rebuilt" in redelivered.summary
    assert await records(conn, "GPA2") == after


async def test_unknown_school_is_refused_naming_the_parameter(runner: JobRunner) -> None:
    ran = await runner("calc.class_rank_gpa", {"divisions": ["NOPE"]})
    assert ran.status == "failed" and "NOPE" in (ran.error or "")


async def days(conn: asyncpg.Connection, division: str) -> dict[tuple[str, int], str]:
    rows = await conn.fetch(
        """SELECT p.first_name, d.on_date - current_date AS day, d.status FROM sis.attendance_days d
             JOIN sis.people p ON p.id = d.person_id
            WHERE p.division_id = (SELECT id FROM sis.divisions WHERE code = $1)""",
        division,
    )
    return {(r["first_name"], r["day"]): r["status"] for r in rows}


async def test_daily_attendance_and_its_summary_follow_the_rules(
    runner: JobRunner, school: School, conn: asyncpg.Connection, sis_today: Any
) -> None:
    s = school
    ann, bob = await s.person("Ann", division="ATT1"), await s.person("Bob", division="ATT1")
    s1, s2, s3 = [await s.section(division="ATT1") for _ in range(3)]
    for who in (ann, bob):
        await s.enroll(who, s1)
    marks = {  # day: (Ann's marks in s1, s2, s3; Bob's), worked out below
        -3: (("present", "absent", "absent"), ("present", "tardy", "present")),
        -2: (("excused", "absent"), ("absent", "present")),
        -1: (("tardy", "tardy", "present"), ()),
        -20: (("absent",), ()),
    }
    for day, (ann_marks, bob_marks) in marks.items():
        for sid, mark in zip((s1, s2, s3), ann_marks, strict=False):
            await s.mark(sid, ann, day, mark)
        for sid, mark in zip((s1, s2, s3), bob_marks, strict=False):
            await s.mark(sid, bob, day, mark)
    params = {"divisions": ["ATT1"], "as_of": sis_today.isoformat()}
    dry = await runner("calc.daily_attendance", {**params, "dry_run": True})
    assert "5 days added" in dry.summary and await days(conn, "ATT1") == {}

    ran = await runner("calc.daily_attendance", params, occurrence_id="occ-daily")
    assert ran.summary.startswith(
        "Daily attendance: 5 days added, 0 days updated, 0 days unchanged"
    )
    # Ann -3: 2 of 3 missed (>= 50%), none excused: absent. -2: 2 of 2 missed, 1 excused vs 1
    # not: excused. -1: tardies count as attended: present. -20 is outside the 7 days back.
    # Bob -3: a tardy only: present. -2: 1 of 2 missed is 50%: absent.
    want = {("Ann", -3): "absent", ("Ann", -2): "excused", ("Ann", -1): "present",
            ("Bob", -3): "present", ("Bob", -2): "absent"}  # fmt: skip
    assert await days(conn, "ATT1") == want
    again = await runner("calc.daily_attendance", params, occurrence_id="occ-daily")
    assert "0 days added, 0 days updated, 5 days unchanged, 0 days removed" in again.summary

    strict = await runner("calc.daily_attendance", {**params, "tardy_is_present": False})
    assert "0 days added, 1 days updated, 4 days unchanged" in strict.summary
    assert (await days(conn, "ATT1"))[("Ann", -1)] == "absent"  # 2 tardies of 3 periods
    await runner("calc.daily_attendance", params)

    summary = await runner("calc.attendance_summary", params, occurrence_id="occ-sum")
    assert "2 summaries added" in summary.summary
    got = {
        r["first_name"]: tuple(
            r[c] for c in ("days_enrolled", "days_present", "days_excused", "days_unexcused")
        )
        for r in await conn.fetch(
            """SELECT p.first_name, a.* FROM sis.attendance_summaries a JOIN sis.people p ON p.id = a.person_id
                WHERE p.id = ANY($1::bigint[])""",
            [ann["id"], bob["id"]],
        )
    }
    # Both are enrolled in s1, which met on days -20, -3, -2 and -1: 4 days enrolled each, whether
    # marked or not; day -20 has no daily attendance (outside the days recalculated).
    assert got == {"Ann": (4, 1, 1, 1), "Bob": (4, 1, 0, 1)}
    redelivered = await runner("calc.attendance_summary", params, occurrence_id="occ-sum")
    assert "0 summaries added, 0 summaries updated, 2 summaries unchanged" in redelivered.summary


async def test_detentions_from_tardies_once_per_threshold(
    runner: JobRunner, school: School, conn: asyncpg.Connection
) -> None:
    s = school
    cal = await s.person("Cal", division="DET1")
    sid = await s.section(division="DET1")
    await s.enroll(cal, sid)
    for day in range(-14, -10):  # 4 tardies
        await s.mark(sid, cal, day, "tardy")
    await s.mark(sid, cal, -10, "absent")
    params = {"divisions": ["DET1"], "thresholds": [6, 3]}
    listed = "SELECT tardies, reason FROM sis.detentions WHERE person_id = $1 ORDER BY id"

    dry = await runner("calc.detentions_from_tardies", {**params, "dry_run": True})
    assert "1 detentions added" in dry.summary and await conn.fetch(listed, cal["id"]) == []
    first = await runner("calc.detentions_from_tardies", params, occurrence_id="occ-det")
    assert "1 detentions added, 0 already on the list" in first.summary
    again = await runner("calc.detentions_from_tardies", params, occurrence_id="occ-det")
    assert "0 detentions added, 1 already on the list" in again.summary
    for day in (-9, -8):
        await s.mark(sid, cal, day, "tardy")
    later = await runner("calc.detentions_from_tardies", params)
    assert "1 detentions added, 1 already on the list" in later.summary
    assert [tuple(r) for r in await conn.fetch(listed, cal["id"])] == [
        (4, "3 tardies in CURR"),
        (6, "6 tardies in CURR"),
    ]


async def test_auto_withdraw_after_consecutive_absences(
    runner: JobRunner, school: School, conn: asyncpg.Connection, sis_today: Any
) -> None:
    s = school
    dee, eli = await s.person("Dee", division="AWD1"), await s.person("Eli", division="AWD1")
    sid = await s.section(division="AWD1")
    e_dee, e_eli = await s.enroll(dee, sid), await s.enroll(eli, sid)
    for day, mark in ((-12, "absent"), (-11, "absent"), (-10, "present"), (-9, "absent"),
                      (-8, "absent"), (-7, "absent"), (-6, "absent")):  # fmt: skip
        await s.mark(sid, dee, day, mark)
    for day, mark in ((-12, "absent"), (-11, "absent"), (-10, "tardy"), (-9, "absent")):
        await s.mark(sid, eli, day, mark)
    params = {"divisions": ["AWD1"], "consecutive_absences": 3}
    state = "SELECT status, withdrawn_on FROM sis.enrollments WHERE id = $1"

    dry = await runner("calc.auto_withdraw", {**params, "dry_run": True})
    assert "1 enrollments withdrawn, 2 enrollments checked" in dry.summary
    assert (await conn.fetchrow(state, e_dee))["status"] == "enrolled"
    ran = await runner("calc.auto_withdraw", params, occurrence_id="occ-awd")
    assert "1 enrollments withdrawn" in ran.summary
    assert tuple(await conn.fetchrow(state, e_dee)) == (
        "withdrawn",
        s.days(-7),
    )  # the third in a row
    assert (await conn.fetchrow(state, e_eli))["status"] == "enrolled"
    assert await conn.fetchval("SELECT enrolled FROM sis.sections WHERE id = $1", sid) == 1
    logged = await conn.fetchrow(
        "SELECT action, term_credits_before, term_credits_after, changed_by FROM sis.schedule_changes "
        "WHERE person_id = $1",
        dee["id"],
    )
    assert tuple(logged) == ("withdraw", D(3), D(0), "belltower:job-calc.auto_withdraw")
    again = await runner("calc.auto_withdraw", params, occurrence_id="occ-awd")
    assert "0 enrollments withdrawn, 1 enrollments checked" in again.summary
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM sis.schedule_changes WHERE person_id = $1", dee["id"]
        )
        == 1
    )


async def test_attendance_triggers_queue_each_letter_once(
    runner: JobRunner, school: School, conn: asyncpg.Connection, sis_today: Any
) -> None:
    s = school
    fay = await s.person("Fay", division="TRG1")
    gus = await s.person("Gus", division="TRG1", email=False)
    guardian = await conn.fetchval(
        "INSERT INTO sis.guardians (sis_id, first_name, last_name, email) "
        "VALUES ('GTRG1', 'Hal', 'Tester', 'hal@guardian.example') RETURNING id"
    )
    await conn.execute(
        "INSERT INTO sis.student_guardians (student_id, guardian_id, relationship, is_primary) VALUES ($1, $2, 'parent', true)",
        fay["id"], guardian,
    )  # fmt: skip
    sid = await s.section(division="TRG1")
    for who in (fay, gus):
        await s.enroll(who, sid)
        for day in (-5, -4, -3):
            await s.mark(sid, who, day, "absent")
        await s.mark(sid, who, -2, "present")
    scope = {"divisions": ["TRG1"], "as_of": sis_today.isoformat()}
    await runner("calc.daily_attendance", scope)
    params = {**scope, "daily_thresholds": [5, 3], "period_thresholds": [2, 3], "send_to": "both"}
    queued = (
        "SELECT to_address, subject, body_text FROM sis.communication_queue "
        "WHERE person_id = ANY($1::bigint[]) ORDER BY id"
    )
    people = [fay["id"], gus["id"]]

    dry = await runner("calc.attendance_triggers", {**params, "dry_run": True})
    assert "4 letters, 4 e-mails queued, 2 letters with no address" in dry.summary, dry.text
    assert await conn.fetch(queued, people) == []
    ran = await runner("calc.attendance_triggers", params, occurrence_id="occ-trg")
    assert "4 letters, 4 e-mails queued, 2 letters with no address" in ran.summary
    mails = [tuple(r) for r in await conn.fetch(queued, people)]
    assert sorted(m[0] for m in mails) == sorted([fay["email"], "hal@guardian.example"] * 2)
    assert {m[1] for m in mails} == {"Attendance notice for Fay Tester"}
    bodies = {m[2] for m in mails}
    assert any("3 absent days" in b and "threshold of 3" in b for b in bodies)
    assert any("3 absent class periods" in b and "threshold of 3" in b for b in bodies)
    ledger = await conn.fetch(
        "SELECT trigger, threshold FROM sis.attendance_letters WHERE person_id = $1 ORDER BY 1, 2",
        fay["id"],
    )
    assert [tuple(r) for r in ledger] == [("daily", 3), ("period", 2), ("period", 3)]

    again = await runner("calc.attendance_triggers", params, occurrence_id="occ-trg")
    assert "0 letters, 0 e-mails queued" in again.summary
    assert len(await conn.fetch(queued, people)) == 4


async def test_at_risk_alert_tells_the_group_once_per_term(
    runner: JobRunner, school: School, conn: asyncpg.Connection, mail_sink: Any
) -> None:
    s = school
    staff = await s.person("Ivy", status="staff", division="RSK1")
    await s.group("RISKG", staff)
    amy, ben = await s.person("Amy", division="RSK1"), await s.person("Ben", division="RSK1")
    sid = await s.section(division="RSK1")
    for who in (amy, ben):
        await s.enroll(who, sid)
    await s.mark(sid, amy, -4, "absent")
    await s.mark(sid, amy, -3, "tardy")
    await s.mark(sid, ben, -3, "present")
    await conn.execute(
        """INSERT INTO sis.academic_records (person_id, term_id, session_attempted_credits, session_earned_credits,
               session_gpa_credits, cumulative_attempted_credits, cumulative_earned_credits, cumulative_gpa_credits,
               cumulative_gpa_unweighted)
           VALUES ($1, (SELECT id FROM sis.terms WHERE code = 'PREV'), 3, 3, 3, 3, 3, 3, 1.0)""",
        amy["id"],
    )
    await conn.execute(
        "INSERT INTO sis.holds (person_id, hold_type, starts_on) VALUES ($1, 'LIB', $2)",
        amy["id"],
        s.days(-30),
    )
    params = {"divisions": ["RSK1"], "group": "RISKG", "threshold": 60}

    dry = await runner(
        "notifier.at_risk_alert", {**params, "dry_run": True}, occurrence_id="occ-risk"
    )
    assert dry.summary.startswith(
        "dry run: 1 message would be sent, nothing sent; 1 row processed"
    ), dry.summary
    assert "Amy" in dry.text and not [
        m for m in mail_sink.messages if staff["email"] in m.envelope_to
    ]
    ran = await runner("notifier.at_risk_alert", params, occurrence_id="occ-risk")
    assert ran.status == "succeeded", ran.error
    mails = [m for m in mail_sink.messages if staff["email"] in m.envelope_to]
    assert len(mails) == 1
    # Amy: grades 40 x 1.0/4 = 10, attendance 40 x 1/2 = 20 (the tardy attended), one hold 20 - 10 = 10.
    # Ben: no GPA yet (40), attended all (40), no holds (20) = 100: not at risk.
    text = mails[0].get_body(("plain",)).get_content()
    assert "Amy" in text and "40.0" in text and "50%" in text and "Ben" not in text
    again = await runner("notifier.at_risk_alert", params, occurrence_id="occ-risk")
    later = await runner("notifier.at_risk_alert", params)
    assert again.status == later.status == "succeeded"
    assert len([m for m in mail_sink.messages if staff["email"] in m.envelope_to]) == 1


async def test_graduation_requirements_summary(
    runner: JobRunner, school: School, conn: asyncpg.Connection
) -> None:
    s = school
    jo = await s.person("Jo", division="GRD1")  # courses of department 1
    level = await conn.fetchval(
        "INSERT INTO sis.levels (code, name) VALUES ('GRDL', 'Test level') RETURNING id"
    )
    await conn.execute("UPDATE sis.people SET level_id = $2 WHERE id = $1", jo["id"], level)
    req = {}
    for code, dept, credits in (("GRD1-TOTAL", None, 12), ("GRD1-DEPT1", 1, 3)):
        req[code] = await conn.fetchval(
            "INSERT INTO sis.graduation_requirements (level_id, code, name, department_id, credits_required) "
            "VALUES ($4, $1, $1, $2, $3) RETURNING id",
            code, dept, D(credits), level,
        )  # fmt: skip
    passed, failed = await section(s, "GRD1", "PREV", 3), await section(s, "GRD1", "PREV", 4)
    await graded(s, jo, passed, "A")
    await graded(s, jo, failed, "F")  # earns no credit
    current = await section(s, "GRD1", "CURR", 3)
    await conn.execute(
        "INSERT INTO sis.enrollments (person_id, section_id, status, credits) VALUES ($1, $2, 'enrolled', 3)",
        jo["id"], current,
    )  # fmt: skip
    await conn.execute(
        "INSERT INTO sis.transfer_credits (person_id, institution, course_code, course_title, credits, accepted_on) "
        "VALUES ($1, 'Elsewhere', 'X1', 'X', 3, current_date)",
        jo["id"],
    )
    params = {"divisions": ["GRD1"]}
    ran = await runner("calc.grad_requirements_summary", params, occurrence_id="occ-grd")
    assert "2 added" in ran.summary and "1 requirements met" in ran.summary
    got = {
        r["requirement_id"]: tuple(r[c] for c in ("credits_earned", "credits_in_progress", "met"))
        for r in await conn.fetch(
            "SELECT * FROM sis.grad_requirements_summary WHERE person_id = $1", jo["id"]
        )
    }
    # total: 3 (the A) + 3 transferred = 6 of 12, 3 in progress; department 1: 3 of 3, met.
    assert got == {req["GRD1-TOTAL"]: (D(6), D(3), False), req["GRD1-DEPT1"]: (D(3), D(3), True)}
    again = await runner("calc.grad_requirements_summary", params, occurrence_id="occ-grd")
    assert "0 added, 0 updated, 2 unchanged" in again.summary


async def test_immunization_compliance(
    runner: JobRunner, school: School, conn: asyncpg.Connection
) -> None:
    s = school
    kim, lou, max_ = [await s.person(n, division="IMM1") for n in ("Kim", "Lou", "Max")]
    sid = await s.section(division="IMM1")
    for who in (kim, lou):
        await s.enroll(who, sid)  # Max is not enrolled: not an active student
    shots = [
        (kim, "MMR", None), (kim, "HEPB", None), (kim, "TDAP", -10),
        (lou, "MMR", None), (lou, "HEPB", None), (lou, "TDAP", -400), (lou, "TDAP", 300),
        (lou, "MENACWY", 200), (max_, "MMR", None),
    ]  # fmt: skip
    given = "INSERT INTO sis.immunizations (person_id, kind, administered_on, expires_on) VALUES ($1, $2, $3, $4)"
    for who, kind, expires in shots:
        await conn.execute(
            given, who["id"], kind, s.days(-900), s.days(expires) if expires else None
        )
    params = {"divisions": ["IMM1"]}
    read = "SELECT person_id, compliant, missing, expired FROM sis.immunization_compliance WHERE person_id = ANY($1::bigint[])"
    ids = [kim["id"], lou["id"], max_["id"]]

    dry = await runner("calc.immunization_compliance", {**params, "dry_run": True})
    assert "2 added" in dry.summary and await conn.fetch(read, ids) == []
    ran = await runner("calc.immunization_compliance", params)
    assert "2 added" in ran.summary and "1 compliant, 1 not compliant" in ran.summary
    got = {
        r["person_id"]: (r["compliant"], r["missing"], r["expired"])
        for r in await conn.fetch(read, ids)
    }
    assert got == {kim["id"]: (False, ["MENACWY"], ["TDAP"]), lou["id"]: (True, [], [])}
    again = await runner("calc.immunization_compliance", params)
    assert "0 added, 0 updated, 2 unchanged" in again.summary
    await conn.execute(given, kim["id"], "TDAP", s.days(-1), s.days(3650))
    await conn.execute(given, kim["id"], "MENACWY", s.days(-1), s.days(1800))
    renewed = await runner("calc.immunization_compliance", params)
    assert "0 added, 1 updated, 1 unchanged" in renewed.summary and "2 compliant" in renewed.summary


async def test_outstanding_invoices_flag_and_clear(
    runner: JobRunner, school: School, conn: asyncpg.Connection
) -> None:
    s = school
    ned, oli = await s.person("Ned", division="OUT1"), await s.person("Oli", division="OUT1")
    await s.post(ned, "TUIT", "100.00")
    await s.post(oli, "TUIT", "50.00")
    await s.post(oli, "PAY", "-50.00")
    params = {"divisions": ["OUT1"], "min_balance": 0, "as_of": s.today.isoformat()}
    flags = (
        "SELECT person_id, ends_on FROM sis.person_indicators WHERE indicator = 'outstanding_balance' "
        "AND person_id = ANY($1::bigint[])"
    )
    ids = [ned["id"], oli["id"]]

    dry = await runner("calc.outstanding_invoices", {**params, "dry_run": True})
    assert "1 flagged" in dry.summary and await conn.fetch(flags, ids) == []
    ran = await runner("calc.outstanding_invoices", params, occurrence_id="occ-out")
    assert "1 flagged, 0 cleared, 1 outstanding" in ran.summary
    again = await runner("calc.outstanding_invoices", params, occurrence_id="occ-out")
    assert "0 flagged, 0 cleared, 1 outstanding" in again.summary
    assert [tuple(r) for r in await conn.fetch(flags, ids)] == [(ned["id"], None)]
    await s.post(ned, "PAY", "-100.00")
    paid = await runner("calc.outstanding_invoices", params)
    assert "0 flagged, 1 cleared, 0 outstanding" in paid.summary
    assert [tuple(r) for r in await conn.fetch(flags, ids)] == [(ned["id"], s.today)]


async def test_rank_basis_follows_the_school_preference(
    runner: JobRunner, school: School, conn: asyncpg.Connection
) -> None:
    await gpa_school(school, "GPA3")
    fin = await school.person("Fin", division="GPA3")
    c1 = await section(school, "GPA3", "PREV", 3)
    await graded(school, fin, c1, "A")  # 4.000 either way: above Bob unweighted, below him weighted
    params = {"divisions": ["GPA3"], "terms": ["PREV"]}
    await conn.execute(
        "UPDATE sis.school_preferences SET value = 'unweighted' WHERE key = 'class_rank_basis'"
    )
    try:
        ran = await runner("calc.class_rank_gpa", params)
    finally:
        await conn.execute(
            "UPDATE sis.school_preferences SET value = 'weighted' WHERE key = 'class_rank_basis'"
        )
    assert ran.summary.startswith("Class rank and GPA: 6 added")
    got = await records(conn, "GPA3")
    assert {r["rank_basis"] for r in got.values()} == {"unweighted"}
    order = ("Fin", "Bob", "Ann", "Cal", "Dee")
    # unweighted: Fin 4.000, Bob 3.571, Ann and Cal 3.429, Dee 1.143
    assert [got[(n, "PREV")]["class_rank"] for n in order] == [1, 2, 3, 3, 5]
    weighted = await runner("calc.class_rank_gpa", params)
    assert "0 added, 6 updated" in weighted.summary
    got = await records(conn, "GPA3")
    # weighted: Bob 4.143, Fin 4.000, Ann and Cal 4.000 too: three share rank 2, Dee is 5th
    assert [got[(n, "PREV")]["class_rank"] for n in order] == [2, 1, 2, 2, 5]
