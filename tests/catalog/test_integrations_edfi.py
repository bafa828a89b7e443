"""Ed-Fi Data Sync against the demo school and a stand-in built to the ODS/API v7 contract: a
first sync in the server's dependency order with the result table, a repeat of the occurrence
that sends nothing, a refused student whose dependants fail with 409 and are all retried by
the next run, an order the server publishes followed as published, and bad parameters refused
when the job is saved."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from belltower.errors import ConfigurationError, InvalidInput, Unavailable
from belltower_dev.standins.edfi import EdFiStandIn
from belltower_integration import edfi_records
from belltower_integration.edfi import EdFiClient
from belltower_integration.jobs import edfi_sync
from belltower_scheduler.catalog import validate_params
from tests.catalog.conftest import JobRunner
from tests.catalog.integrations_support import keep_current_sections

NAME = edfi_sync.job_type.name
SCHOOL = 255901001


@pytest.fixture
def ods(monkeypatch: pytest.MonkeyPatch) -> Iterator[EdFiStandIn]:
    with EdFiStandIn(school_ids=(SCHOOL,), expire_after=40, throttle_first=1) as server:
        monkeypatch.setenv("BELLTOWER_SECRET_EDFI_KEY", server.key)
        monkeypatch.setenv("BELLTOWER_SECRET_EDFI_SECRET", server.secret)
        yield server


@pytest.fixture
async def small_school(run_job: JobRunner) -> None:
    pool = await run_job.db.pool()
    await keep_current_sections(pool, 3)
    # two absences a day-attendance calculation would have made, for the school-level events
    await pool.execute(
        "INSERT INTO sis.attendance_days (person_id, on_date, periods, periods_present, periods_tardy,"
        " periods_absent, periods_excused, status)"
        " SELECT e.person_id, s.starts_on + 1, 1, 0, 0, 1, 0, 'absent' FROM sis.enrollments e"
        " JOIN sis.sections s ON s.id = e.section_id WHERE e.status = 'enrolled' ORDER BY e.id LIMIT 2"
        " ON CONFLICT DO NOTHING"
    )
    # a grade on one current enrolment, so grades have something to carry
    await pool.execute(
        "INSERT INTO sis.grades (enrollment_id, grade) SELECT min(id), 'B+' FROM sis.enrollments"
        " WHERE status = 'enrolled' ON CONFLICT (enrollment_id) DO UPDATE SET grade = 'B+'"
    )


def _params(ods: EdFiStandIn, **more: Any) -> dict[str, Any]:
    return {"base_url": ods.url, "school_id": SCHOOL, **more}


def _table(text: str) -> dict[str, list[int]]:
    """The result table of a run's text: resource -> [sent, created, updated, failed, unchanged, retried]."""
    rows = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 8 and parts[0].isdigit() and parts[1] in edfi_records.RESOURCES:
            rows[parts[1]] = [int(p) for p in parts[2:]]
    return rows


def _in_order(posted: list[str], orders: dict[str, int]) -> bool:
    ranks = [orders[r] for r in posted]
    return ranks == sorted(ranks)


async def test_a_first_sync_sends_every_resource_in_the_servers_order_and_a_repeat_sends_nothing(
    run_job: JobRunner, ods: EdFiStandIn, small_school: None
) -> None:
    first = await run_job(NAME, _params(ods), occurrence_id="occ-1")
    assert first.status == "succeeded", first.error
    table = _table(first.text)
    pool = await run_job.db.pool()
    students = await pool.fetchval(
        "SELECT count(DISTINCT person_id) FROM sis.enrollments e JOIN sis.people p ON p.id = e.person_id"
        " WHERE e.status IN ('enrolled', 'completed', 'audit', 'withdrawn') AND p.birth_date IS NOT NULL"
    )
    assert len(ods.records["students"]) == students == table["students"][1]
    assert len(ods.records["sections"]) == 3 == table["sections"][1]
    for (
        resource
    ) in edfi_records.RESOURCES:  # everything the ODS holds came in this run, and was created
        assert table[resource][0] == table[resource][1] == len(ods.records[resource]), resource
    assert ods.records["grades"] and ods.records["studentSchoolAttendanceEvents"]
    assert ods.records["studentSectionAttendanceEvents"]
    assert _in_order(ods.posted, ods.dependency_orders)
    # one token call throttled (429) and tried again, one more token once the first expired
    assert ods.requests.count(("POST", "/oauth/token")) == 3 and ods.expire_after == 0
    assert ods.secret not in first.text and "<table>" in (first.html or "")
    grades = await pool.fetchval(
        "SELECT count(*) FROM sis.grades g JOIN sis.enrollments e ON e.id = g.enrollment_id"
        " JOIN sis.people p ON p.id = e.person_id WHERE g.grade <> '' AND p.birth_date IS NOT NULL"
        " AND e.status IN ('enrolled', 'completed', 'audit', 'withdrawn')"
    )
    assert len(ods.records["grades"]) == grades
    assert "B+" in {g["letterGradeEarned"] for g in ods.records["grades"].values()}
    assert {g["gradeTypeDescriptor"] for g in ods.records["grades"].values()} == {
        "uri://ed-fi.org/GradeTypeDescriptor#Final"
    }

    calls = len(ods.requests)
    again = await run_job(NAME, _params(ods), occurrence_id="occ-1")
    assert again.status == "succeeded", again.error
    assert [p for m, p in ods.requests[calls:] if m == "POST" and p != "/oauth/token"] == []
    assert all(row[0] == 0 and row[4] > 0 for r, row in _table(again.text).items() if table[r][0])

    person = await pool.fetchval(
        "SELECT min(person_id) FROM sis.enrollments WHERE status = 'enrolled'"
    )
    await pool.execute("UPDATE sis.people SET last_name = 'Renamed' WHERE id = $1", person)
    changed = await run_job(NAME, _params(ods), occurrence_id="occ-2")
    assert _table(changed.text)["students"][:3] == [1, 0, 1]  # sent once, an update by natural key
    assert len(ods.records["students"]) == students


async def test_a_refused_student_fails_with_its_dependants_and_the_next_run_retries_them(
    run_job: JobRunner, ods: EdFiStandIn, small_school: None
) -> None:
    pool = await run_job.db.pool()
    sis_id = await pool.fetchval(
        "SELECT p.sis_id FROM sis.enrollments e JOIN sis.people p ON p.id = e.person_id"
        " WHERE e.status = 'enrolled' AND p.birth_date IS NOT NULL ORDER BY e.id LIMIT 1"
    )
    ods.refuse = lambda resource, body: (
        "studentUniqueId is on the state's hold list"
        if body.get("studentUniqueId") == sis_id
        else None
    )
    failed = await run_job(NAME, _params(ods), occurrence_id="occ-1")
    assert failed.status == "failed" and "refused" in (failed.error or "")
    assert "studentUniqueId is on the state's hold list" in failed.text
    assert "409: The referenced Student item(s) do not exist." in failed.text
    retries = await pool.fetch(
        "SELECT resource, last_status FROM sis.edfi_retries ORDER BY resource"
    )
    kinds = {r["resource"]: r["last_status"] for r in retries}
    assert kinds["students"] == 400 and kinds["studentSchoolAssociations"] == 409
    assert kinds["studentSectionAssociations"] == 409

    ods.refuse = None
    ods.posted.clear()
    fixed = await run_job(NAME, _params(ods), occurrence_id="occ-2")
    assert fixed.status == "succeeded", (fixed.error, fixed.text)
    table = _table(fixed.text)
    assert table["students"][:4] == [1, 1, 0, 0] and table["students"][5] == 1
    assert (
        table["studentSchoolAssociations"][5] == 1 and table["studentSectionAssociations"][5] >= 1
    )
    assert await pool.fetchval("SELECT count(*) FROM sis.edfi_retries") == 0
    assert _in_order(ods.posted, ods.dependency_orders)
    assert (sis_id,) in ods.records["students"]


async def test_the_order_is_the_one_the_server_publishes(
    run_job: JobRunner, monkeypatch: pytest.MonkeyPatch, small_school: None
) -> None:
    # a server that lists grading periods last and has no school attendance events at all
    orders = {"gradingPeriods": 50}
    with EdFiStandIn(school_ids=(SCHOOL,), orders=orders) as server:
        del server.dependency_orders["studentSchoolAttendanceEvents"]
        monkeypatch.setenv("BELLTOWER_SECRET_EDFI_KEY", server.key)
        monkeypatch.setenv("BELLTOWER_SECRET_EDFI_SECRET", server.secret)
        dry = await run_job(NAME, _params(server, dry_run=True), occurrence_id="occ-dry")
        assert dry.status == "succeeded" and "would send" in dry.summary
        assert not server.posted
        ran = await run_job(NAME, _params(server), occurrence_id="occ-1")
        posted = list(server.posted)
    # grades refer to grading periods: sent before them, as published, the server refuses them
    assert ran.status == "failed"
    assert "409: The referenced GradingPeriod item(s) do not exist." in ran.text
    assert posted[-1] == "gradingPeriods" and "grades" not in posted
    assert "no /ed-fi/studentSchoolAttendanceEvents it can create" in ran.text
    assert _in_order(posted, server.dependency_orders)


async def test_a_server_that_stops_answering_keeps_what_it_took_and_the_next_run_sends_the_rest(
    run_job: JobRunner, ods: EdFiStandIn, small_school: None
) -> None:
    ods.fail_from = 60  # part-way through the students: every call after it is a 503
    stopped = await run_job(NAME, _params(ods), occurrence_id="occ-1")
    assert stopped.status == "failed" and "answered 503" in (stopped.error or "")
    assert "the server stopped answering during students" in stopped.summary
    taken = len(ods.records["students"])
    assert 0 < taken < 80
    pool = await run_job.db.pool()
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM sis.edfi_sync_records WHERE resource = 'students'"
        )
        == taken
    )

    ods.fail_from = None
    resumed = await run_job(NAME, _params(ods), occurrence_id="occ-1")
    assert resumed.status == "succeeded", resumed.error
    students = _table(resumed.text)["students"]
    assert (
        students[1] == len(ods.records["students"]) - taken and students[4] == taken
    )  # created, unchanged


@pytest.mark.unit
def test_the_order_is_by_the_servers_rank_then_name_and_unknown_resources_are_named() -> None:
    ordered, missing = edfi_records.order(
        [
            ("/ed-fi/students", 3),
            ("/ed-fi/sessions", 2),
            ("/ed-fi/courses", 2),
            ("/tpdm/candidates", 1),
        ],
        ["students", "courses", "sessions", "grades"],
    )
    assert ordered == ["courses", "sessions", "students"] and missing == ["grades"]
    assert edfi_records.school_year(date(2025, 8, 20)) == 2026
    assert edfi_records.school_year(date(2026, 1, 10)) == 2026
    assert (
        edfi_records.natural_key("students", {"studentUniqueId": "S1", "firstName": "A"})
        == '["S1"]'
    )


async def test_the_client_gives_up_on_5xx_and_names_refused_credentials() -> None:
    with EdFiStandIn(fail_first=9) as server:
        async with EdFiClient(
            server.url, server.key, server.secret, attempts=2, first_delay_s=0.01
        ) as edfi:
            with pytest.raises(
                Unavailable, match=r"Ed-Fi ODS/API answered 503 to POST /oauth/token 2 times"
            ):
                await edfi.dependencies()
    with EdFiStandIn() as server:
        async with EdFiClient(
            server.url, server.key, "wrong", secret_names="the secrets 'k' and 's'"
        ) as edfi:
            with pytest.raises(ConfigurationError, match=r"Invalid client.*'k' and 's'"):
                await edfi.dependencies()


@pytest.mark.parametrize(
    ("params", "field"),
    [({"base_url": "http://169.254.169.254/", "school_id": 1}, "param.base_url"),
     ({"base_url": "https://ods.example.org/api", "school_id": 0}, "param.school_id"),
     ({"base_url": "https://ods.example.org/api", "school_id": 1, "key_secret": "../k"}, "param.key_secret"),
     ({"base_url": "https://ods.example.org/api", "school_id": 1, "namespace": "http://x"}, "param.namespace"),
     ({"base_url": "https://ods.example.org/api", "school_id": 1, "term_descriptor": "a\nb"}, "param.term_descriptor")],
)  # fmt: skip
@pytest.mark.unit
def test_bad_parameters_are_refused_when_the_job_is_saved(params: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_params(edfi_sync.job_type.info(), params)
    assert caught.value.field.startswith(field)
