"""Moodle LMS Export through Moodle's web services, against the demo school and a stand-in
built to Moodle's REST contract: a first sync, a repeat that sends nothing, a change sent as
updates and unenrolments, retries, a record Moodle refuses, and the safety hold."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from belltower.errors import ConfigurationError, InvalidInput, Unavailable
from belltower_dev.standins.moodle import MoodleStandIn, parse
from belltower_integration.jobs import moodle_export
from belltower_integration.moodle import MoodleClient, MoodleError, form
from belltower_scheduler.catalog import validate_params
from tests.catalog.conftest import JobRunner
from tests.catalog.integrations_support import keep_current_sections

JOB = moodle_export.job_type.name

CURRENT_SQL = """
SELECT count(DISTINCT (c.code, t.code)) AS courses,
       count(DISTINCT p.sis_id) FILTER (WHERE e.status IN ('enrolled', 'audit', 'completed')) AS students
  FROM sis.sections s JOIN sis.terms t ON t.id = s.term_id JOIN sis.courses c ON c.id = s.course_id
  LEFT JOIN sis.enrollments e ON e.section_id = s.id LEFT JOIN sis.people p ON p.id = e.person_id
 WHERE t.ends_on >= $1 AND t.starts_on <= $1 + 30
"""

# A student's only section of one course, the student being in another course too: dropping it
# ends that enrolment and keeps the student.
ONE_OF_TWO_SQL = """
SELECT min(e.id) AS id FROM sis.enrollments e JOIN sis.sections s ON s.id = e.section_id
 WHERE e.status = 'enrolled' AND e.person_id IN (
       SELECT e2.person_id FROM sis.enrollments e2 JOIN sis.sections s2 ON s2.id = e2.section_id
        WHERE e2.status = 'enrolled' GROUP BY e2.person_id HAVING count(DISTINCT s2.course_id) >= 2)
 GROUP BY e.person_id, s.course_id HAVING count(*) = 1 ORDER BY 1 LIMIT 1
"""


@pytest.fixture
def moodle(monkeypatch: pytest.MonkeyPatch) -> Iterator[MoodleStandIn]:
    with MoodleStandIn() as server:
        monkeypatch.setenv("BELLTOWER_SECRET_MOODLE_TOKEN", server.token)
        yield server


@pytest.fixture
async def small_school(run_job: JobRunner) -> None:
    await keep_current_sections(await run_job.db.pool(), 12)


@pytest.mark.unit
def test_arguments_are_form_encoded_the_way_moodle_reads_them() -> None:
    pairs = form({"users": [{"username": "ada", "createpassword": True}], "field": "idnumber"})
    assert pairs == [
        ("users[0][username]", "ada"),
        ("users[0][createpassword]", "1"),
        ("field", "idnumber"),
    ]
    assert parse(pairs) == {
        "users": [{"username": "ada", "createpassword": "1"}],
        "field": "idnumber",
    }


async def test_a_first_sync_makes_users_courses_and_enrolments_and_a_repeat_sends_nothing(
    run_job: JobRunner, moodle: MoodleStandIn, sis_today
) -> None:
    params = {"base_url": moodle.url}
    first = await run_job(JOB, params, occurrence_id="occ-1")
    assert first.status == "succeeded", first.error
    pool = await run_job.db.pool()
    expected = await pool.fetchrow(CURRENT_SQL, sis_today)
    assert len(moodle.courses) == expected["courses"] > 0
    students = {k[1] for k in moodle.enrolments if k[2] == 5}
    teachers = {k[1] for k in moodle.enrolments if k[2] == 3}
    assert len(students) == expected["students"] > 0 and teachers
    assert all(u["auth"] == "manual" and u["createpassword"] == "1" for u in moodle.users.values())
    assert all(u["username"] == u["username"].lower() for u in moodle.users.values())
    assert moodle.token not in first.text
    calls = len(moodle.calls)

    again = await run_job(JOB, params, occurrence_id="occ-1")
    assert again.status == "succeeded", again.error
    assert again.summary == "Moodle LMS export: nothing changed since the last run; nothing sent"
    assert len(moodle.calls) == calls


async def test_a_change_is_sent_as_an_update_and_an_unenrolment_and_too_large_a_one_is_held(
    run_job: JobRunner, moodle: MoodleStandIn, small_school
) -> None:
    params = {"base_url": moodle.url}
    assert (await run_job(JOB, params, occurrence_id="occ-1")).status == "succeeded"
    pool = await run_job.db.pool()
    teacher = await pool.fetchval(
        "SELECT p.sis_id FROM sis.sections s JOIN sis.people p ON p.id = s.lead_faculty_id LIMIT 1"
    )
    await pool.execute("UPDATE sis.people SET last_name = 'Renamed' WHERE sis_id = $1", teacher)
    dropped = await pool.fetchval(ONE_OF_TWO_SQL)
    await pool.execute("UPDATE sis.enrollments SET status = 'dropped' WHERE id = $1", dropped)
    users, enrolled = len(moodle.users), len(moodle.enrolments)
    moodle.calls.clear()
    second = await run_job(JOB, params, occurrence_id="occ-2")
    assert second.status == "succeeded", second.error
    assert moodle.user_by_idnumber(teacher)["lastname"] == "Renamed"
    assert len(moodle.users) == users
    assert (
        "core_user_create_users" not in moodle.calls
        and "core_course_create_courses" not in moodle.calls
    )
    assert moodle.calls.count("enrol_manual_unenrol_users") == 1, second.text
    assert len(moodle.enrolments) == enrolled - 1
    assert "users: 0 new, 1 changed, 0 gone" in second.text

    await pool.execute("UPDATE sis.enrollments SET status = 'withdrawn' WHERE id % 3 = 0")
    enrolled_now = set(moodle.enrolments)
    moodle.calls.clear()
    held = await run_job(JOB, params, occurrence_id="occ-3")
    assert held.status == "held", held.error
    assert "enrolment: " in (held.error or "") and "would be deleted" in (held.error or "")
    assert moodle.calls == [] and moodle.enrolments == enrolled_now


async def test_a_username_moodle_has_for_someone_else_fails_alone_and_is_retried_next_run(
    run_job: JobRunner, moodle: MoodleStandIn, sis_today, small_school
) -> None:
    pool = await run_job.db.pool()
    login = await pool.fetchval(
        "SELECT lower(coalesce(p.login_id, p.sis_id)) FROM sis.enrollments e JOIN sis.people p ON p.id = e.person_id "
        "JOIN sis.sections s ON s.id = e.section_id JOIN sis.terms t ON t.id = s.term_id "
        "WHERE t.ends_on >= $1 AND t.starts_on <= $1 + 30 AND e.status = 'enrolled' ORDER BY p.sis_id LIMIT 1",
        sis_today,
    )  # fmt: skip
    moodle.users[1] = {"id": 1, "username": login, "firstname": "Other", "lastname": "Person",
                       "email": "o@example.edu", "idnumber": "NOT-OURS", "auth": "manual"}  # fmt: skip
    params = {"base_url": moodle.url}
    failed = await run_job(JOB, params, occurrence_id="occ-1")
    assert failed.status == "failed"
    assert "Moodle refused 1 record(s)" in (failed.error or "")
    assert f"Username already exists: {login}" in failed.text
    assert "its user or course is not in Moodle yet" in failed.text
    made = len(moodle.users)

    del moodle.users[1]  # the Moodle admin renames the other account
    moodle.calls.clear()
    fixed = await run_job(JOB, params, occurrence_id="occ-2")
    assert fixed.status == "succeeded", fixed.error
    assert len(moodle.users) == made  # only the missing one was made (the other one went away)
    assert moodle.counts["core_user_create_users"] >= 1
    assert "users: 1 new, 0 changed, 0 gone" in fixed.text


async def test_the_client_rides_out_5xx_and_a_timeout_then_gives_up_clearly() -> None:
    with MoodleStandIn(fail_first=2) as server:
        async with MoodleClient(server.url, server.token, first_delay_s=0.01) as client:
            assert await client.users_by_field("idnumber", ["S1"]) == []
    with MoodleStandIn(stall_first=1, stall_s=0.6) as server:
        async with MoodleClient(
            server.url, server.token, timeout_s=0.2, first_delay_s=0.01
        ) as client:
            assert await client.users_by_field("idnumber", ["S1"]) == []
    with MoodleStandIn(fail_first=9) as server:
        async with MoodleClient(server.url, server.token, attempts=2, first_delay_s=0.01) as client:
            with pytest.raises(
                Unavailable, match="Moodle answered 503 to core_user_get_users_by_field 2 times"
            ):
                await client.users_by_field("idnumber", ["S1"])


async def test_moodle_refusals_in_its_error_json_are_named() -> None:
    with MoodleStandIn(functions=("core_user_get_users_by_field",)) as server:
        async with MoodleClient(
            server.url, "expired", token_name="the secret 'moodle-token'"
        ) as client:
            with pytest.raises(
                ConfigurationError, match=r"invalidtoken: Invalid token.*secret 'moodle-token'"
            ):
                await client.users_by_field("idnumber", ["S1"])
        async with MoodleClient(server.url, server.token) as client:
            with pytest.raises(ConfigurationError, match="accessexception"):
                await client.create_users([{"username": "ada"}])
        server.functions = ("core_user_create_users",)
        async with MoodleClient(server.url, server.token) as client:
            with pytest.raises(
                MoodleError,
                match=r"invalidparameter: .*Missing required key in single structure: email",
            ) as caught:
                await client.create_users(
                    [{"username": "ada", "firstname": "Ada", "lastname": "L"}]
                )
    assert caught.value.errorcode == "invalidparameter"


@pytest.mark.parametrize(
    ("params", "field"),
    [({"base_url": "http://10.0.0.5/moodle"}, "param.base_url"),
     ({"base_url": "https://moodle.example.edu", "token_secret": "../etc/passwd"}, "param.token_secret"),
     ({"base_url": "https://moodle.example.edu", "auth": "Manual; DROP"}, "param.auth"),
     ({"base_url": "https://moodle.example.edu", "category_id": 0}, "param.category_id"),
     ({"base_url": "https://moodle.example.edu", "safety": {"max_changed_pct": 200}}, "param.safety")],
)  # fmt: skip
@pytest.mark.unit
def test_bad_parameters_are_refused_when_the_job_is_saved(params: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_params(moodle_export.job_type.info(), params)
    assert caught.value.field.startswith(field)


async def test_the_site_is_fenced_again_when_the_job_runs(
    sis_settings, moodle: MoodleStandIn, small_school
) -> None:
    """Saved when loopback was allowed, run where it is not: refused before any connection."""
    strict = JobRunner(sis_settings.model_copy(update={"outbound_allow_hosts": []}))
    try:
        ran = await strict(JOB, {"base_url": moodle.url})
    finally:
        await strict.db.close()
    assert ran.status == "failed"
    assert ran.error is not None and "param.base_url" in ran.error and "127.0.0.1" in ran.error
    assert moodle.calls == []
