"""Schoology Exports, the Schoology Sync Notifier, LMS Sync Log Pruning and Sync Recent Course
Period Changes, against the demo school and a stand-in built to Schoology's REST API v1: a first
sync and a repeat of the occurrence that sends nothing, a change sent as enrolment deletions,
throttling ridden out with every retry signed anew, a record Schoology refuses failing alone, the
safety hold, the sync log and its pruning, and imported sections joining a combined gradebook."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from belltower.errors import ConfigurationError, InvalidInput, Unavailable
from belltower_dev.localservers import MailSink
from belltower_dev.standins.schoology import SchoologyStandIn
from belltower_integration.jobs import schoology
from belltower_integration.schoology import SchoologyClient
from belltower_scheduler.catalog import validate_params
from tests.catalog.conftest import JobRunner, mails_to, text_of
from tests.catalog.integrations_support import drop_one_enrolment, keep_current_sections

EXPORT, NOTIFIER = schoology.export_type.name, schoology.sync_notifier_type.name
PRUNE, PERIODS = schoology.prune_type.name, schoology.course_periods_type.name
ROLES = {"student_role_id": 11, "teacher_role_id": 12}


@pytest.fixture
def sc(monkeypatch: pytest.MonkeyPatch) -> Iterator[SchoologyStandIn]:
    with SchoologyStandIn(throttle_first=1) as server:
        monkeypatch.setenv("BELLTOWER_SECRET_SCHOOLOGY_KEY", server.key)
        monkeypatch.setenv("BELLTOWER_SECRET_SCHOOLOGY_SECRET", server.secret)
        yield server


@pytest.fixture
async def small_school(run_job: JobRunner) -> None:
    await keep_current_sections(await run_job.db.pool(), 6)


def params_of(server: SchoologyStandIn, **more: object) -> dict[str, object]:
    return {"base_url": f"{server.url}/v1", **ROLES, **more}


async def test_an_export_sends_the_roster_once_then_only_what_changed(
    run_job: JobRunner, sc: SchoologyStandIn, small_school: None, mail_sink: MailSink
) -> None:
    params = params_of(sc, notify=["registrar@school.example"])
    first = await run_job(EXPORT, params, occurrence_id="occ-1")
    assert first.status == "succeeded", first.error
    pool = await run_job.db.pool()
    sections = await pool.fetch(
        "SELECT c.code, s.section_code, f.sis_id AS teacher FROM sis.sections s"
        " JOIN sis.courses c ON c.id = s.course_id LEFT JOIN sis.people f ON f.id = s.lead_faculty_id"
    )
    assert {c["course_code"] for c in sc.courses.values()} == {r["code"] for r in sections}
    assert {s["section_school_code"] for s in sc.sections.values()} == {
        f"{r['code']}-CURR-{r['section_code']}" for r in sections
    }
    assert {tuple(s["grading_periods"]) for s in sc.sections.values()} == {(901,)}  # by title
    active = await pool.fetchval(
        "SELECT count(*) FROM sis.enrollments WHERE status IN ('enrolled', 'audit', 'completed')"
    )
    teachers = sum(1 for r in sections if r["teacher"])
    assert len(sc.enrollments) == active + teachers
    one = sections[0]
    members = sc.members(f"{one['code']}-CURR-{one['section_code']}")
    if one["teacher"]:
        assert members[one["teacher"]] == 1 and list(members.values()).count(1) == 1
    assert {u["role_id"] for u in sc.users.values()} == {11, 12}
    # a 429 was ridden out, every attempt signed anew (no replayed nonce was refused)
    assert sc.throttle_first == 0 and sc.refusals == []
    assert sc.signature_methods == {"HMAC-SHA1"}
    logged = await pool.fetchval(
        "SELECT count(*) FROM sis.lms_sync_log WHERE occurrence_id = 'occ-1' AND action = 'created'"
    )
    assert logged == len(sc.users) + len(sc.courses) + len(sc.sections) + len(sc.enrollments)
    mail = mails_to(mail_sink, "registrar@school.example")
    assert len(mail) == 1 and "Schoology export sent" in mail[0]["Subject"]
    assert sc.secret not in first.text and sc.secret not in text_of(mail[0])
    sent = len(sc.requests)

    again = await run_job(EXPORT, params, occurrence_id="occ-1")
    assert again.summary == "Schoology export: nothing changed since the last run; nothing sent"
    assert len(sc.requests) == sent
    assert len(mails_to(mail_sink, "registrar@school.example")) == 1

    await drop_one_enrolment(pool)
    enrollments = len(sc.enrollments)
    sc.requests.clear()
    second = await run_job(EXPORT, params, occurrence_id="occ-2")
    assert second.status == "succeeded", second.error
    assert sc.requests == [("DELETE", "/v1/enrollments")]
    assert len(sc.enrollments) == enrollments - 1
    assert "enrolments: 0 new, 0 changed, 1 gone" in second.text
    assert await pool.fetchval(
        "SELECT count(*) FROM sis.lms_sync_log WHERE occurrence_id = 'occ-2' AND action = 'deleted'"
    ) == 1  # fmt: skip


async def test_a_username_schoology_has_for_someone_else_fails_alone_and_is_retried(
    run_job: JobRunner, sc: SchoologyStandIn, small_school: None
) -> None:
    pool = await run_job.db.pool()
    login = await pool.fetchval(
        "SELECT coalesce(p.login_id, p.sis_id) FROM sis.enrollments e JOIN sis.people p ON p.id = e.person_id"
        " WHERE e.status = 'enrolled' ORDER BY p.sis_id LIMIT 1"
    )
    sc.users["1"] = {"id": "1", "school_uid": "OTHER", "username": login, "active": True,
                     "name_first": "O", "name_last": "P", "role_id": 11}  # fmt: skip
    failed = await run_job(EXPORT, params_of(sc), occurrence_id="occ-1")
    assert failed.status == "failed"
    assert f"The username {login} is already in use" in failed.text
    refused = await pool.fetch(
        "SELECT kind, detail FROM sis.lms_sync_log WHERE occurrence_id = 'occ-1' AND action = 'refused'"
    )
    assert [r["kind"] for r in refused] == ["user"] and login in refused[0]["detail"]
    # the rest went through; the refused user's enrolments wait for it
    assert len(sc.sections) == 6 and "not in Schoology yet" in failed.text
    del sc.users["1"]
    users = len(sc.users)
    fixed = await run_job(EXPORT, params_of(sc), occurrence_id="occ-2")
    assert fixed.status == "succeeded", fixed.error
    assert len(sc.users) == users + 1
    assert "users: 1 new, 0 changed, 0 gone" in fixed.text


async def test_a_sync_that_would_delete_most_enrolments_is_held_and_sends_nothing(
    run_job: JobRunner, sc: SchoologyStandIn, small_school: None
) -> None:
    assert (await run_job(EXPORT, params_of(sc), occurrence_id="occ-1")).status == "succeeded"
    pool = await run_job.db.pool()
    await pool.execute(
        "UPDATE sis.enrollments SET status = 'dropped' WHERE id IN "
        "(SELECT id FROM sis.enrollments WHERE status = 'enrolled' ORDER BY id LIMIT 40)"
    )
    enrollments, sc.requests[:] = len(sc.enrollments), []
    held = await run_job(EXPORT, params_of(sc), occurrence_id="occ-2")
    assert held.status == "held", held.error
    assert "enrolment: 40 of" in held.summary and "would be deleted" in held.summary
    assert sc.requests == [] and len(sc.enrollments) == enrollments
    assert (
        await pool.fetchval("SELECT counts->'enrolment'->>'deleted' FROM sis.roster_holds") == "40"
    )


async def test_the_sync_notifier_syncs_users_and_mails_what_changed(
    run_job: JobRunner, sc: SchoologyStandIn, small_school: None, mail_sink: MailSink
) -> None:
    params = params_of(sc, notify=["lms@school.example"])
    first = await run_job(NOTIFIER, params, occurrence_id="occ-1")
    assert first.status == "succeeded", first.error
    assert sc.users and not sc.courses and not sc.enrollments  # user data only
    assert first.summary.startswith(f"Schoology user sync: {len(sc.users)} created, 0 updated")
    pool = await run_job.db.pool()
    person = await pool.fetchrow(
        "SELECT p.id, p.sis_id, p.first_name FROM sis.people p WHERE p.sis_id = $1",
        sorted(u["school_uid"] for u in sc.users.values())[0],
    )
    await pool.execute("UPDATE sis.people SET last_name = 'Renamed' WHERE id = $1", person["id"])
    second = await run_job(NOTIFIER, params, occurrence_id="occ-2")
    assert second.summary == "Schoology user sync: 0 created, 1 updated, 0 deactivated, 0 refused"
    assert sc.active_user(person["sis_id"])["name_last"] == "Renamed"  # type: ignore[index]
    mail = mails_to(mail_sink, "lms@school.example")
    assert len(mail) == 2
    assert f"updated: Renamed, {person['first_name']}" in text_of(mail[1])
    assert await pool.fetchval(
        "SELECT count(*) FROM sis.lms_sync_log WHERE occurrence_id = 'occ-2'"
    ) == 1  # fmt: skip


async def test_the_sync_notifier_mails_a_refused_user_and_holds_a_mass_deactivation(
    run_job: JobRunner, sc: SchoologyStandIn, small_school: None, mail_sink: MailSink
) -> None:
    pool = await run_job.db.pool()
    login = await pool.fetchval(
        "SELECT coalesce(p.login_id, p.sis_id) FROM sis.enrollments e JOIN sis.people p ON p.id = e.person_id"
        " WHERE e.status = 'enrolled' ORDER BY p.sis_id DESC LIMIT 1"
    )
    sc.users["1"] = {"id": "1", "school_uid": "OTHER", "username": login, "active": True}
    params = params_of(sc, notify=["lms@school.example"])
    failed = await run_job(NOTIFIER, params, occurrence_id="occ-1")
    assert failed.status == "failed" and failed.summary.endswith("1 refused")
    mail = mails_to(mail_sink, "lms@school.example")
    assert len(mail) == 1 and f"The username {login} is already in use" in text_of(mail[0])
    del sc.users["1"]
    assert (await run_job(NOTIFIER, params, occurrence_id="occ-2")).summary.startswith(
        "Schoology user sync: 1 created"
    )
    await pool.execute("UPDATE sis.enrollments SET status = 'dropped'")  # everyone leaves
    active = sum(u["active"] for u in sc.users.values())
    held = await run_job(NOTIFIER, params, occurrence_id="occ-3")
    assert held.status == "held" and "would be deleted" in held.summary
    assert sum(u["active"] for u in sc.users.values()) == active  # nobody deactivated


async def test_pruning_removes_old_sync_log_rows_once_per_occurrence_and_tells_the_group(
    run_job: JobRunner, mail_sink: MailSink
) -> None:
    pool = await run_job.db.pool()
    now = datetime.now(UTC)
    await pool.execute(
        "INSERT INTO sis.lms_sync_log (system, job_id, run_id, occurrence_id, kind, sis_key, action, logged_at)"
        " SELECT 'schoology', 'j', 'r', 'o' || i, 'user', 'S' || i, 'created', $1::timestamptz - make_interval(days => i)"
        " FROM generate_series(1, 250) AS i",
        now,
    )
    params = {"keep_days": 100, "batch_size": 100, "notify": ["it@school.example"]}
    dry = await run_job(PRUNE, {**params, "dry_run": True}, scheduled_for=now)
    assert dry.summary.startswith("dry run: 150 sync log rows older than")
    assert await pool.fetchval("SELECT count(*) FROM sis.lms_sync_log") == 250
    ran = await run_job(PRUNE, params, occurrence_id="p-1", scheduled_for=now)
    assert ran.summary == "LMS sync log pruning: 150 rows older than 100 days removed"
    assert (
        await pool.fetchval("SELECT count(*) FROM sis.lms_sync_log") == 100
    )  # the row of exactly 100 days is kept
    again = await run_job(PRUNE, params, occurrence_id="p-1", scheduled_for=now)
    assert again.summary.startswith("this occurrence pruned 150 sync log rows already")
    mail = mails_to(mail_sink, "it@school.example")
    assert len(mail) == 1 and "150 rows older than 100 days removed" in mail[0]["Subject"]
    capped = await run_job(PRUNE, {**params, "keep_days": 10, "max_rows": 50}, scheduled_for=now)
    assert "50 rows older than 10 days removed" in capped.summary
    assert "40 older rows are left for the next run" in capped.text


async def combined_gradebook(pool: Any, period: str, *, both: bool) -> tuple[Any, Any, int]:
    """Two sections A and B taught by A's teacher in ``period``, and that teacher's gradebook of
    the period combined into A's (B a member too when ``both``): (A, B, gradebook id). The demo's
    own periods and gradebooks are cleared first, so these are the only ones."""
    await pool.execute("DELETE FROM sis.combined_gradebooks")
    await pool.execute("UPDATE sis.sections SET period = NULL")
    a, b = await pool.fetch(
        "SELECT s.id, c.code || '-CURR-' || s.section_code AS key, s.term_id, s.lead_faculty_id"
        " FROM sis.sections s JOIN sis.courses c ON c.id = s.course_id"
        " WHERE s.lead_faculty_id IS NOT NULL ORDER BY s.id LIMIT 2"
    )
    await pool.execute(
        "UPDATE sis.sections SET lead_faculty_id = $1, period = $2 WHERE id = ANY($3::bigint[])",
        a["lead_faculty_id"], period, [a["id"], b["id"]],
    )  # fmt: skip
    book: int = await pool.fetchval(
        "INSERT INTO sis.combined_gradebooks (term_id, faculty_id, period, primary_section_id)"
        " VALUES ($1, $2, $3, $4) RETURNING id",
        a["term_id"], a["lead_faculty_id"], period, a["id"],
    )  # fmt: skip
    await pool.execute(
        "INSERT INTO sis.combined_gradebook_sections (gradebook_id, section_id)"
        " SELECT $1, unnest($2::bigint[])",
        book, [a["id"], b["id"]] if both else [a["id"]],
    )  # fmt: skip
    return a, b, book


async def test_an_imported_section_joins_its_teachers_combined_gradebook_in_schoology(
    run_job: JobRunner, sc: SchoologyStandIn, small_school: None
) -> None:
    pool = await run_job.db.pool()
    # the same teacher teaches both in period 3 and combined period 3 into A's gradebook
    a, b, book = await combined_gradebook(pool, "3", both=False)
    assert (await run_job(EXPORT, params_of(sc), job_id="export")).status == "succeeded"
    b_students = {
        r["sis_id"]
        for r in await pool.fetch(
            "SELECT p.sis_id FROM sis.enrollments e JOIN sis.people p ON p.id = e.person_id"
            " WHERE e.section_id = $1 AND e.status IN ('enrolled', 'audit', 'completed')", b["id"],
        )
    }  # fmt: skip
    assert b_students and not b_students <= set(sc.members(a["key"]))

    dry = await run_job(PERIODS, params_of(sc, dry_run=True), job_id="periods")
    assert dry.summary.startswith("dry run: 6 changed section(s), 1 would join a gradebook")
    assert not await pool.fetchval(
        "SELECT count(*) FROM sis.combined_gradebook_sections WHERE section_id = $1", b["id"]
    )

    before = dict(sc.members(a["key"]))
    first = await run_job(PERIODS, params_of(sc), job_id="periods", occurrence_id="c-1")
    assert first.status == "succeeded", first.error
    assert await pool.fetchval(
        "SELECT gradebook_id FROM sis.combined_gradebook_sections WHERE section_id = $1", b["id"]
    ) == book  # fmt: skip
    assert set(sc.members(a["key"])) == set(before) | b_students
    assert sc.members(a["key"])[str(await pool.fetchval(
        "SELECT sis_id FROM sis.people WHERE id = $1", a["lead_faculty_id"]))] == 1  # fmt: skip
    sent = len(sc.requests)
    again = await run_job(PERIODS, params_of(sc), job_id="periods", occurrence_id="c-1")
    assert (
        again.summary == "Sync recent course period changes: no section changed since the last run"
    )
    assert len(sc.requests) == sent

    gone = sorted(b_students - set(before))[0]
    await pool.execute(
        "UPDATE sis.enrollments SET status = 'dropped' WHERE section_id = $1"
        " AND person_id = (SELECT id FROM sis.people WHERE sis_id = $2)", b["id"], gone,
    )  # fmt: skip
    changed = await run_job(PERIODS, params_of(sc), job_id="periods", occurrence_id="c-2")
    assert "1 changed section(s), 0 joined a gradebook, 0 enrolled, 1 removed" in changed.summary
    assert set(sc.members(a["key"])) == (set(before) | b_students) - {gone}


async def test_a_dry_run_over_the_demo_school_finds_the_sections_left_out_of_its_gradebooks(
    run_job: JobRunner,
) -> None:
    pool = await run_job.db.pool()
    expected = await pool.fetchval(
        "SELECT count(*) FROM sis.sections s JOIN sis.terms t ON t.id = s.term_id"
        " JOIN sis.combined_gradebooks g ON (g.term_id, g.faculty_id, g.period)"
        "   = (s.term_id, s.lead_faculty_id, s.period)"
        " WHERE t.code = 'CURR' AND NOT EXISTS"
        "   (SELECT 1 FROM sis.combined_gradebook_sections m WHERE m.section_id = s.id)"
    )
    assert expected > 0
    dry = await run_job(PERIODS, {**BASE, "terms": ["CURR"], "dry_run": True})
    assert dry.status == "succeeded", dry.error
    assert f"changed section(s), {expected} would join a gradebook" in dry.summary
    assert dry.text.count("would join the gradebook of") == expected
    assert not await pool.fetchval(
        "SELECT count(*) FROM sis.combined_gradebook_sections WHERE added_by_run IS NOT NULL"
    )


async def test_the_client_names_refused_credentials_and_gives_up_on_5xx_clearly() -> None:
    with SchoologyStandIn(fail_first=9) as server:
        async with SchoologyClient(
            f"{server.url}/v1", server.key, server.secret, attempts=2, first_delay_s=0.01
        ) as client:
            with pytest.raises(Unavailable, match=r"Schoology answered 503 to GET /users 2 times"):
                await client.request("GET", "/users")
    with SchoologyStandIn() as server:
        async with SchoologyClient(
            f"{server.url}/v1", server.key, "wrong", secret_names="the secrets 'k' and 's'"
        ) as client:
            with pytest.raises(ConfigurationError, match=r"Invalid OAuth signature.*'k' and 's'"):
                await client.request("GET", "/users")
        async with SchoologyClient(
            f"{server.url}/v1", server.key, server.secret, signature_method="PLAINTEXT"
        ) as client:
            assert await client.request("GET", "/users", query={"school_uids": "X"}) == {"user": []}
        assert server.signature_methods == {"PLAINTEXT"}


BASE = {"base_url": "https://api.schoology.com/v1", **ROLES}


@pytest.mark.parametrize(
    ("job", "params", "field"),
    [(schoology.export_type, {**BASE, "base_url": "http://169.254.169.254/"}, "param.base_url"),
     (schoology.export_type, {"base_url": BASE["base_url"]}, "param"),
     (schoology.sync_notifier_type, {**BASE, "consumer_secret": "a/b"}, "param.consumer_secret"),
     (schoology.sync_notifier_type, {**BASE, "notify": ["a@b.c\nBcc: x@y.z"]}, "param.notify"),
     (schoology.export_type, {**BASE, "group": "G;DROP"}, "param.group"),
     (schoology.export_type, {**BASE, "signature_method": "RSA-SHA1"}, "param.signature_method"),
     (schoology.export_type, {**BASE, "grading_periods": {"CURR": 0}}, "param.grading_periods"),
     (schoology.course_periods_type, {**BASE, "safety": {"max_deleted_pct": 200}}, "param.safety"),
     (schoology.prune_type, {"keep_days": 0}, "param.keep_days"),
     (schoology.prune_type, {"max_rows": 10**9}, "param.max_rows")],
)  # fmt: skip
@pytest.mark.unit
def test_bad_parameters_are_refused_when_the_job_is_saved(job, params: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_params(job.info(), params)
    assert caught.value.field.startswith(field)


async def test_course_period_changes_retry_a_refused_student_and_hold_a_mass_removal(
    run_job: JobRunner, sc: SchoologyStandIn, small_school: None
) -> None:
    pool = await run_job.db.pool()
    a, b, _ = await combined_gradebook(pool, "2", both=True)
    assert (await run_job(EXPORT, params_of(sc), job_id="export")).status == "succeeded"
    # a student of B only (not in Schoology yet) whose username Schoology gives someone else
    newcomer = await pool.fetchrow(
        "SELECT p.id, p.sis_id, coalesce(p.login_id, p.sis_id) AS login FROM sis.people p"
        " WHERE p.status = 'student' AND NOT EXISTS (SELECT 1 FROM sis.enrollments e"
        " WHERE e.person_id = p.id) ORDER BY p.id LIMIT 1"
    )
    await pool.execute(
        "INSERT INTO sis.enrollments (person_id, section_id, status, credits) VALUES ($1, $2, 'enrolled', 3)",
        newcomer["id"], b["id"],
    )  # fmt: skip
    sc.users["1"] = {
        "id": "1",
        "school_uid": "OTHER",
        "username": newcomer["login"],
        "active": True,
    }
    failed = await run_job(PERIODS, params_of(sc), job_id="periods", occurrence_id="c-1")
    assert failed.status == "failed", failed.summary
    assert "is already in use" in failed.text and "not in Schoology yet" in failed.text
    assert newcomer["sis_id"] not in sc.members(a["key"])
    assert len(sc.members(a["key"])) > 1  # B's other students went through
    del sc.users["1"]
    retried = await run_job(PERIODS, params_of(sc), job_id="periods", occurrence_id="c-2")
    assert retried.status == "succeeded", retried.error
    assert "1 changed section(s)" in retried.summary and "1 enrolled" in retried.summary
    assert newcomer["sis_id"] in sc.members(a["key"])

    await pool.execute(
        "UPDATE sis.enrollments SET status = 'dropped' WHERE section_id = $1", b["id"]
    )
    members = dict(sc.members(a["key"]))
    held = await run_job(PERIODS, params_of(sc), job_id="periods", occurrence_id="c-3")
    assert held.status == "held" and "enrolment:" in held.summary, held.summary
    assert sc.members(a["key"]) == members
