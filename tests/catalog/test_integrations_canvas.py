"""Canvas LMS export through the SIS Import API, against a stand-in built to Canvas's contract."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator

import pytest

from belltower.errors import ConfigurationError
from belltower_dev.standins.canvas import CanvasStandIn
from belltower_integration.canvas import CanvasClient, CsvFile, bundle


@pytest.fixture
def canvas() -> Iterator[CanvasStandIn]:
    with CanvasStandIn(polls_until_done=2) as server:
        yield server


def small_bundle(role: str = "student") -> bytes:
    return bundle(
        [
            CsvFile("users.csv", ["user_id", "login_id", "first_name", "last_name", "status"],
                    [["S1", "s1", "Ada", "Lovelace", "active"], ["F1", "f1", "Alan", "Turing", "active"]]),
            CsvFile("courses.csv", ["course_id", "short_name", "long_name", "status"],
                    [["MATH101-FA26", "MATH101", "Calculus I", "active"]]),
            CsvFile("sections.csv", ["section_id", "course_id", "name", "status"],
                    [["MATH101-FA26-01", "MATH101-FA26", "MATH101 01", "active"]]),
            CsvFile("enrollments.csv", ["course_id", "section_id", "user_id", "role", "status"],
                    [["MATH101-FA26", "MATH101-FA26-01", "S1", role, "active"],
                     ["MATH101-FA26", "MATH101-FA26-01", "F1", "teacher", "active"]]),
        ]
    )  # fmt: skip


async def test_client_posts_a_bundle_and_polls_until_imported(canvas: CanvasStandIn) -> None:
    polled: list[str] = []

    async def on_poll(state: dict) -> None:
        polled.append(state["workflow_state"])

    async with CanvasClient(canvas.url, canvas.token) as client:
        created = await client.start_import("self", small_bundle())
        assert created["workflow_state"] == "created"
        final = await client.wait(
            "self", created["id"], timeout_s=30, first_delay_s=0.05, on_poll=on_poll
        )
    assert polled == ["importing", "imported"]
    assert final["data"]["counts"]["enrollments"] == 2
    received = canvas.imports[created["id"]]
    assert received.params["import_type"] == "instructure_csv"
    assert received.files["users.csv"][0] == {
        "user_id": "S1", "login_id": "s1", "first_name": "Ada", "last_name": "Lovelace", "status": "active"
    }  # fmt: skip
    assert received.errors == []


async def test_a_bundle_canvas_rejects_ends_failed_with_its_messages(canvas: CanvasStandIn) -> None:
    async with CanvasClient(canvas.url, canvas.token) as client:
        created = await client.start_import("self", small_bundle(role="headmaster"))
        final = await client.wait("self", created["id"], timeout_s=30, first_delay_s=0.05)
    assert final["workflow_state"] == "failed_with_messages"
    assert final["processing_errors"] == [["enrollments.csv", "line 2: improper role 'headmaster'"]]


async def test_a_wrong_token_is_a_configuration_error_naming_the_secret(
    canvas: CanvasStandIn,
) -> None:
    async with CanvasClient(
        canvas.url, "expired", token_name="the secret 'canvas-token'"
    ) as client:
        with pytest.raises(
            ConfigurationError, match=r"Invalid access token.*secret 'canvas-token'"
        ):
            await client.start_import("self", small_bundle())
    assert canvas.imports == {}


def test_bundle_refuses_a_file_without_canvas_required_columns() -> None:
    with pytest.raises(ValueError, match=r"users\.csv lacks required column"):
        bundle([CsvFile("users.csv", ["user_id", "status"], [["S1", "active"]])])
    data = small_bundle()
    assert sorted(zipfile.ZipFile(io.BytesIO(data)).namelist()) == [
        "courses.csv", "enrollments.csv", "sections.csv", "users.csv"
    ]  # fmt: skip


@pytest.fixture
async def env(sis_database: str, tmp_batch_folder, mail_sink):
    from tests.catalog.integrations_support import open_env

    e = await open_env(sis_database, tmp_batch_folder, mail_sink.port)
    yield e
    await e.db.close()


async def test_canvas_export_sends_the_current_terms_and_follows_the_import(
    env, canvas: CanvasStandIn, tmp_batch_folder, monkeypatch
) -> None:
    from belltower_integration.jobs import canvas_export

    monkeypatch.setenv("BELLTOWER_SECRET_CANVAS_TOKEN", canvas.token)
    run = await env.run(canvas_export.job_type, {"base_url": canvas.url})
    [received] = canvas.imports.values()
    assert received.errors == [] and received.states == ["importing", "imported"]
    terms = await env.fetch(
        "SELECT code FROM sis.terms WHERE ends_on >= current_date AND starts_on <= current_date + 30 ORDER BY code"
    )
    assert sorted(t["term_id"] for t in received.files["terms.csv"]) == [t["code"] for t in terms]
    sections = await env.fetchval(
        "SELECT count(*) FROM sis.sections s JOIN sis.terms t ON t.id = s.term_id WHERE t.code = ANY($1)",
        [t["code"] for t in terms],
    )
    assert len(received.files["sections.csv"]) == sections > 0
    enrollments = received.files["enrollments.csv"]
    students = {e["user_id"] for e in enrollments if e["role"] == "student"}
    teachers = {e["user_id"] for e in enrollments if e["role"] == "teacher"}
    assert students and teachers
    assert {u["user_id"] for u in received.files["users.csv"]} == students | teachers
    section_ids = {s["section_id"] for s in received.files["sections.csv"]}
    assert all(e["section_id"] in section_ids for e in enrollments)
    assert [p[2] for p in run.progress][-1] == "Canvas import 1 imported"
    assert run.output.summary.startswith("Canvas SIS import 1 imported:")
    assert canvas.token not in run.text and canvas.token not in run.html
    [copy] = (tmp_batch_folder / "canvas").iterdir()
    assert zipfile.ZipFile(copy).read("users.csv").startswith(b"user_id,login_id")
    again = await env.run(canvas_export.job_type, {"base_url": canvas.url, "keep_copy": False})
    assert canvas.imports[2].files == received.files
    assert again.output.summary.startswith("Canvas SIS import 2 imported:")


async def test_canvas_export_fails_clearly_on_a_refused_token(
    env, canvas: CanvasStandIn, monkeypatch
) -> None:
    from belltower_integration.jobs import canvas_export

    monkeypatch.setenv("BELLTOWER_SECRET_LMS_TOKEN", "wrong")
    run = await env.run(canvas_export.job_type, {"base_url": canvas.url, "token_secret": "lms-token"},
                        raises=ConfigurationError)  # fmt: skip
    assert "Invalid access token" in str(run.error) and "'lms-token'" in str(run.error)
    assert "wrong" not in str(run.error) and canvas.imports == {}


async def test_canvas_export_rides_out_throttling_and_fails_with_canvas_messages(
    env, tmp_batch_folder, monkeypatch
) -> None:
    from belltower.errors import JobFailed
    from belltower_integration.jobs import canvas_export

    with CanvasStandIn(throttle_first=1, fail_with="Term FA26 is locked") as server:
        monkeypatch.setenv("BELLTOWER_SECRET_CANVAS_TOKEN", server.token)
        run = await env.run(canvas_export.job_type, {"base_url": server.url, "keep_copy": False},
                            raises=JobFailed)  # fmt: skip
        assert [m for m, _ in server.requests].count("POST") == 2  # the 429, then the import
    assert (
        str(run.error)
        == "Canvas SIS import 1 ended 'failed_with_messages': sis_import: Term FA26 is locked"
    )
    assert run.output.summary == "Canvas SIS import 1 ended failed_with_messages"
    assert "failed    sis_import  Term FA26 is locked" in run.text
    assert not (tmp_batch_folder / "canvas").exists()


async def test_canvas_export_imported_with_messages_succeeds_and_lists_the_warnings(
    env, monkeypatch
) -> None:
    from belltower_integration.jobs import canvas_export

    with CanvasStandIn(warn_with="user S000123 has no e-mail address") as server:
        monkeypatch.setenv("BELLTOWER_SECRET_CANVAS_TOKEN", server.token)
        run = await env.run(canvas_export.job_type, {"base_url": server.url, "keep_copy": False})
    assert run.output.summary.startswith("Canvas SIS import 1 imported_with_messages:")
    assert "skipped   users.csv  user S000123 has no e-mail address" in run.text
    assert ", 1 skipped, 0 failed" in run.text


async def test_canvas_export_is_held_before_sending_a_bundle_that_drops_too_many_enrollments(
    env, canvas: CanvasStandIn, monkeypatch
) -> None:
    from belltower.errors import RunHeld
    from belltower_integration.jobs import canvas_export

    monkeypatch.setenv("BELLTOWER_SECRET_CANVAS_TOKEN", canvas.token)
    params = {"base_url": canvas.url, "keep_copy": False}
    await env.run(canvas_export.job_type, params)
    await env.execute("UPDATE sis.enrollments SET status = 'dropped' WHERE id % 4 = 0")
    held = await env.run(canvas_export.job_type, params, raises=RunHeld)
    assert "enrolment: " in str(held.error) and "would be deleted" in str(held.error)
    assert len(canvas.imports) == 1  # the second bundle never left
    lenient = {**params, "safety": {"max_deleted_pct": 50}}
    await env.run(canvas_export.job_type, lenient)
    assert len(canvas.imports) == 2
    dropped = [e for e in canvas.imports[2].files["enrollments.csv"] if e["status"] == "deleted"]
    assert dropped
