"""Blackboard LMS Export and Load Data From Blackboard API over Learn's REST API, against the
demo school and a stand-in built to Learn's contract: a first sync and a repeat that sends
nothing, a change sent as membership deletions, throttling and an expired token ridden out, a
record Learn refuses failing alone, and a load that links Learn's ids to the SIS."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from belltower.errors import ConfigurationError, InvalidInput, Unavailable
from belltower_dev.standins.blackboard import BlackboardStandIn
from belltower_integration.blackboard import API, BlackboardClient
from belltower_integration.jobs import blackboard
from belltower_scheduler.catalog import validate_params
from tests.catalog.conftest import JobRunner
from tests.catalog.integrations_support import drop_one_enrolment, keep_current_sections

EXPORT, LOAD = blackboard.export_type.name, blackboard.load_type.name


@pytest.fixture
def learn(monkeypatch: pytest.MonkeyPatch) -> Iterator[BlackboardStandIn]:
    with BlackboardStandIn(throttle_first=1, expire_tokens=True) as server:
        monkeypatch.setenv("BELLTOWER_SECRET_BLACKBOARD_KEY", server.key)
        monkeypatch.setenv("BELLTOWER_SECRET_BLACKBOARD_SECRET", server.secret)
        yield server


@pytest.fixture
async def small_school(run_job: JobRunner) -> None:
    await keep_current_sections(await run_job.db.pool(), 8)


async def test_an_export_sends_the_roster_once_then_only_what_changed(
    run_job: JobRunner, learn: BlackboardStandIn, small_school
) -> None:
    params = {"base_url": learn.url}
    first = await run_job(EXPORT, params, occurrence_id="occ-1")
    assert first.status == "succeeded", first.error
    pool = await run_job.db.pool()
    sections = await pool.fetch(
        "SELECT s.id, c.code FROM sis.sections s JOIN sis.courses c ON c.id = s.course_id"
    )
    assert {c["externalId"] for c in learn.records["courses"].values()} == {
        f"{r['code']}-CURR" for r in sections
    }
    students = await pool.fetchval(
        "SELECT count(DISTINCT person_id) FROM sis.enrollments WHERE status IN ('enrolled', 'audit', 'completed')"
    )
    roles = [m["courseRoleId"] for m in learn.memberships.values()]
    assert roles.count("Instructor") >= 1 and roles.count("Student") >= students
    assert learn.by_external("users", next(iter(learn.records["users"].values()))["externalId"])
    assert learn.secret not in first.text
    # a throttled call and an expired token were ridden out
    assert ("POST", f"{API}/oauth2/token") in learn.requests
    sent = len(learn.requests)

    again = await run_job(EXPORT, params, occurrence_id="occ-1")
    assert (
        again.summary == "Blackboard LMS export: nothing changed since the last run; nothing sent"
    )
    assert len(learn.requests) == sent

    await drop_one_enrolment(pool)
    memberships = len(learn.memberships)
    learn.requests.clear()
    second = await run_job(EXPORT, params, occurrence_id="occ-2")
    assert second.status == "succeeded", second.error
    assert [m for m, _ in learn.requests if m != "POST"] == ["DELETE"]
    assert len(learn.memberships) == memberships - 1
    assert "enrolments: 0 new, 0 changed, 1 gone" in second.text


async def test_a_user_name_learn_has_for_someone_else_fails_alone_and_is_retried(
    run_job: JobRunner, learn: BlackboardStandIn, small_school
) -> None:
    pool = await run_job.db.pool()
    login = await pool.fetchval(
        "SELECT coalesce(p.login_id, p.sis_id) FROM sis.enrollments e JOIN sis.people p ON p.id = e.person_id"
        " WHERE e.status = 'enrolled' ORDER BY p.sis_id LIMIT 1"
    )
    learn.records["users"]["_0_1"] = {"id": "_0_1", "userName": login, "externalId": "OTHER",
                                      "name": {"given": "O", "family": "P"}}  # fmt: skip
    params = {"base_url": learn.url}
    failed = await run_job(EXPORT, params, occurrence_id="occ-1")
    assert failed.status == "failed"
    assert f"A user with userName {login} already exists" in failed.text
    del learn.records["users"]["_0_1"]
    users = len(learn.records["users"])
    fixed = await run_job(EXPORT, params, occurrence_id="occ-2")
    assert fixed.status == "succeeded", fixed.error
    assert len(learn.records["users"]) == users + 1
    assert "users: 1 new, 0 changed, 0 gone" in fixed.text


async def test_a_load_pages_through_learn_and_links_its_ids_to_the_sis(
    run_job: JobRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = await run_job.db.pool()
    people = [
        r["sis_id"]
        for r in await pool.fetch("SELECT sis_id FROM sis.people ORDER BY sis_id LIMIT 9")
    ]
    course = await pool.fetchval(
        "SELECT c.code || '-' || t.code FROM sis.sections s JOIN sis.courses c ON c.id = s.course_id"
        " JOIN sis.terms t ON t.id = s.term_id WHERE t.code = 'CURR' LIMIT 1"
    )
    with BlackboardStandIn(page_size=4) as server:
        monkeypatch.setenv("BELLTOWER_SECRET_BLACKBOARD_KEY", server.key)
        monkeypatch.setenv("BELLTOWER_SECRET_BLACKBOARD_SECRET", server.secret)
        for i, sis_id in enumerate([*people, "NOT-IN-SIS"]):
            server.records["users"][f"_{i}_1"] = {
                "id": f"_{i}_1",
                "externalId": sis_id,
                "userName": f"u{i}",
            }
        server.records["courses"]["_90_1"] = {
            "id": "_90_1",
            "externalId": course,
            "courseId": course,
        }
        ran = await run_job(LOAD, {"base_url": server.url})
        pages = [p for m, p in server.requests if p == f"{API}/users"]
    assert ran.status == "succeeded", ran.error
    assert ran.summary == "Blackboard load: linked 9 people and 1 courses"
    assert len(pages) == 3  # ten users, four a page
    linked = await pool.fetch(
        "SELECT p.sis_id, x.value FROM sis.person_external_ids x JOIN sis.people p ON p.id = x.person_id"
        " WHERE x.system = 'blackboard' ORDER BY 1"
    )
    assert [(r["sis_id"], r["value"]) for r in linked] == [
        (s, f"_{i}_1") for i, s in enumerate(people)
    ]
    assert (
        await pool.fetchval("SELECT lms_id FROM sis.lms_course_links WHERE system = 'blackboard'")
        == "_90_1"
    )
    assert "no person in the SIS has this SIS id" in ran.text


async def test_the_client_names_refused_credentials_and_gives_up_on_5xx_clearly() -> None:
    with BlackboardStandIn(fail_first=9) as server:
        async with BlackboardClient(
            server.url, server.key, server.secret, attempts=2, first_delay_s=0.01
        ) as bb:
            with pytest.raises(
                Unavailable, match=r"Blackboard answered 503 to POST .*oauth2/token 2 times"
            ):
                await bb.request("GET", f"{API}/users")
    with BlackboardStandIn() as server:
        async with BlackboardClient(
            server.url, server.key, "wrong", secret_names="the secrets 'k' and 's'"
        ) as bb:
            with pytest.raises(
                ConfigurationError, match=r"Invalid client credentials.*'k' and 's'"
            ):
                await bb.request("GET", f"{API}/users")


@pytest.mark.parametrize(
    ("job", "params", "field"),
    [(blackboard.export_type, {"base_url": "http://169.254.169.254/"}, "param.base_url"),
     (blackboard.load_type, {"base_url": "https://bb.example.edu", "client_secret": "a/b"}, "param.client_secret"),
     (blackboard.export_type, {"base_url": "https://bb.example.edu", "data_source": "x y"}, "param.data_source"),
     (blackboard.export_type, {"base_url": "https://bb.example.edu", "safety": {"max_deleted_pct": "ten"}}, "param.safety")],
)  # fmt: skip
@pytest.mark.unit
def test_bad_parameters_are_refused_when_the_job_is_saved(job, params: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_params(job.info(), params)
    assert caught.value.field.startswith(field)
