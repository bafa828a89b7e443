"""Edvance360 and Moodle attendance imports against the demo school: marks land on the student's
section and day, a repeat of the occurrence (and the same marks again) changes nothing, rows
that do not fit are skipped and named, a dry run writes nothing, and the failure paths (not a
workbook, a header without its columns, a Moodle site without the attendance plugin)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from belltower.errors import InvalidInput
from belltower_dev.standins.moodle import MoodleStandIn
from belltower_integration.jobs import edvance360_attendance, moodle_attendance
from belltower_scheduler.catalog import validate_params
from tests.catalog.conftest import JobRunner
from tests.catalog.integrations_support import keep_current_sections

EDVANCE, MOODLE = edvance360_attendance.job_type.name, moodle_attendance.job_type.name

MEETING_SQL = """
SELECT p.id AS person_id, p.sis_id, s.id AS section_id, c.code AS course, s.section_code,
       t.code AS term, m.meets_on
  FROM sis.enrollments e JOIN sis.people p ON p.id = e.person_id
  JOIN sis.sections s ON s.id = e.section_id JOIN sis.courses c ON c.id = s.course_id
  JOIN sis.terms t ON t.id = s.term_id JOIN sis.section_meetings m ON m.section_id = s.id
 WHERE e.status = 'enrolled' AND t.code = 'CURR'
 ORDER BY m.meets_on, p.sis_id LIMIT 1
"""
MARK_SQL = (
    "SELECT mark FROM sis.attendance WHERE section_id = $1 AND person_id = $2 AND meets_on = $3"
)


@pytest.fixture
async def meeting(run_job: JobRunner) -> Any:
    pool = await run_job.db.pool()
    await keep_current_sections(pool, 4)
    found = await pool.fetchrow(MEETING_SQL)
    assert found is not None, "the demo school has a meeting of an enrolled student"
    await pool.execute(
        "DELETE FROM sis.attendance WHERE section_id = $1 AND person_id = $2",
        found["section_id"], found["person_id"],
    )  # fmt: skip
    return found


def workbook(path: Path, rows: list[list[object]],
             header: tuple[str, ...] = ("Student ID", "Course", "Section", "Term", "Date",
                                         "Attendance")) -> None:  # fmt: skip
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(list(header))
    for row in rows:
        sheet.append(row)
    book.save(path)


async def test_edvance360_marks_land_once_and_the_file_is_moved(
    run_job: JobRunner, tmp_batch_folder: Path, meeting: Any
) -> None:
    m = meeting
    drop = tmp_batch_folder / "360attend.xlsx"
    rows: list[list[object]] = [
        [m["sis_id"], m["course"], m["section_code"], m["term"],
         datetime.combine(m["meets_on"], time()), "Absent"],
        [m["sis_id"], m["course"], "", m["term"], "2001-01-01", "P"],
        ["NOBODY", m["course"], m["section_code"], m["term"], m["meets_on"].isoformat(), "A"],
        [m["sis_id"], m["course"], m["section_code"], m["term"], m["meets_on"].isoformat(), "maybe"],
        [m["sis_id"], "", "", m["term"], "", "A"],
    ]  # fmt: skip
    workbook(drop, rows)
    params = {"settle_s": 0, "notify": ["registrar@example.edu"]}
    when = datetime.combine(m["meets_on"] + timedelta(days=1), time(6), UTC)
    ran = await run_job(EDVANCE, params, occurrence_id="occ-1", scheduled_for=when)
    assert ran.status == "succeeded", ran.error
    pool = await run_job.db.pool()
    assert await pool.fetchval(MARK_SQL, m["section_id"], m["person_id"], m["meets_on"]) == "absent"
    assert (
        ran.summary
        == "Edvance360 attendance import: 1 marks added, 0 changed, 0 unchanged, 4 rows skipped"
    )
    assert "does not meet on 2001-01-01" in ran.text and "NOBODY is not enrolled in" in ran.text
    assert "'maybe' is not a mark" in ran.text and "row 6: " in ran.text
    assert "results sent to 1 recipient(s)" in ran.text
    assert not drop.exists()
    assert [p.name for p in (tmp_batch_folder / "processed").iterdir()] == [
        f"360attend-{when:%Y%m%d%H%M%S}.xlsx"
    ]

    again = await run_job(EDVANCE, params, occurrence_id="occ-1", scheduled_for=when)
    assert again.summary == "no 360attend.xlsx in the batch folder; nothing to import"

    workbook(drop, rows[:1])
    same = await run_job(EDVANCE, {"settle_s": 0}, occurrence_id="occ-2")
    assert same.summary.startswith(
        "Edvance360 attendance import: 0 marks added, 0 changed, 1 unchanged"
    )

    workbook(drop, [[*rows[0][:5], "Present"]])
    dry = await run_job(EDVANCE, {"settle_s": 0, "dry_run": True}, occurrence_id="occ-3")
    assert dry.summary.startswith(
        "Edvance360 attendance import (dry run): 0 marks added, 1 changed"
    )
    assert await pool.fetchval(MARK_SQL, m["section_id"], m["person_id"], m["meets_on"]) == "absent"
    assert drop.exists()
    kept = await run_job(EDVANCE, {"settle_s": 0, "overwrite": False}, occurrence_id="occ-4")
    assert kept.summary.startswith(
        "Edvance360 attendance import: 0 marks added, 0 changed, 1 unchanged"
    )
    assert await pool.fetchval(MARK_SQL, m["section_id"], m["person_id"], m["meets_on"]) == "absent"


async def test_edvance360_refuses_a_file_it_cannot_read_and_leaves_it(
    run_job: JobRunner, tmp_batch_folder: Path, meeting: Any
) -> None:
    drop = tmp_batch_folder / "360attend.xlsx"
    drop.write_text("Student ID,Course\nS1,MATH\n")
    ran = await run_job(EDVANCE, {"settle_s": 0})
    assert ran.status == "failed" and "is not an Excel workbook" in (ran.error or "")
    workbook(drop, [["S1", "MATH", "CURR"]], header=("Student ID", "Course", "Term"))
    ran = await run_job(EDVANCE, {"settle_s": 0})
    assert ran.status == "failed" and "the header lacks date, mark" in (ran.error or "")
    assert drop.exists()


@pytest.fixture
def moodle(monkeypatch: pytest.MonkeyPatch) -> Iterator[MoodleStandIn]:
    with MoodleStandIn() as server:
        monkeypatch.setenv("BELLTOWER_SECRET_MOODLE_TOKEN", server.token)
        yield server


def moodle_course(server: MoodleStandIn, m: Any, sessions: list[tuple[datetime, str]]) -> None:
    server.users[7] = {"id": 7, "username": "s", "firstname": "S", "lastname": "T",
                       "email": "s@example.edu", "idnumber": m["sis_id"]}  # fmt: skip
    server.users[8] = {"id": 8, "username": "x", "firstname": "X", "lastname": "Y",
                       "email": "x@example.edu", "idnumber": ""}  # fmt: skip
    server.courses[9] = {"id": 9, "fullname": "C", "shortname": "c", "categoryid": 1,
                         "idnumber": f"{m['course']}-{m['term']}"}  # fmt: skip
    activity = server.add_attendance(9)
    for when, acronym in sessions:
        server.add_session(activity, int(when.timestamp()), {7: acronym, 8: "P"})


async def test_moodle_sessions_are_read_through_the_plugin_and_land_once(
    run_job: JobRunner, moodle: MoodleStandIn, meeting: Any
) -> None:
    m = meeting
    held = datetime.combine(m["meets_on"], time(14), UTC)
    moodle_course(moodle, m, [(held, "L"), (held - timedelta(days=30), "A")])
    params = {"base_url": moodle.url, "time_zone": "UTC", "past_days": 7}
    when = datetime.combine(m["meets_on"] + timedelta(days=1), time(6), UTC)
    ran = await run_job(MOODLE, params, occurrence_id="occ-1", scheduled_for=when)
    assert ran.status == "succeeded", ran.error
    pool = await run_job.db.pool()
    assert await pool.fetchval(MARK_SQL, m["section_id"], m["person_id"], m["meets_on"]) == "tardy"
    assert "1 marks added, 0 changed, 0 unchanged" in ran.summary
    assert "the Moodle user has no idnumber" in ran.text  # user 8
    assert ", 1 sessions since " in ran.text  # the session of 30 days back was not read
    assert "mod_attendance_get_sessions" in moodle.calls

    again = await run_job(MOODLE, params, occurrence_id="occ-1", scheduled_for=when)
    assert "0 marks added, 0 changed, 1 unchanged" in again.summary
    rows = await pool.fetchval(
        "SELECT count(*) FROM sis.attendance WHERE person_id = $1", m["person_id"]
    )

    moodle.sessions[next(iter(moodle.sessions))][0]["attendance_log"][0]["statusid"] = str(
        next(iter(moodle.sessions)) * 10 + 3
    )  # now Excused
    dry = await run_job(MOODLE, {**params, "dry_run": True}, scheduled_for=when)
    assert "0 marks added, 1 changed" in dry.summary and "dry run" in dry.summary
    assert await pool.fetchval(MARK_SQL, m["section_id"], m["person_id"], m["meets_on"]) == "tardy"
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM sis.attendance WHERE person_id = $1", m["person_id"]
        )
        == rows
    )


async def test_a_moodle_site_without_the_attendance_plugin_is_named(
    run_job: JobRunner, meeting: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with MoodleStandIn(attendance_plugin=False) as server:
        monkeypatch.setenv("BELLTOWER_SECRET_MOODLE_TOKEN", server.token)
        moodle_course_no_sessions(server, meeting)
        ran = await run_job(MOODLE, {"base_url": server.url})
    assert ran.status == "failed"
    assert "needs the Attendance activity plugin (mod_attendance)" in (ran.error or "")


def moodle_course_no_sessions(server: MoodleStandIn, m: Any) -> None:
    server.courses[9] = {"id": 9, "fullname": "C", "shortname": "c", "categoryid": 1,
                         "idnumber": f"{m['course']}-{m['term']}"}  # fmt: skip
    server.modules[9].append({"id": 1, "name": "Attendance", "modname": "attendance",
                              "instance": 5, "visible": 1})  # fmt: skip


@pytest.mark.parametrize(
    ("job", "params", "field"),
    [(EDVANCE, {"folder": "../x"}, "param.folder"),
     (EDVANCE, {"file_name": "360attend.csv"}, "param.file_name"),
     (EDVANCE, {"notify": ["not an address"]}, "param.notify"),
     (MOODLE, {"base_url": "http://10.1.2.3"}, "param.base_url"),
     (MOODLE, {"base_url": "https://m.example.edu", "status_marks": {"P": "here"}}, "param.status_marks"),
     (MOODLE, {"base_url": "https://m.example.edu", "time_zone": "../etc"}, "param.time_zone")],
)  # fmt: skip
@pytest.mark.unit
def test_bad_parameters_are_refused_when_the_job_is_saved(
    job: str, params: dict, field: str
) -> None:
    kind = edvance360_attendance.job_type if job == EDVANCE else moodle_attendance.job_type
    with pytest.raises(InvalidInput) as caught:
        validate_params(kind.info(), params)
    assert caught.value.field.startswith(field)


@pytest.mark.unit
def test_excel_dates_and_words_are_read() -> None:
    assert edvance360_attendance._day(datetime(2026, 3, 2, 0, 0)) == date(2026, 3, 2)
    assert edvance360_attendance._day("3/2/2026") == date(2026, 3, 2)
    assert edvance360_attendance._day("2026-02-30") is None
