"""OneRoster REST Push against the demo school and a stand-in OneRoster 1.2 REST service: a first
push in dependency order with the binding's objects, a repeat of the occurrence that sends
nothing, a change sent as one PUT and DELETEs children first, throttling, a 500 and an expired
token ridden out, a refused record failing alone and retried, the safety hold, the dry run, bad
credentials, and parameters refused when the job is saved."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from belltower.errors import InvalidInput
from belltower_dev.standins.oneroster import PATH, OneRosterStandIn
from belltower_integration.jobs import oneroster_rest
from belltower_integration.oneroster import rest
from belltower_scheduler.catalog import validate_params
from tests.catalog.conftest import JobRunner
from tests.catalog.integrations_support import keep_current_sections

JOB = oneroster_rest.job_type.name

STUDENTS_SQL = """
SELECT count(DISTINCT e.person_id) FROM sis.enrollments e
 WHERE e.status IN ('enrolled', 'audit', 'completed')
"""


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch) -> Iterator[OneRosterStandIn]:
    with OneRosterStandIn(throttle_first=1, expire_tokens=True) as server:
        monkeypatch.setenv("BELLTOWER_SECRET_ONEROSTER_CLIENT_ID", server.client_id)
        monkeypatch.setenv("BELLTOWER_SECRET_ONEROSTER_CLIENT_SECRET", server.client_secret)
        yield server


@pytest.fixture
async def small_school(run_job: JobRunner) -> None:
    await keep_current_sections(await run_job.db.pool(), 6)


def params_for(service: OneRosterStandIn, **more: object) -> dict[str, object]:
    return {"base_url": service.url, "token_url": service.token_url, **more}


async def test_a_push_sends_the_roster_in_dependency_order_once(
    run_job: JobRunner, service: OneRosterStandIn, small_school
) -> None:
    service.fail_first = 1  # a 500 first (then a 429, then an expired token)
    params = params_for(service)
    first = await run_job(JOB, params, occurrence_id="occ-1")
    assert first.status == "succeeded", first.error
    pool = await run_job.db.pool()
    sections = await pool.fetch(
        "SELECT c.code AS course, s.section_code, f.sis_id AS teacher FROM sis.sections s"
        " JOIN sis.courses c ON c.id = s.course_id LEFT JOIN sis.people f ON f.id = s.lead_faculty_id"
    )
    assert set(service.records["classes"]) == {
        f"class-CURR-{r['course']}-{r['section_code']}" for r in sections
    }
    assert set(service.records["courses"]) == {f"course-{r['course']}" for r in sections}
    students = await pool.fetchval(STUDENTS_SQL)
    enrollments = service.records["enrollments"].values()
    assert sum(e["role"] == "student" for e in enrollments) >= students > 0
    teacher = next(r["teacher"] for r in sections if r["teacher"])
    user = service.records["users"][teacher]
    assert user["enabledUser"] is True
    assert [(r["role"], r["roleType"]) for r in user["roles"]] == [("teacher", "primary")]
    assert service.records["orgs"]["institution"]["type"] == "district"
    # every PUT of a kind came after every PUT of the kinds it refers to
    puts = [p.split("/")[5] for m, p in service.requests if m == "PUT"]
    firsts = [puts.index(c) for c in rest.ORDER]
    lasts = [len(puts) - 1 - puts[::-1].index(c) for c in rest.ORDER]
    assert all(lasts[i] < firsts[i + 1] for i in range(len(rest.ORDER) - 1)), puts
    # a 500, a 429 and an expired token were ridden out; the client asked for its scopes
    assert service.scopes and service.scopes[0] == rest.SCOPES
    assert service.client_secret not in first.text
    total = sum(len(r) for r in service.records.values())
    assert f"{total} sent, 0 refused" in first.summary
    assert "users: " in first.text and " created, 0 replaced, 0 deleted, 0 refused" in first.text

    sent = len(service.requests)
    again = await run_job(JOB, params, occurrence_id="occ-1")
    assert again.status == "succeeded"
    assert again.summary == "OneRoster REST push: nothing changed since the last run; nothing sent"
    assert len(service.requests) == sent


async def test_a_change_is_one_put_and_deletions_go_children_first(
    run_job: JobRunner, service: OneRosterStandIn, small_school
) -> None:
    params = params_for(service)
    assert (await run_job(JOB, params, occurrence_id="occ-1")).status == "succeeded"
    pool = await run_job.db.pool()
    # A teacher the first run sent (the small school keeps only the current sections).
    teachers = await pool.fetch(
        "SELECT DISTINCT p.sis_id FROM sis.sections s JOIN sis.people p ON p.id = s.lead_faculty_id"
        " ORDER BY 1"
    )
    teacher = next(r["sis_id"] for r in teachers if r["sis_id"] in service.records["users"])
    await pool.execute("UPDATE sis.people SET last_name = 'Renamed' WHERE sis_id = $1", teacher)
    section = await pool.fetchrow(
        "SELECT s.id, c.code, s.section_code FROM sis.sections s JOIN sis.courses c ON c.id = s.course_id"
        " ORDER BY s.id LIMIT 1"
    )
    await pool.execute("DELETE FROM sis.enrollments WHERE section_id = $1", section["id"])
    await pool.execute("DELETE FROM sis.sections WHERE id = $1", section["id"])
    service.requests.clear()
    second = await run_job(
        JOB, {**params, "safety": {"max_deleted_pct": 100}}, occurrence_id="occ-2"
    )
    assert second.status == "succeeded", second.error
    assert service.records["users"][teacher]["familyName"] == "Renamed"
    gone = f"class-CURR-{section['code']}-{section['section_code']}"
    assert gone not in service.records["classes"]
    assert not any(e["class"]["sourcedId"] == gone for e in service.records["enrollments"].values())
    deletes = [p.split("/")[5] for m, p in service.requests if m == "DELETE"]
    assert "classes" in deletes and deletes.index("enrollments") < deletes.index("classes")
    assert ("PUT", f"{PATH}/users/{teacher}") in service.requests
    assert "classes: 0 created, 0 replaced, 1 deleted, 0 refused" in second.text


async def test_a_refused_record_fails_alone_and_is_sent_by_the_next_run(
    run_job: JobRunner, service: OneRosterStandIn, small_school
) -> None:
    pool = await run_job.db.pool()
    student = await pool.fetchval(
        "SELECT p.sis_id FROM sis.enrollments e JOIN sis.people p ON p.id = e.person_id"
        " WHERE e.status = 'enrolled' ORDER BY p.sis_id LIMIT 1"
    )
    service.refuse.add(student)
    params = params_for(service)
    failed = await run_job(JOB, params, occurrence_id="occ-1")
    assert failed.status == "failed"
    assert f"user {student}" in failed.text and "invalid_data" in failed.text
    assert student not in service.records["users"]
    assert service.records["classes"], "the rest went through"
    # the student's enrollments refer to a user the service does not have: refused too
    assert not any(
        e["user"]["sourcedId"] == student for e in service.records["enrollments"].values()
    )
    service.refuse.clear()
    fixed = await run_job(JOB, params, occurrence_id="occ-2")
    assert fixed.status == "succeeded", fixed.error
    assert student in service.records["users"]
    assert any(e["user"]["sourcedId"] == student for e in service.records["enrollments"].values())


async def test_too_large_a_deletion_is_held_and_a_dry_run_sends_nothing(
    run_job: JobRunner, service: OneRosterStandIn, small_school
) -> None:
    params = params_for(service)
    assert (await run_job(JOB, params, occurrence_id="occ-1")).status == "succeeded"
    pool = await run_job.db.pool()
    await pool.execute("UPDATE sis.enrollments SET status = 'withdrawn' WHERE id % 2 = 0")
    held_before = {k: dict(v) for k, v in service.records.items()}
    service.requests.clear()
    dry = await run_job(JOB, {**params, "dry_run": True}, occurrence_id="occ-2")
    assert dry.status == "succeeded"
    assert dry.summary.startswith("OneRoster REST push (dry run, nothing sent): ")
    assert re.search(r"enrollments: 0 new, 0 changed, [1-9]\d* gone", dry.summary), dry.summary
    assert service.requests == []
    held = await run_job(JOB, params, occurrence_id="occ-2")
    assert held.status == "held", held.error
    assert "enrollment: " in (held.error or "") and "would be deleted" in (held.error or "")
    assert service.requests == [] and service.records == held_before


async def test_credentials_the_token_endpoint_refuses_fail_the_run(
    run_job: JobRunner, service: OneRosterStandIn, small_school, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BELLTOWER_SECRET_ONEROSTER_CLIENT_SECRET", "wrong")
    ran = await run_job(JOB, params_for(service))
    assert ran.status == "failed"
    assert ran.error is not None and "invalid_client" in ran.error and "wrong" not in ran.error
    assert sum(len(r) for r in service.records.values()) == 0


@pytest.mark.parametrize(
    ("params", "field"),
    [({"base_url": "http://10.0.0.5", "token_url": "https://or.example.edu/token"}, "param.base_url"),
     ({"base_url": "https://or.example.edu", "token_url": "http://169.254.169.254/"}, "param.token_url"),
     ({"base_url": "https://or.example.edu", "token_url": "https://or.example.edu/t",
       "client_secret_secret": "../x"}, "param.client_secret_secret"),
     ({"base_url": "https://or.example.edu", "token_url": "https://or.example.edu/t",
       "scope": "a\nb"}, "param.scope"),
     ({"base_url": "https://or.example.edu", "token_url": "https://or.example.edu/t",
       "institution_id": "a b"}, "param.institution_id")],
)  # fmt: skip
@pytest.mark.unit
def test_bad_parameters_are_refused_when_the_job_is_saved(params: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_params(oneroster_rest.job_type.info(), params)
    assert caught.value.field.startswith(field)


@pytest.mark.unit
def test_records_take_the_bindings_shapes() -> None:
    shaper = rest.Shaper("https://or.example.edu/")
    records = {
        "orgs": {"institution": ("Inst", "district", "", "")},
        "roles": {"S1-student": ("S1", "primary", "student", "", "", "institution", "")},
        "users": {"S1": ("true", "s1", "", "Ada", "Lovelace", "", "S1", "", "", "", "", "",
                         "", "", "", "", "", "", "institution", "")},
        "enrollments": {"e1": ("c1", "institution", "S1", "student", "false", "2026-01-05", "")},
    }  # fmt: skip
    out = shaper.records(records)
    user = out["users"]["S1"]
    assert user["enabledUser"] is True and "middleName" not in user
    assert user["roles"] == [{"roleType": "primary", "role": "student",
                              "org": {"href": f"https://or.example.edu{PATH}/orgs/institution",
                                      "sourcedId": "institution", "type": "org"}}]  # fmt: skip
    enrollment = out["enrollments"]["e1"]
    assert enrollment["primary"] == "false" and "endDate" not in enrollment
    assert enrollment["class"]["type"] == "class" and enrollment["user"]["sourcedId"] == "S1"
    assert out["orgs"]["institution"] == {"sourcedId": "institution", "status": "active",
                                          "name": "Inst", "type": "district"}  # fmt: skip
    assert oneroster_rest.parents_first(
        {"a": {"parent": {"sourcedId": "z"}}, "z": {}}, ["a", "z"]
    ) == ["z", "a"]
