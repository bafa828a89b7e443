"""Blackboard User Extract against the demo school: a Snapshot Flat File of users with Learn's
header row, pipe-delimited and with a BOM; the same occurrence writing the same bytes; a person
whose data would break the format skipped and named; paths and keys refused when saved."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from belltower.errors import InvalidInput
from belltower_integration.jobs import blackboard_extract
from belltower_scheduler.catalog import validate_params
from tests.catalog.conftest import JobRunner
from tests.catalog.integrations_support import keep_current_sections

JOB = blackboard_extract.job_type.name
# The User object's headers as Learn's Snapshot Flat File documentation names them.
HEADER = ("external_person_key|data_source_key|user_id|firstname|lastname|middlename|email|"
          "student_id|institution_role|system_role|available_ind|row_status")  # fmt: skip
WHEN = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)


@pytest.fixture
async def small_school(run_job: JobRunner) -> None:
    await keep_current_sections(await run_job.db.pool(), 5)


def read(path: Path) -> list[dict[str, str]]:
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf"), "Learn needs the BOM to read UTF-8"
    lines = raw.decode("utf-8-sig").splitlines()
    assert lines[0] == HEADER
    names = lines[0].split("|")
    return [dict(zip(names, line.split("|"), strict=True)) for line in lines[1:]]


async def test_the_extract_holds_every_student_and_instructor_once(
    run_job: JobRunner, tmp_batch_folder: Path, small_school, sis_today
) -> None:
    ran = await run_job(JOB, {"data_source_key": "SONIS"}, occurrence_id="occ-1",
                        scheduled_for=datetime.combine(sis_today, WHEN.timetz()))  # fmt: skip
    assert ran.status == "succeeded", ran.error
    path = tmp_batch_folder / "blackboard" / f"users_{sis_today:%Y%m%d}060000.txt"
    rows = read(path)
    pool = await run_job.db.pool()
    students = {r["sis_id"] for r in await pool.fetch(
        "SELECT DISTINCT p.sis_id FROM sis.enrollments e JOIN sis.people p ON p.id = e.person_id"
        " WHERE e.status IN ('enrolled', 'audit', 'completed')")}  # fmt: skip
    faculty = {r["sis_id"] for r in await pool.fetch(
        "SELECT DISTINCT p.sis_id FROM sis.sections s JOIN sis.people p ON p.id = s.lead_faculty_id")}  # fmt: skip
    by_key = {r["external_person_key"]: r for r in rows}
    assert len(by_key) == len(rows) == len(students | faculty) > 0
    teacher = by_key[next(iter(faculty))]
    assert teacher["institution_role"] == "FACULTY" and teacher["student_id"] == ""
    student = by_key[next(iter(students - faculty))]
    person = await pool.fetchrow(
        "SELECT coalesce(login_id, sis_id) AS login, first_name, last_name FROM sis.people"
        " WHERE sis_id = $1", student["external_person_key"])  # fmt: skip
    assert (student["user_id"], student["firstname"], student["lastname"]) == tuple(person)
    assert student["institution_role"] == "STUDENT"
    assert student["student_id"] == student["external_person_key"]
    assert {r["data_source_key"] for r in rows} == {"SONIS"}
    assert {(r["system_role"], r["available_ind"], r["row_status"]) for r in rows} == {
        ("none", "Y", "ENABLED")
    }
    assert f"{len(rows)} users, 0 skipped" in ran.summary

    first = path.read_bytes()
    again = await run_job(JOB, {"data_source_key": "SONIS"}, occurrence_id="occ-1",
                          scheduled_for=datetime.combine(sis_today, WHEN.timetz()))  # fmt: skip
    assert again.status == "succeeded"
    assert path.read_bytes() == first
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


async def test_a_person_whose_name_holds_the_delimiter_is_skipped_and_named(
    run_job: JobRunner, tmp_batch_folder: Path, small_school, sis_today
) -> None:
    pool = await run_job.db.pool()
    sis_id = await pool.fetchval(
        "SELECT p.sis_id FROM sis.enrollments e JOIN sis.people p ON p.id = e.person_id"
        " WHERE e.status = 'enrolled' ORDER BY p.sis_id LIMIT 1"
    )
    await pool.execute("UPDATE sis.people SET last_name = 'Smith|Jones' WHERE sis_id = $1", sis_id)
    ran = await run_job(JOB, {}, scheduled_for=datetime.combine(sis_today, WHEN.timetz()))
    assert ran.status == "succeeded", ran.error
    assert f"person {sis_id}" in ran.text and "lastname holds the delimiter" in ran.text
    rows = read(tmp_batch_folder / "blackboard" / f"users_{sis_today:%Y%m%d}060000.txt")
    assert sis_id not in {r["external_person_key"] for r in rows}
    assert ", 1 skipped" in ran.summary


async def test_no_one_to_extract_fails_and_writes_nothing(
    run_job: JobRunner, tmp_batch_folder: Path, small_school
) -> None:
    ran = await run_job(JOB, {}, scheduled_for=datetime(2001, 1, 1, tzinfo=UTC))
    assert ran.status == "failed"
    assert ran.error is not None and "no students or instructors" in ran.error
    assert not (tmp_batch_folder / "blackboard").exists() or not any(
        (tmp_batch_folder / "blackboard").iterdir()
    )


@pytest.mark.parametrize(
    ("params", "field"),
    [({"folder": "../outside"}, "param.folder"),
     ({"data_source_key": "SIS|X"}, "param.data_source_key"),
     ({"file_prefix": "a/b"}, "param.file_prefix"),
     ({"institution_role_faculty": ""}, "param.institution_role_faculty")],
)  # fmt: skip
@pytest.mark.unit
def test_bad_parameters_are_refused_when_the_job_is_saved(params: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_params(blackboard_extract.job_type.info(), params)
    assert caught.value.field.startswith(field)
