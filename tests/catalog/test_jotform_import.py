"""Auto Jotform Import against the SIS and a stand-in built to Jotform's submissions API: new
people from a form's recent submissions, a repeat that creates no one, submissions that cannot
be a person named, paging, a throttled call ridden out, a dry run, a refused key and parameters
refused when the job is saved."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from belltower.errors import InvalidInput
from belltower_dev.standins.jotform import JotformStandIn
from belltower_integration.importing import generated_sis_id
from belltower_integration.jobs import jotform_import
from belltower_scheduler.catalog import validate_params
from tests.catalog.conftest import JobRunner

JOB = jotform_import.job_type.name
FORM = "241234567890123"
WHEN = datetime(2026, 3, 10, 6, 0, tzinfo=UTC)


def answers(first: str, last: str, email: str, *, phone: str = "", born: tuple[str, str, str]
            | None = None) -> dict[str, dict[str, object]]:  # fmt: skip
    out: dict[str, dict[str, object]] = {
        "1": {"name": "heading", "type": "control_head", "text": "Inquiry"},
        "3": {"name": "yourName", "type": "control_fullname", "text": "Your Name",
              "answer": {"first": first, "last": last}, "prettyFormat": f"{first} {last}"},
        "4": {"name": "email", "type": "control_email", "text": "E-mail", "answer": email},
    }  # fmt: skip
    if phone:
        out["5"] = {"name": "phoneNumber", "type": "control_phone", "text": "Phone",
                    "answer": {"full": phone}}  # fmt: skip
    if born:
        out["6"] = {"name": "birthDate", "type": "control_birthdate", "text": "Birth date",
                    "answer": dict(zip(("month", "day", "year"), born, strict=True))}  # fmt: skip
    return out


@pytest.fixture
def jotform(monkeypatch: pytest.MonkeyPatch) -> Iterator[JotformStandIn]:
    with JotformStandIn(throttle_first=1) as server:
        monkeypatch.setenv("BELLTOWER_SECRET_JOTFORM_API_KEY", server.api_key)
        yield server


async def test_new_submissions_become_prospects_once(
    run_job: JobRunner, jotform: JotformStandIn
) -> None:
    ada = jotform.submit(FORM, "2026-03-05 10:00:00",
                         answers("Ada", "Quill", "ada.quill@example.org", phone="(555) 010-2000",
                                 born=("03", "02", "2009")))  # fmt: skip
    jotform.submit(FORM, "2026-03-06 11:00:00", answers("Bo", "Reed", "bo.reed@example.org"))
    jotform.submit(FORM, "2026-03-06 12:00:00", answers("Bo", "Reed", "BO.REED@example.org"))
    jotform.submit(FORM, "2026-03-07 09:00:00", answers("", "Nameless", "n@example.org"))
    jotform.submit(FORM, "2026-03-07 09:30:00", answers("Del", "Eted", "del@example.org"),
                   status="DELETED")  # fmt: skip
    jotform.submit(FORM, "2025-12-01 09:00:00", answers("Old", "Timer", "old@example.org"))
    params = {"form_id": FORM, "base_url": jotform.url, "notify": ["admissions@example.edu"]}
    ran = await run_job(JOB, params, occurrence_id="occ-1", scheduled_for=WHEN)
    assert ran.status == "succeeded", ran.error
    assert ran.summary == "Jotform import: 2 created, 1 skipped, 1 refused"
    pool = await run_job.db.pool()
    person = await pool.fetchrow(
        "SELECT p.id, p.first_name, p.last_name, p.status, p.birth_date FROM sis.people p"
        " WHERE p.sis_id = $1", generated_sis_id("ada.quill@example.org"))  # fmt: skip
    assert (person["first_name"], person["last_name"], person["status"]) == (
        "Ada",
        "Quill",
        "prospect",
    )
    assert person["birth_date"].isoformat() == "2009-03-02"
    assert (
        await pool.fetchval(
            "SELECT value FROM sis.person_external_ids WHERE person_id = $1 AND system = 'jotform'",
            person["id"],
        )
        == ada
    )
    assert (
        await pool.fetchval("SELECT number FROM sis.phones WHERE person_id = $1", person["id"])
        == "(555) 010-2000"
    )
    assert not await pool.fetchval(
        "SELECT count(*) FROM sis.emails WHERE address IN ('old@example.org', 'del@example.org')"
    )
    assert "a first and last name and an e-mail address are required" in ran.text
    assert "results sent to 1 recipient(s)" in ran.text
    assert jotform.requests[-1]["filter"] == '{"created_at:gt": "2026-02-08 06:00:00"}'
    assert jotform.api_key not in ran.text

    people = await pool.fetchval("SELECT count(*) FROM sis.people")
    again = await run_job(JOB, params, occurrence_id="occ-1", scheduled_for=WHEN)
    assert again.summary == "Jotform import: 0 created, 3 skipped, 1 refused"
    assert await pool.fetchval("SELECT count(*) FROM sis.people") == people


async def test_pages_are_followed_and_a_dry_run_creates_no_one(
    run_job: JobRunner, jotform: JotformStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("belltower_integration.jotform.PAGE", 2)
    for n in range(5):
        jotform.submit(FORM, f"2026-03-0{n + 1} 08:00:00",
                       answers(f"P{n}", "Page", f"page{n}@example.org"))  # fmt: skip
    pool = await run_job.db.pool()
    people = await pool.fetchval("SELECT count(*) FROM sis.people")
    params = {"form_id": FORM, "base_url": jotform.url, "dry_run": True}
    dry = await run_job(JOB, params, scheduled_for=WHEN)
    assert (
        dry.summary == "Jotform import (dry run, nothing created): 5 created, 0 skipped, 0 refused"
    )
    assert await pool.fetchval("SELECT count(*) FROM sis.people") == people
    assert [r["offset"] for r in jotform.requests if "offset" in r] == ["0", "0", "2", "4"]


async def test_a_refused_key_fails_the_run(
    run_job: JobRunner, jotform: JotformStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BELLTOWER_SECRET_JOTFORM_API_KEY", "wrong-key")
    jotform.throttle_first = 0
    jotform.submit(FORM, "2026-03-05 10:00:00", answers("A", "B", "ab@example.org"))
    ran = await run_job(JOB, {"form_id": FORM, "base_url": jotform.url}, scheduled_for=WHEN)
    assert ran.status == "failed"
    assert "Jotform refused the secret 'jotform-api-key'" in (ran.error or "")
    assert "wrong-key" not in (ran.error or "")


@pytest.mark.parametrize(
    ("params", "field"),
    [({"form_id": "12a"}, "param.form_id"),
     ({"form_id": "1", "base_url": "http://169.254.169.254"}, "param.base_url"),
     ({"form_id": "1", "fields": {"email": "e mail"}}, "param.fields"),
     ({"form_id": "1", "fields": {"shoe_size": "x"}}, "param.fields"),
     ({"form_id": "1", "lookback_days": 0}, "param.lookback_days")],
)  # fmt: skip
@pytest.mark.unit
def test_bad_parameters_are_refused_when_the_job_is_saved(params: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_params(jotform_import.job_type.info(), params)
    assert caught.value.field.startswith(field)


@pytest.mark.unit
def test_questions_named_in_fields_win_over_types() -> None:
    submission = {"answers": {
        "3": {"name": "student", "type": "control_fullname", "answer": {"first": "A", "last": "B"}},
        "7": {"name": "parentEmail", "type": "control_email", "answer": "parent@example.org"},
        "8": {"name": "studentEmail", "type": "control_textbox", "answer": " kid@example.org "},
    }}  # fmt: skip
    assert (
        jotform_import.values(submission, {"email": "studentEmail"})["email"] == "kid@example.org"
    )
    assert jotform_import.values(submission, {})["email"] == "parent@example.org"
