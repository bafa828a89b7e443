"""OneRoster LMS Export against the demo school: a bulk set that passes the CSV Binding 1.2.1,
a delta holding exactly what changed, a repeated occurrence that changes nothing twice, and
paths fenced when the job is saved and when it runs."""

from __future__ import annotations

import csv
import io
import os
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest

from belltower.errors import InvalidInput
from belltower_dev.standins.sftp import SftpStandIn
from belltower_integration.jobs import oneroster_export, sftp_upload
from belltower_integration.oneroster import validate
from belltower_integration.oneroster.validate import InvalidExport
from belltower_scheduler.catalog import validate_params
from tests.catalog.conftest import JobRunner
from tests.catalog.integrations_support import Env, open_env

JOB = oneroster_export.job_type

# The headers as the binding's tables give them (CSV Binding 1.2.1, section 3), written out
# here rather than taken from the code under test.
HEADERS = {
    "orgs.csv": "sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId",
    "academicSessions.csv": "sourcedId,status,dateLastModified,title,type,startDate,endDate,"
    "parentSourcedId,schoolYear",
    "courses.csv": "sourcedId,status,dateLastModified,schoolYearSourcedId,title,courseCode,grades,"
    "orgSourcedId,subjects,subjectCodes",
    "classes.csv": "sourcedId,status,dateLastModified,title,grades,courseSourcedId,classCode,"
    "classType,location,schoolSourcedId,termSourcedIds,subjects,subjectCodes,periods",
    "users.csv": "sourcedId,status,dateLastModified,enabledUser,username,userIds,givenName,"
    "familyName,middleName,identifier,email,sms,phone,agentSourcedIds,grades,password,"
    "userMasterIdentifier,resourceSourcedIds,preferredGivenName,preferredMiddleName,"
    "preferredFamilyName,primaryOrgSourcedId,pronouns",
    "roles.csv": "sourcedId,status,dateLastModified,userSourcedId,roleType,role,beginDate,endDate,"
    "orgSourcedId,userProfileSourcedId",
    "enrollments.csv": "sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,"
    "userSourcedId,role,primary,beginDate,endDate",
    "demographics.csv": "sourcedId,status,dateLastModified,birthDate,sex,"
    "americanIndianOrAlaskaNative,asian,blackOrAfricanAmerican,"
    "nativeHawaiianOrOtherPacificIslander,white,demographicRaceTwoOrMoreRaces,"
    "hispanicOrLatinoEthnicity,countryOfBirthCode,stateOfBirthAbbreviation,cityOfBirth,"
    "publicSchoolResidenceStatus",
}


@pytest.fixture
async def env(sis_database: str, tmp_batch_folder: Path, mail_sink) -> AsyncIterator[Env]:
    e = await open_env(sis_database, tmp_batch_folder, mail_sink.port)
    yield e
    await e.db.close()


def at(day: date, hour: int) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=UTC)


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {name: z.read(name) for name in z.namelist()}


def rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode(), newline="")))


def manifest(data: bytes) -> dict[str, str]:
    return {r["propertyName"]: r["value"] for r in rows(data)}


ROSTER_SQL = """
SELECT count(DISTINCT e.id) AS enrollments, count(DISTINCT p.sis_id) AS students
  FROM sis.enrollments e JOIN sis.sections s ON s.id = e.section_id
  JOIN sis.terms t ON t.id = s.term_id JOIN sis.people p ON p.id = e.person_id
 WHERE t.code IN ('CURR', 'NEXT') AND e.status IN ('enrolled', 'audit', 'completed')
"""


async def test_the_bulk_set_of_the_demo_school_passes_the_binding(
    env: Env, tmp_batch_folder: Path, sis_today: date
) -> None:
    when = at(sis_today, 6)
    run = await env.run(JOB, {"demographics": True, "upcoming_days": 100}, scheduled_for=when)
    stamp = when.strftime("%Y%m%d%H%M%S")
    path = tmp_batch_folder / "oneroster" / f"oneroster_bulk_{stamp}.zip"
    files = members(path)
    assert sorted(files) == sorted(["manifest.csv", *HEADERS])
    assert validate.problems_in(files) == []
    for name, header in HEADERS.items():
        assert files[name].decode().split("\r\n", 1)[0] == header, name
    m = manifest(files["manifest.csv"])
    assert m["oneroster.version"] == "1.2" and m["manifest.version"] == "1.0"
    assert {k: v for k, v in m.items() if v == "bulk"} == {
        f"file.{n.removesuffix('.csv')}": "bulk" for n in HEADERS
    }
    assert m["file.lineItems"] == "absent"

    expected = await env.fetchrow(ROSTER_SQL)
    faculty = await env.fetchval(
        "SELECT count(DISTINCT s.lead_faculty_id) FROM sis.sections s JOIN sis.terms t "
        "ON t.id = s.term_id WHERE t.code IN ('CURR', 'NEXT')"
    )
    sections = await env.fetchval(
        "SELECT count(*) FROM sis.sections s JOIN sis.terms t ON t.id = s.term_id "
        "WHERE t.code IN ('CURR', 'NEXT')"
    )
    enrollments = rows(files["enrollments.csv"])
    assert sum(r["role"] == "student" for r in enrollments) == expected["enrollments"] > 1000
    assert sum(r["role"] == "teacher" and r["primary"] == "true" for r in enrollments) == sections
    users = rows(files["users.csv"])
    assert len(users) == expected["students"] + faculty
    assert all(r["status"] == "" and r["dateLastModified"] == "" for r in users)
    sessions = {r["sourcedId"]: r["type"] for r in rows(files["academicSessions.csv"])}
    assert sessions == {"term-CURR": "term", "term-NEXT": "term"}
    assert len(rows(files["classes.csv"])) == sections
    roles = {(r["role"], r["roleType"]) for r in rows(files["roles.csv"])}
    assert roles == {("student", "primary"), ("teacher", "primary")}
    orgs = {r["sourcedId"]: r["type"] for r in rows(files["orgs.csv"])}
    assert orgs["institution"] == "district" and orgs["campus-MAIN"] == "school"

    person = await env.fetchrow(
        "SELECT p.sis_id, p.first_name, p.last_name, p.birth_date, m.address FROM sis.people p "
        "JOIN sis.emails m ON m.person_id = p.id AND m.is_primary WHERE p.sis_id = $1",
        enrollments[0]["userSourcedId"],
    )
    mine = next(r for r in users if r["sourcedId"] == person["sis_id"])
    assert (mine["givenName"], mine["familyName"], mine["email"], mine["enabledUser"]) == (
        person["first_name"], person["last_name"], person["address"], "true",
    )  # fmt: skip
    born = next(r for r in rows(files["demographics.csv"]) if r["sourcedId"] == person["sis_id"])
    assert born["birthDate"] == (person["birth_date"].isoformat() if person["birth_date"] else "")
    assert run.output.summary.startswith(f"OneRoster bulk set oneroster/{path.name}: ")
    assert "users.csv: " in run.text
    assert await env.fetchval("SELECT count(*) FROM sis.oneroster_snapshots") == 1


async def student_with_two_enrollments(env: Env) -> tuple[str, int]:
    row = await env.fetchrow(
        """SELECT p.sis_id, min(e.id) AS enrollment_id FROM sis.enrollments e
             JOIN sis.people p ON p.id = e.person_id JOIN sis.sections s ON s.id = e.section_id
             JOIN sis.terms t ON t.id = s.term_id
            WHERE t.code = 'CURR' AND e.status = 'enrolled' AND p.status = 'student'
            GROUP BY p.sis_id HAVING count(*) >= 2 ORDER BY p.sis_id LIMIT 1"""
    )
    return row["sis_id"], row["enrollment_id"]


async def enrollment_sourced_id(env: Env, enrollment_id: int) -> str:
    r = await env.fetchrow(
        """SELECT t.code AS term, c.code AS course, s.section_code, p.sis_id
             FROM sis.enrollments e JOIN sis.sections s ON s.id = e.section_id
             JOIN sis.courses c ON c.id = s.course_id JOIN sis.terms t ON t.id = s.term_id
             JOIN sis.people p ON p.id = e.person_id WHERE e.id = $1""",
        enrollment_id,
    )
    return f"class-{r['term']}-{r['course']}-{r['section_code']}-{r['sis_id']}-student"


async def test_a_delta_after_a_bulk_holds_exactly_the_changed_student_and_the_removed_enrollment(
    env: Env, tmp_batch_folder: Path, sis_today: date
) -> None:
    first = await env.run(JOB, {"mode": "delta"}, scheduled_for=at(sis_today, 6))
    assert "no earlier run of this job to compare with: sent as a bulk set" in first.text
    bulk = members(next((tmp_batch_folder / "oneroster").glob("oneroster_bulk_*.zip")))
    sis_id, enrollment_id = await student_with_two_enrollments(env)
    gone = await enrollment_sourced_id(env, enrollment_id)
    assert gone in {r["sourcedId"] for r in rows(bulk["enrollments.csv"])}
    await env.execute("UPDATE sis.people SET first_name = 'Renamed' WHERE sis_id = $1", sis_id)
    await env.execute("DELETE FROM sis.enrollments WHERE id = $1", enrollment_id)

    when = at(sis_today, 7)
    run = await env.run(JOB, {"mode": "delta"}, scheduled_for=when)
    path = tmp_batch_folder / "oneroster" / f"oneroster_delta_{when:%Y%m%d%H%M%S}.zip"
    files = members(path)
    assert sorted(files) == ["enrollments.csv", "manifest.csv", "users.csv"]
    m = manifest(files["manifest.csv"])
    assert m["file.users"] == m["file.enrollments"] == "delta"
    assert m["file.orgs"] == m["file.classes"] == m["file.roles"] == "absent"
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    [user] = rows(files["users.csv"])
    assert (user["sourcedId"], user["status"], user["givenName"], user["dateLastModified"]) == (
        sis_id, "active", "Renamed", stamp,
    )  # fmt: skip
    [enrollment] = rows(files["enrollments.csv"])
    assert (enrollment["sourcedId"], enrollment["status"], enrollment["dateLastModified"]) == (
        gone, "tobedeleted", stamp,
    )  # fmt: skip
    assert enrollment["userSourcedId"] == sis_id and enrollment["role"] == "student"
    known = {n.removesuffix(".csv"): {r["sourcedId"] for r in rows(b)} for n, b in bulk.items() if n != "manifest.csv"}  # fmt: skip
    assert validate.problems_in(files, known) == []
    assert "users.csv: 1 new or changed, 0 tobedeleted" in run.text
    assert "enrollments.csv: 0 new or changed, 1 tobedeleted" in run.text


async def snapshot_state(env: Env) -> list[tuple]:
    snapshots = await env.fetch(
        "SELECT job_id, occurrence_id, taken_for, mode FROM sis.oneroster_snapshots ORDER BY 2"
    )
    records = await env.fetch(
        "SELECT occurrence_id, file, sourced_id, record, modified_at FROM sis.oneroster_records "
        "ORDER BY 1, 2, 3"
    )
    return [tuple(r.values()) for r in snapshots] + [tuple(r.values()) for r in records]


async def test_a_repeated_occurrence_writes_the_same_zip_and_leaves_the_same_state(
    env: Env, run_job: JobRunner, tmp_batch_folder: Path, sis_today: date
) -> None:
    """Run as the worker runs it (one job id, the occurrence id given), as a redelivery would."""
    first = await run_job(
        JOB.name, {"mode": "delta"}, scheduled_for=at(sis_today, 6), occurrence_id="occ-a"
    )
    assert first.status == "succeeded", first.error
    sis_id, enrollment_id = await student_with_two_enrollments(env)
    await env.execute("UPDATE sis.people SET last_name = 'Changed' WHERE sis_id = $1", sis_id)
    await env.execute("UPDATE sis.enrollments SET status = 'dropped' WHERE id = $1", enrollment_id)
    when = at(sis_today, 7)
    await run_job(JOB.name, {"mode": "delta"}, scheduled_for=when, occurrence_id="occ-b")
    folder = tmp_batch_folder / "oneroster"
    path = folder / f"oneroster_delta_{when:%Y%m%d%H%M%S}.zip"
    written, state = path.read_bytes(), await snapshot_state(env)
    assert len(rows(members(path)["enrollments.csv"])) == 1  # the drop, as tobedeleted

    again = await run_job(JOB.name, {"mode": "delta"}, scheduled_for=when, occurrence_id="occ-b")
    assert again.status == "succeeded", again.error
    assert path.read_bytes() == written
    assert await snapshot_state(env) == state
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"oneroster_bulk_{at(sis_today, 6):%Y%m%d%H%M%S}.zip", path.name]
    )
    assert "users.csv: 1 new or changed" in again.text

    quiet = await run_job(
        JOB.name, {"mode": "delta"}, scheduled_for=at(sis_today, 8), occurrence_id="occ-c"
    )
    assert quiet.summary == "OneRoster delta: nothing changed since the last run; no file written"
    assert len(list(folder.iterdir())) == 2
    kept = await env.fetch("SELECT occurrence_id FROM sis.oneroster_snapshots ORDER BY 1")
    assert [r["occurrence_id"] for r in kept] == ["occ-b", "occ-c"]


async def test_a_set_that_fails_the_binding_fails_the_run_and_writes_nothing(
    env: Env, tmp_batch_folder: Path, sis_today: date
) -> None:
    sis_id, _ = await student_with_two_enrollments(env)
    await env.execute("UPDATE sis.people SET first_name = '' WHERE sis_id = $1", sis_id)
    run = await env.run(JOB, {}, scheduled_for=at(sis_today, 6), raises=InvalidExport)
    assert isinstance(run.error, InvalidExport)
    [problem] = run.error.problems
    assert (problem.file, problem.column) == ("users.csv", "givenName") and problem.line > 1
    assert f"users.csv, line {problem.line}, column givenName: is required and empty" in str(
        run.error
    )
    assert not (tmp_batch_folder / "oneroster").exists()
    assert await env.fetchval("SELECT count(*) FROM sis.oneroster_snapshots") == 0


@pytest.mark.parametrize("folder", ["../outside", "/etc", "~root", "a/../../b", "x\\y"])
def test_a_folder_outside_the_batch_folder_is_refused_when_the_job_is_saved(folder: str) -> None:
    with pytest.raises(InvalidInput) as err:
        validate_params(JOB.info(), {"folder": folder})
    assert err.value.field == "param.folder"
    assert validate_params(JOB.info(), {"folder": "exports/oneroster"}) == {
        "folder": "exports/oneroster"
    }


@pytest.mark.parametrize(
    ("params", "field"),
    [({"mode": "full"}, "param.mode"), ({"file_prefix": "../x"}, "param.file_prefix"),
     ({"institution_id": "a b"}, "param.institution_id"), ({"upcoming_days": -1}, "param.upcoming_days")],
)  # fmt: skip
def test_other_bad_parameters_are_refused_when_the_job_is_saved(params: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        validate_params(JOB.info(), params)
    assert err.value.field == field


async def test_a_folder_that_became_a_link_out_of_the_batch_folder_is_refused_when_it_runs(
    env: Env, tmp_batch_folder: Path, tmp_path: Path, sis_today: date
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, tmp_batch_folder / "oneroster")
    run = await env.run(JOB, {}, scheduled_for=at(sis_today, 6), raises=InvalidInput)
    assert isinstance(run.error, InvalidInput) and run.error.field == "param.folder"
    assert list(outside.iterdir()) == []


async def test_unknown_term_codes_are_named(env: Env, sis_today: date) -> None:
    run = await env.run(
        JOB, {"terms": ["CURR", "NOPE"]}, scheduled_for=at(sis_today, 6), raises=InvalidInput
    )
    assert isinstance(run.error, InvalidInput) and "NOPE" in run.error.message


async def test_chosen_terms_only(env: Env, tmp_batch_folder: Path, sis_today: date) -> None:
    when = at(sis_today, 6) + timedelta(minutes=5)
    await env.run(JOB, {"terms": ["PREV"], "folder": "lms/or"}, scheduled_for=when)
    files = members(tmp_batch_folder / "lms" / "or" / f"oneroster_bulk_{when:%Y%m%d%H%M%S}.zip")
    assert {r["sourcedId"] for r in rows(files["academicSessions.csv"])} == {"term-PREV"}
    assert all(r["termSourcedIds"] == "term-PREV" for r in rows(files["classes.csv"]))
    assert "demographics.csv" not in files


async def test_guardians_of_enrolled_students_are_sent_as_their_agents(
    env: Env, tmp_batch_folder: Path, sis_today: date
) -> None:
    when = at(sis_today, 6)
    await env.run(JOB, {"guardians": True}, scheduled_for=when)
    files = members(tmp_batch_folder / "oneroster" / f"oneroster_bulk_{when:%Y%m%d%H%M%S}.zip")
    assert validate.problems_in(files) == []
    links = await env.fetch(
        """SELECT DISTINCT p.sis_id AS student, g.sis_id AS guardian, l.relationship
             FROM sis.student_guardians l JOIN sis.guardians g ON g.id = l.guardian_id
             JOIN sis.people p ON p.id = l.student_id JOIN sis.enrollments e ON e.person_id = p.id
             JOIN sis.sections s ON s.id = e.section_id JOIN sis.terms t ON t.id = s.term_id
            WHERE t.code = 'CURR' AND e.status IN ('enrolled', 'audit', 'completed')"""
    )
    assert len(links) > 10
    users = {r["sourcedId"]: r for r in rows(files["users.csv"])}
    roles = {(r["userSourcedId"], r["role"]) for r in rows(files["roles.csv"])}
    for link in links:
        assert link["guardian"] in users[link["student"]]["agentSourcedIds"].split(",")
        assert link["student"] in users[link["guardian"]]["agentSourcedIds"].split(",")
        assert (link["guardian"], link["relationship"]) in roles
    guardians = {r["sourcedId"] for r in rows(files["users.csv"]) if r["sourcedId"].startswith("G")}
    assert guardians == {link["guardian"] for link in links}
    assert all(r["userSourcedId"] not in guardians for r in rows(files["enrollments.csv"]))

    # A guardian's new e-mail address is a one-row delta.
    one = sorted(guardians)[0]
    await env.execute("UPDATE sis.guardians SET email = 'new@example.net' WHERE sis_id = $1", one)
    later = at(sis_today, 7)
    await env.run(JOB, {"guardians": True, "mode": "delta"}, scheduled_for=later)
    delta = members(tmp_batch_folder / "oneroster" / f"oneroster_delta_{later:%Y%m%d%H%M%S}.zip")
    assert sorted(delta) == ["manifest.csv", "users.csv"]
    [row] = rows(delta["users.csv"])
    assert (row["sourcedId"], row["status"], row["email"]) == (one, "active", "new@example.net")


async def test_the_sftp_upload_job_after_it_sends_the_zip_whole(
    env: Env, tmp_batch_folder: Path, tmp_path: Path, sis_today: date, monkeypatch
) -> None:
    """What `--after` chains: the export writes the zip, SFTP Upload sends what matches
    oneroster/*.zip and moves it to sent/, so the next upload sends only the next zip."""
    when = at(sis_today, 6)
    await env.run(JOB, {}, scheduled_for=when)
    zipped = tmp_batch_folder / "oneroster" / f"oneroster_bulk_{when:%Y%m%d%H%M%S}.zip"
    data = zipped.read_bytes()
    remote = tmp_path / "sftp-root"
    remote.mkdir()
    async with SftpStandIn(remote) as server:
        monkeypatch.setenv("BELLTOWER_SECRET_SFTP_KNOWN_HOSTS", server.known_hosts)
        monkeypatch.setenv("BELLTOWER_SECRET_SFTP_PASSWORD", server.password)
        sent = await env.run(sftp_upload.job_type, {
            "host": "127.0.0.1", "port": server.port, "username": server.username,
            "password_secret": "sftp-password", "pattern": "oneroster/*.zip", "remote_dir": "in",
        })  # fmt: skip
    assert (remote / "in" / zipped.name).read_bytes() == data
    assert sent.output.summary == "sent 1 files to 127.0.0.1"
    assert not zipped.exists() and len(list((tmp_batch_folder / "sent").iterdir())) == 1
