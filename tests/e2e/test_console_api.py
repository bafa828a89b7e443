"""The HTTP API against the real services: every endpoint, bad input, roles, tokens, CSRF, audit."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
import yaml
from openapi_spec_validator import validate

pytestmark = pytest.mark.slow

API = "/api/v1"


def token_client(base: str, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=base + API, headers={"Authorization": f"Bearer {token}"}, timeout=20
    )


@pytest.fixture(scope="session")
def admin(console_stack) -> httpx.Client:
    """The bootstrap admin, through a session, then through a token it makes for itself."""
    with httpx.Client(base_url=console_stack.url + API, timeout=20) as session:
        login = session.post(
            "/login", json=dict(zip(("username", "password"), console_stack.admin, strict=True))
        )
        assert login.status_code == 200, login.text
        csrf = login.json()["csrf_token"]
        made = session.post("/tokens", json={"name": "tests"}, headers={"X-CSRF-Token": csrf})
        assert made.status_code == 201, made.text
        token = made.json()["token"]
    client = token_client(console_stack.url, token)
    yield client
    client.close()


@pytest.fixture(scope="session")
def users(console_stack, admin: httpx.Client) -> dict[str, httpx.Client]:
    clients = {"admin": admin}
    for role in ("viewer", "operator", "editor"):
        name = f"{role}1"
        made = admin.post(
            "/users", json={"username": name, "password": f"{role}-password-1", "role": role}
        )
        assert made.status_code == 201, made.text
        token = admin.post("/tokens", json={"name": "t", "username": name}).json()["token"]
        clients[role] = token_client(console_stack.url, token)
    yield clients
    for role in ("viewer", "operator", "editor"):
        clients[role].close()


def canary(title: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "system.canary",
        "title": title,
        "schedule": {"rule": {"kind": "every", "seconds": 3600}, "tz": "UTC"},
        "params": {"message": "hello"},
        **extra,
    }


def form_login(browser: httpx.Client, username: str, password: str) -> httpx.Response:
    """Log in through the console's form, with the token its page hands out."""
    page = browser.get("/login").text
    token = re.search(r'name="login_csrf" value="([^"]+)"', page).group(1)
    return browser.post(
        "/login", data={"username": username, "password": password, "login_csrf": token}
    )


def fields(response: httpx.Response) -> set[str]:
    return {e["field"] for e in response.json().get("errors", [])}


def job_count(client: httpx.Client) -> int:
    return client.get("/jobs", params={"limit": 200}).json()["total"]


def wait_for_run(client: httpx.Client, run_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = client.get(f"/runs/{run_id}")
        if got.status_code == 200 and got.json()["finished_at"]:
            return got.json()
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not finish")


def test_openapi_document_is_published(console_stack) -> None:
    doc = httpx.get(console_stack.url + API + "/openapi.json").json()
    validate(doc)  # the OpenAPI 3.1 meta-schema and the spec's rules, or it raises naming the fault
    assert "/api/v1/jobs" in doc["paths"] and "/api/v1/import" in doc["paths"]
    assert "JobDocument" in doc["components"]["schemas"]
    create = doc["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]
    assert create["schema"]["$ref"] == "#/components/schemas/JobDocument"
    for path in ("/livez", "/readyz"):
        assert httpx.get(console_stack.url + path).status_code == 200, path
    metrics = httpx.get(console_stack.url + "/metrics")
    assert metrics.status_code == 200 and "process_cpu_seconds_total" in metrics.text


def test_job_lifecycle_through_the_api(console_stack, users: dict[str, httpx.Client]) -> None:
    editor = users["editor"]
    types = editor.get("/job-types").json()
    canary_type = next(t for t in types if t["name"] == "system.canary")
    assert "message" in json.dumps(canary_type["params_schema"])

    created = editor.post("/jobs", json=canary(f"Lifecycle {uuid.uuid4().hex[:6]}", priority=700))
    assert created.status_code == 201, created.text
    job = created.json()
    assert created.headers["location"] == f"{API}/jobs/{job['id']}"
    assert job["priority"] == 700 and job["schedule_text"] and job["next_run_at"]

    assert editor.get(f"/jobs/{job['id']}").json()["title"] == job["title"]
    listed = editor.get("/jobs", params={"q": job["title"], "sort": "-priority"}).json()
    assert [i["job"]["id"] for i in listed["items"]] == [job["id"]]

    changed = editor.patch(
        f"/jobs/{job['id']}", json={"title": job["title"] + " v2", "params": {"message": "v2"}}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["title"].endswith(" v2") and changed.json()["params"] == {"message": "v2"}

    preview = editor.get(f"/jobs/{job['id']}/preview", params={"count": 3}).json()
    assert len(preview["times"]) == 3

    assert editor.post(f"/jobs/{job['id']}/pause").json()["paused"] is True
    assert editor.get(f"/jobs/{job['id']}").json()["next_run_at"] is None
    assert editor.post(f"/jobs/{job['id']}/resume").json()["paused"] is False
    # The pause ledger names the authenticated caller, not "someone".
    [span] = console_stack.cli.json("jobs", "why", job["id"])["pauses"]
    assert span["paused_by"] == "editor1" and span["resumed_by"] == "editor1"
    assert span["paused_from"] and span["resumed_from"]

    ran = editor.post(f"/jobs/{job['id']}/run")
    assert ran.status_code == 202, ran.text
    run = wait_for_run(editor, ran.json()["run_id"])
    assert run["status"] == "succeeded" and "canary v2" in run["output_text"]
    assert run["trigger"] == "manual" and run["requested_by"] == "editor1"
    assert run["requested_from"] == "127.0.0.1"
    runs = editor.get("/runs", params={"job_id": job["id"], "status": "succeeded"}).json()["items"]
    assert [r["run_id"] for r in runs] == [run["run_id"]]
    assert listed["items"][0]["last_run"] is None
    last = editor.get("/jobs", params={"q": job["title"]}).json()["items"][0]["last_run"]
    assert last["run_id"] == run["run_id"]

    assert editor.delete(f"/jobs/{job['id']}").status_code == 204
    assert editor.get(f"/jobs/{job['id']}").status_code == 404


def test_list_sorts_filters_and_pages(users: dict[str, httpx.Client]) -> None:
    editor = users["editor"]
    tag = uuid.uuid4().hex[:6]
    for i, prio in enumerate((100, 300, 200)):
        assert (
            editor.post(
                "/jobs", json=canary(f"Page {tag} {i}", priority=prio, paused=i == 2)
            ).status_code
            == 201
        )
    first = editor.get("/jobs", params={"q": tag, "sort": "-priority", "limit": 2})
    assert first.json()["total"] == 3 and first.json()["prev_cursor"] is None
    assert [i["job"]["priority"] for i in first.json()["items"]] == [300, 200]
    next_link = first.json()["links"]["next"]
    assert f'<{next_link}>; rel="next"' in first.headers["link"]
    second = editor.get(next_link.removeprefix("/api/v1")).json()
    assert [i["job"]["priority"] for i in second["items"]] == [100]
    assert second["next_cursor"] is None and second["links"]["prev"]
    for params, field in (
        ({"sort": "owner"}, "sort"),
        ({"limit": 0}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"sort": "title", "cursor": first.json()["next_cursor"]}, "cursor"),
    ):
        refused = editor.get("/jobs", params=params)
        assert refused.status_code == 400, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert [e["field"] for e in refused.json()["errors"]] == [field]
    assert "priority" in editor.get("/jobs", params={"sort": "x"}).json()["errors"][0]["accepted"]
    runs = editor.get("/runs", params={"sort": "-duration_ms", "limit": 1})
    assert runs.status_code == 200, runs.text
    assert editor.get("/runs", params={"sort": "job"}).status_code == 400
    paused = editor.get("/jobs", params={"q": tag, "state": "paused"}).json()
    assert [i["job"]["title"] for i in paused["items"]] == [f"Page {tag} 2"]


def test_bad_input_is_refused_with_field_errors_and_nothing_written(
    users: dict[str, httpx.Client],
) -> None:
    editor = users["editor"]
    before = job_count(editor)
    bad = canary("", priority=-5, params={"nope": 1})
    bad["schedule"] = {"rule": {"kind": "cron", "expr": "61 * * * *"}, "tz": "UTC"}
    refused = editor.post("/jobs", json=bad)
    assert refused.status_code == 422, refused.text
    assert {"title", "priority", "cron", "param.nope"} <= fields(refused)
    assert all(e["message"] for e in refused.json()["errors"])

    wrong_shape = editor.post(
        "/jobs", json={**canary("x"), "schedule": {"rule": {"kind": "weekly"}}}
    )
    assert wrong_shape.status_code == 422 and any(
        f.startswith("schedule") for f in fields(wrong_shape)
    )
    unknown_type = editor.post("/jobs", json={**canary("x"), "type": "no.such.type"})
    assert unknown_type.status_code == 422 and fields(unknown_type) == {"type"}
    with_id = editor.post("/jobs", json={**canary("x"), "id": str(uuid.uuid4())})
    assert with_id.status_code == 422 and fields(with_id) == {"id"}
    not_json = editor.post("/jobs", content=b"{nope", headers={"content-type": "application/json"})
    assert not_json.status_code == 422
    dry = editor.post("/jobs", json=canary("Dry run only"), params={"dry_run": "true"})
    assert dry.status_code == 200 and dry.json() == {"valid": True}
    assert job_count(editor) == before

    job = editor.post("/jobs", json=canary("Bad patch target")).json()
    patch = editor.patch(f"/jobs/{job['id']}", json={"priority": "high", "colour": "red"})
    assert patch.status_code == 422 and fields(patch) == {"colour"}
    patch = editor.patch(f"/jobs/{job['id']}", json={"priority": 2_000_000})
    assert patch.status_code == 422 and fields(patch) == {"priority"}
    assert editor.get(f"/jobs/{job['id']}").json()["priority"] == 500

    assert fields(editor.get("/jobs", params={"sort": "colour"})) == {"sort"}
    assert fields(editor.get("/jobs", params={"limit": "two"})) == {"limit"}
    assert fields(editor.get("/runs", params={"status": "great"})) == {"status"}
    assert fields(editor.get("/runs", params={"from": "yesterday"})) == {"from"}
    assert fields(editor.get("/jobs/not-a-uuid")) == {"id"}
    assert editor.get(f"/jobs/{uuid.uuid4()}").status_code == 404
    assert editor.get(f"/runs/{uuid.uuid4()}").status_code == 404
    assert fields(editor.get(f"/jobs/{job['id']}/preview", params={"count": 0})) == {"count"}


def test_roles_can_do_exactly_what_they_should(users: dict[str, httpx.Client]) -> None:
    editor, operator, viewer, admin = (users[r] for r in ("editor", "operator", "viewer", "admin"))
    job = editor.post("/jobs", json=canary(f"Roles {uuid.uuid4().hex[:6]}")).json()
    jid = job["id"]

    assert viewer.get("/jobs").status_code == 200
    assert viewer.get(f"/jobs/{jid}").status_code == 200
    assert viewer.get("/runs").status_code == 200
    assert viewer.get("/export").status_code == 200
    for response in (
        viewer.post(f"/jobs/{jid}/run"),
        viewer.post(f"/jobs/{jid}/pause"),
        viewer.patch(f"/jobs/{jid}", json={"title": "viewer was here"}),
        viewer.post("/jobs", json=canary("viewer job")),
        viewer.delete(f"/jobs/{jid}"),
        viewer.post("/import", content=b"[]"),
        viewer.get("/users"),
        viewer.get("/audit"),
    ):
        assert response.status_code == 403, response.request.url

    assert operator.post(f"/jobs/{jid}/pause").status_code == 200
    assert operator.patch(f"/jobs/{jid}", json={"paused": False}).json()["paused"] is False
    refused = operator.patch(
        f"/jobs/{jid}", json={"paused": True, "params": {"message": "operator"}}
    )
    assert refused.status_code == 403 and fields(refused) == {"params"}
    assert operator.post("/jobs", json=canary("operator job")).status_code == 403
    assert operator.delete(f"/jobs/{jid}").status_code == 403
    assert operator.post(f"/jobs/{jid}/run").status_code == 202
    assert editor.get("/users").status_code == 403
    assert editor.post("/tokens", json={"name": "mine"}).status_code == 403

    unchanged = viewer.get(f"/jobs/{jid}").json()
    assert unchanged["title"] == job["title"] and unchanged["params"] == {"message": "hello"}
    assert unchanged["paused"] is False

    denied = admin.get("/audit", params={"actor": "operator1", "outcome": "denied"}).json()["items"]
    assert any(e["action"] == "jobs.update" and e["target"] == jid for e in denied)
    assert all(e["client"] == "127.0.0.1" for e in denied)
    paused = admin.get("/audit", params={"action": "jobs.pause", "q": jid}).json()["items"]
    assert paused[0]["before"] == {"paused": False} and paused[0]["after"] == {"paused": True}


def test_tokens_sessions_and_csrf(console_stack, users: dict[str, httpx.Client]) -> None:
    admin = users["admin"]
    base = console_stack.url + API
    assert httpx.get(base + "/jobs").status_code == 401
    assert httpx.post(base + "/jobs", json=canary("anonymous")).status_code == 401
    wrong = httpx.get(base + "/jobs", headers={"Authorization": "Bearer bt_wrong"})
    assert wrong.status_code == 401
    short = admin.post(
        "/tokens", json={"name": "short", "username": "viewer1", "expires_in_days": 0.00002}
    ).json()
    with token_client(console_stack.url, short["token"]) as client:
        assert client.get("/jobs").status_code == 200
        time.sleep(2.0)
        assert client.get("/jobs").status_code == 401
    revoked = admin.post("/tokens", json={"name": "revoked", "username": "viewer1"}).json()
    assert admin.delete(f"/tokens/{revoked['id']}").status_code == 204
    with token_client(console_stack.url, revoked["token"]) as client:
        assert client.get("/jobs").status_code == 401
    listed = admin.get("/tokens").json()
    assert all("token" not in t and "secret_hash" not in t for t in listed)

    with httpx.Client(base_url=base, timeout=20) as session:
        assert (
            session.post(
                "/login", json={"username": "editor1", "password": "wrong password"}
            ).status_code
            == 401
        )
        login = session.post(
            "/login", json={"username": "editor1", "password": "editor-password-1"}
        )
        assert login.status_code == 200
        cookie = login.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie
        before = job_count(session)
        no_csrf = session.post("/jobs", json=canary("csrf-less"))
        assert no_csrf.status_code == 403 and fields(no_csrf) == {"csrf_token"}
        wrong_csrf = session.post(
            "/jobs", json=canary("csrf-wrong"), headers={"X-CSRF-Token": "nope"}
        )
        assert wrong_csrf.status_code == 403
        assert job_count(session) == before
        ok = session.post(
            "/jobs", json=canary("csrf-ok"), headers={"X-CSRF-Token": login.json()["csrf_token"]}
        )
        assert ok.status_code == 201
        assert (
            session.post(
                "/logout", headers={"X-CSRF-Token": login.json()["csrf_token"]}
            ).status_code
            == 204
        )
        assert session.get("/jobs").status_code == 401

    audit = admin.get("/audit", params={"action": "login"}).json()["items"]
    assert any(e["actor"] == "editor1" and e["outcome"] == "failed" for e in audit)
    assert any(e["actor"] == "editor1" and e["outcome"] == "ok" for e in audit)
    assert (
        admin.get("/audit", params={"action": "auth.csrf", "outcome": "denied"}).json()["total"]
        >= 2
    )
    assert admin.get("/audit", params={"action": "auth.token"}).json()["total"] >= 2
    anonymous = admin.get("/audit", params={"action": "auth.anonymous"}).json()["items"]
    assert any("POST /api/v1/jobs" in e["detail"] for e in anonymous)


def test_users_admin(users: dict[str, httpx.Client], console_stack) -> None:
    admin = users["admin"]
    bad = admin.post("/users", json={"username": "bad name", "password": "short", "role": "viewer"})
    assert bad.status_code == 422 and fields(bad) == {"username", "password"}
    bad_role = admin.post(
        "/users", json={"username": "x", "password": "long-enough-1", "role": "root"}
    )
    assert bad_role.status_code == 422 and fields(bad_role) == {"role"}
    assert (
        admin.post(
            "/users", json={"username": "temp1", "password": "temp-password-1", "role": "viewer"}
        ).status_code
        == 201
    )
    dup = admin.post(
        "/users", json={"username": "temp1", "password": "temp-password-1", "role": "viewer"}
    )
    assert dup.status_code == 422 and fields(dup) == {"username"}
    assert admin.patch("/users/temp1", json={"role": "editor"}).json()["role"] == "editor"
    assert admin.patch("/users/temp1", json={"disabled": True}).json()["disabled"] is True
    login = httpx.post(
        console_stack.url + API + "/login",
        json={"username": "temp1", "password": "temp-password-1"},
    )
    assert login.status_code == 401
    assert admin.patch("/users/nobody", json={"role": "viewer"}).status_code == 404

    admin.post(
        "/users", json={"username": "guessme", "password": "right-password-1", "role": "viewer"}
    )
    login_url = console_stack.url + API + "/login"
    for attempt in range(5):
        assert (
            httpx.post(
                login_url, json={"username": "guessme", "password": f"guess {attempt}"}
            ).status_code
            == 401
        )
    # Throttled, not locked: 429 with the wait, and the right password waits too.
    throttled = httpx.post(login_url, json={"username": "guessme", "password": "right-password-1"})
    assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) >= 1
    assert "too many failed logins" in throttled.json()["detail"]
    refusals = admin.get("/audit", params={"actor": "guessme", "outcome": "denied"}).json()
    assert refusals["items"] and "throttled" in refusals["items"][0]["detail"]
    # An admin's new password clears the back-off at once.
    reset = admin.patch("/users/guessme", json={"password": "a-new-right-password-2"})
    assert reset.status_code == 200, reset.text
    fresh = httpx.post(
        login_url, json={"username": "guessme", "password": "a-new-right-password-2"}
    )
    assert fresh.status_code == 200, fresh.text
    names = {u["username"]: u["role"] for u in admin.get("/users").json()}
    assert names["temp1"] == "editor" and "password_hash" not in json.dumps(
        admin.get("/users").json()
    )


def test_export_import_round_trip_dry_run_and_all_or_nothing(
    console_stack, users: dict[str, httpx.Client]
) -> None:
    editor = users["editor"]
    tag = uuid.uuid4().hex[:6]
    daily = canary(f"Export {tag} daily")
    daily["schedule"] = {
        "rule": {"kind": "daily", "times": ["07:30"], "weekdays": ["mon", "wed"]},
        "tz": "America/New_York",
        "start": "2026-01-01T00:00:00-05:00",
        "end": "2036-01-01T00:00:00-05:00",
    }
    for doc in (canary(f"Export {tag} every", priority=900, keep_history_days=None), daily):
        assert editor.post("/jobs", json=doc).status_code == 201

    for fmt in ("yaml", "json"):
        exported = editor.get("/export", params={"format": fmt})
        assert exported.status_code == 200
        dry = editor.post(
            "/import", params={"dry_run": "true", "format": fmt}, content=exported.content
        )
        assert dry.status_code == 200, dry.text
        assert dry.json()["items"] and {i["action"] for i in dry.json()["items"]} == {"unchanged"}
        again = editor.post("/import", params={"format": fmt}, content=exported.content)
        assert again.json()["applied"] is True
        assert editor.get("/export", params={"format": fmt}).text == exported.text

    docs = list(yaml.safe_load_all(editor.get("/export").text))
    mine = [d for d in docs if tag in d["title"]]
    mine[0]["title"] += " renamed"
    fresh = canary(f"Export {tag} new")
    before = job_count(editor)
    text = yaml.safe_dump_all([*mine, fresh], sort_keys=False)
    dry = editor.post("/import", params={"dry_run": "true"}, content=text.encode()).json()
    assert [i["action"] for i in dry["items"]] == ["change", "unchanged", "create"]
    assert dry["applied"] is False and job_count(editor) == before
    assert not any(
        "renamed" in i["job"]["title"]
        for i in editor.get("/jobs", params={"q": tag}).json()["items"]
    )

    bad = canary("", priority=-1)
    invalid = [
        *mine,
        bad,
        "not a document",
        {**fresh, "schedule": {"rule": {"kind": "cron", "expr": "x"}}},
    ]
    refused = editor.post(
        "/import",
        content=json.dumps(invalid).encode(),
        headers={"content-type": "application/json"},
    )
    assert refused.status_code == 422
    errors = {(e["index"], e["field"]) for e in refused.json()["errors"]}
    assert {(2, "title"), (2, "priority"), (4, "cron")} <= errors
    assert any(index == 3 for index, _ in errors)
    assert refused.json()["applied"] is False
    assert job_count(editor) == before
    assert not any(
        "renamed" in i["job"]["title"]
        for i in editor.get("/jobs", params={"q": tag}).json()["items"]
    )

    applied = editor.post("/import", content=text.encode()).json()
    assert applied["applied"] is True and job_count(editor) == before + 1
    titles = {i["job"]["title"] for i in editor.get("/jobs", params={"q": tag}).json()["items"]}
    assert f"Export {tag} new" in titles and any(t.endswith(" renamed") for t in titles)
    changed = (
        users["admin"]
        .get("/audit", params={"action": "jobs.import.change", "q": mine[0]["id"]})
        .json()["items"]
    )
    assert changed[0]["target"] == mine[0]["id"] and changed[0]["actor"] == "editor1"
    assert changed[0]["after"]["title"] == changed[0]["before"]["title"] + " renamed"
    assert editor.post("/import", content=b"{not: [valid").status_code == 422


def test_cli_export_import_uses_the_same_format(
    console_stack, users: dict[str, httpx.Client], tmp_path
) -> None:
    editor = users["editor"]
    editor.post("/jobs", json=canary(f"CLI export {uuid.uuid4().hex[:6]}"))
    path = tmp_path / "jobs.yaml"
    console_stack.cli.run("jobs", "export", "--output", str(path))
    assert yaml.safe_load_all(path.read_text())
    dry = console_stack.cli.run("jobs", "import", str(path), "--dry-run")
    assert "would create 0, change 0" in dry.stdout
    assert path.read_text() == editor.get("/export").text
    path.write_text(path.read_text().replace("priority: 500", "priority: -3", 1))
    bad = console_stack.cli.run("jobs", "import", str(path), check=False)
    assert bad.returncode == 2 and "priority" in bad.stderr and "nothing imported" in bad.stderr


def test_audit_log_is_append_only_in_the_database(
    console_stack, users: dict[str, httpx.Client]
) -> None:
    assert users["admin"].get("/audit").json()["total"] > 0

    async def tamper() -> list[str]:
        conn = await asyncpg.connect(console_stack.database_url)
        refused = []
        try:
            for sql in (
                "UPDATE console.audit SET actor = 'someone else'",
                "DELETE FROM console.audit",
                "TRUNCATE console.audit",
            ):
                try:
                    await conn.execute(sql)
                except asyncpg.PostgresError as exc:
                    refused.append(str(exc))
            return refused
        finally:
            await conn.close()

    refused = asyncio.run(tamper())
    assert len(refused) == 3 and all("append-only" in r for r in refused)


def test_console_pages_render_and_forms_need_their_csrf_token(
    console_stack, users: dict[str, httpx.Client]
) -> None:
    editor = users["editor"]
    job = editor.post("/jobs", json=canary(f"Pages {uuid.uuid4().hex[:6]}")).json()
    run = editor.post(f"/jobs/{job['id']}/run").json()
    wait_for_run(editor, run["run_id"])
    with httpx.Client(base_url=console_stack.url, timeout=20) as browser:
        assert browser.get("/jobs").status_code == 303
        forged = browser.post(
            "/login", data=dict(zip(("username", "password"), console_stack.admin, strict=True))
        )
        assert forged.status_code == 403 and "belltower_session" not in forged.headers.get(
            "set-cookie", ""
        )
        login = form_login(browser, *console_stack.admin)
        assert login.status_code == 303 and "httponly" in login.headers["set-cookie"].lower()
        for path in (
            "/jobs",
            "/jobs?sort=-next_run_at&state=active",
            "/jobs/new",
            "/jobs/new?type=system.canary",
            f"/jobs/{job['id']}",
            f"/jobs/{job['id']}/edit",
            f"/jobs/{job['id']}/delete",
            "/history",
            f"/history?job_id={job['id']}&status=succeeded&from_date=2020-01-01",
            f"/history/{run['run_id']}",
            f"/history/{run['run_id']}/output.html",
            "/transfer",
            "/admin/users",
            "/admin/audit?action=jobs.",
        ):
            page = browser.get(path)
            assert page.status_code == 200, (path, page.text[:500])
        frame = browser.get(f"/history/{run['run_id']}/output.html")
        assert frame.headers["content-security-policy"].startswith("sandbox")

        form = {"title": "forged", "kind": "every", "every": "1h", "tz": "UTC", "priority": "500"}
        before = job_count(editor)
        refused = browser.post("/jobs/new?type=system.canary", data=form)
        assert refused.status_code == 403
        assert browser.post(f"/jobs/{job['id']}/delete", data={}).status_code == 403
        assert job_count(editor) == before and editor.get(f"/jobs/{job['id']}").status_code == 200

        token = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/jobs").text).group(1)
        made = browser.post("/jobs/new?type=system.canary", data={**form, "csrf_token": token})
        assert made.status_code == 303 and job_count(editor) == before + 1
        bad = browser.post(
            "/jobs/new?type=system.canary",
            data={**form, "every": "soon", "priority": "x", "csrf_token": token},
        )
        assert (
            bad.status_code == 422
            and 'id="every-error"' in bad.text
            and 'id="priority-error"' in bad.text
        )
        assert job_count(editor) == before + 1
        deleted = browser.post(f"/jobs/{job['id']}/delete", data={"csrf_token": token})
        assert deleted.status_code == 303 and editor.get(f"/jobs/{job['id']}").status_code == 404


def test_create_user_from_the_command_line(console_stack) -> None:
    import subprocess

    from tests.e2e.conftest import BIN

    name = f"cli{uuid.uuid4().hex[:6]}"
    env = {**console_stack.stack.env, "BELLTOWER_CONSOLE_PASSWORD": "cli-password-12"}
    made = subprocess.run(
        [str(BIN / "belltower-console"), "create-user", name, "--role", "editor"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    assert f"created user {name} (editor)" in made.stdout
    bad = subprocess.run(
        [str(BIN / "belltower-console"), "create-user", "no spaces", "--role", "boss"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "username" in bad.stderr and "role" in bad.stderr
    login = httpx.post(
        console_stack.url + API + "/login", json={"username": name, "password": "cli-password-12"}
    )
    assert login.status_code == 200


def test_an_admin_issues_a_oneroster_client_from_the_command_line(console_stack) -> None:
    """The client credentials it prints get an access token, and are no API token."""
    import subprocess

    from tests.e2e.conftest import BIN

    made = subprocess.run(
        [str(BIN / "belltower-console"), "create-oneroster-client", "Test LMS", "--days", "1"],
        env=console_stack.stack.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    lines = dict(line.split("=", 1) for line in made.stdout.split())
    assert "'oneroster: Test LMS' for admin" in made.stderr
    token = httpx.post(
        console_stack.url + "/ims/oneroster/token", data={"grant_type": "client_credentials"},
        auth=(lines["client_id"], lines["client_secret"]),
    )  # fmt: skip
    assert token.status_code == 200, token.text
    assert token.json()["expires_in"] == 3600 and token.json()["access_token"].startswith("ora.")
    as_api = httpx.get(
        console_stack.url + API + "/me",
        headers={"Authorization": f"Bearer {lines['client_secret']}"},
    )
    assert as_api.status_code == 401


def test_editing_in_the_console_keeps_what_the_form_cannot_show(
    console_stack, users: dict[str, httpx.Client]
) -> None:
    editor = users["editor"]
    schedule = {
        "rule": {"kind": "weekly", "weekdays": ["mon", "thu"], "times": ["07:30"]},
        "tz": "America/New_York",
        "window": {"start": "07:00", "end": "17:00"},
    }
    job = editor.post(
        "/jobs",
        json=canary(
            f"Weekly {uuid.uuid4().hex[:6]}",
            schedule=schedule,
            result_emails=["registrar@school.edu"],
            retries=2,
            max_runs=5,
        ),
    )
    assert job.status_code in (200, 201), job.text
    job = job.json()
    with httpx.Client(base_url=console_stack.url, timeout=20) as browser:
        form_login(browser, *console_stack.admin)
        page = browser.get(f"/jobs/{job['id']}/edit").text
        assert "Keep the current schedule: " in page
        assert re.search(r'name="max_runs" type="number"[^>]* value="5"', page)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        shown = re.search(r'name="result_emails" value="([^"]*)"', page).group(1)
        assert shown == "registrar@school.edu"
        form = {"title": "Weekly renamed", "kind": "keep", "tz": "America/New_York",
                "priority": "500", "keep_history": "30", "result_emails": shown,
                "csrf_token": token}  # fmt: skip
        saved = browser.post(f"/jobs/{job['id']}/edit", data=form)
        assert saved.status_code == 303, saved.text[:500]
    after = editor.get(f"/jobs/{job['id']}").json()
    assert after["title"] == "Weekly renamed"
    assert after["schedule"]["rule"] == job["schedule"]["rule"]
    assert after["schedule"]["window"] == {"start": "07:00", "end": "17:00"}
    assert after["result_emails"] == ["registrar@school.edu"] and after["retries"] == 2
    assert after["max_runs"] == 5  # the form above had no such field: left as it was

    with httpx.Client(base_url=console_stack.url, timeout=20) as browser:
        form_login(browser, *console_stack.admin)
        page = browser.get(f"/jobs/{job['id']}/edit").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        form |= {"csrf_token": token, "max_runs": "", "pause_after_failures": "4"}
        refused = browser.post(f"/jobs/{job['id']}/edit", data=form | {"alert_after_failures": "0"})
        assert refused.status_code == 422 and "whole number from 1 to" in refused.text
        saved = browser.post(f"/jobs/{job['id']}/edit", data=form | {"alert_after_failures": "2"})
        assert saved.status_code == 303, saved.text[:500]
    after = editor.get(f"/jobs/{job['id']}").json()
    assert (after["max_runs"], after["alert_after_failures"], after["pause_after_failures"]) == (
        None, 2, 4,
    )  # fmt: skip


def test_admins_change_the_site_settings_and_only_they_can(
    console_stack, admin: httpx.Client, users: dict[str, httpx.Client]
) -> None:
    editor = users["editor"]
    assert editor.get("/settings").status_code == 403
    assert editor.patch("/settings", json={"result_mail_only_failures": True}).status_code == 403
    assert admin.get("/settings").json() == {"result_mail_only_failures": None}
    try:
        changed = admin.patch("/settings", json={"result_mail_only_failures": True})
        assert changed.status_code == 200 and changed.json() == {"result_mail_only_failures": True}
        assert admin.get("/settings").json() == {"result_mail_only_failures": True}
        refused = admin.patch("/settings", json={"result_mail_only_failures": "sometimes"})
        assert refused.status_code == 422 and "result_mail_only_failures" in fields(refused)
        entry = admin.get("/audit", params={"action": "settings.update"}).json()["items"][0]
        assert entry["before"] == {"result_mail_only_failures": None}
        assert entry["after"] == {"result_mail_only_failures": True}
        with httpx.Client(base_url=console_stack.url, timeout=20) as browser:
            form_login(browser, *console_stack.admin)
            page = browser.get("/admin/settings")
            assert page.status_code == 200
            assert '<option value="true" selected>' in page.text
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
            saved = browser.post(
                "/admin/settings", data={"result_mail_only_failures": "false", "csrf_token": token}
            )
            assert saved.status_code == 303
        assert admin.get("/settings").json() == {"result_mail_only_failures": False}
    finally:
        admin.patch("/settings", json={"result_mail_only_failures": None})
    assert admin.get("/settings").json() == {"result_mail_only_failures": None}


def test_run_now_while_a_run_is_going_and_an_on_demand_job_from_the_form(
    console_stack, users: dict[str, httpx.Client]
) -> None:
    editor = users["editor"]
    slow = canary(
        f"Slow {uuid.uuid4().hex[:6]}",
        schedule={"rule": {"kind": "on_demand"}, "tz": "UTC"},
        params={"sleep_s": 5},
    )
    job = editor.post("/jobs", json=slow).json()
    assert job["schedule_text"].startswith("on demand only") and job["next_run_at"] is None
    assert editor.get(f"/jobs/{job['id']}/preview").json()["times"] == []
    first = editor.post(f"/jobs/{job['id']}/run")
    assert first.status_code == 202 and first.json()["state"] == "dispatched"

    refused = editor.post(f"/jobs/{job['id']}/run")
    assert refused.status_code == 409, refused.text
    assert f"run {first.json()['run_id']} of this job" in refused.json()["detail"]
    with httpx.Client(base_url=console_stack.url, timeout=20) as browser:
        form_login(browser, *console_stack.admin)
        page = browser.get(f"/jobs/{job['id']}").text
        assert "On demand: nothing is scheduled" in page
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        shown = browser.post(f"/jobs/{job['id']}/run", data={"csrf_token": token})
        assert shown.status_code == 409 and 'id="run-refused"' in shown.text
        assert 'name="force" value="1"' in shown.text and "Run anyway" in shown.text

        made = browser.post(
            "/jobs/new?type=system.canary",
            data={
                "title": f"By hand {uuid.uuid4().hex[:6]}",
                "kind": "on_demand",
                "tz": "UTC",
                "priority": "500",
                "csrf_token": token,
            },
        )
        assert made.status_code == 303, made.text[:500]
        created = editor.get(made.headers["location"].split("?")[0])
        assert created.json()["schedule"]["rule"] == {"kind": "on_demand"}
        edit = browser.get(f"{made.headers['location'].split('?')[0]}/edit").text
        assert '<option value="on_demand" selected>' in edit

    forced = editor.post(f"/jobs/{job['id']}/run", params={"force": "true"})
    assert forced.status_code == 202, forced.text
    assert wait_for_run(editor, forced.json()["run_id"])["status"] == "succeeded"
    audit = users["admin"].get("/audit", params={"action": "jobs.run_now"}).json()["items"]
    expected = {"run_id": forced.json()["run_id"], "state": "dispatched", "force": True}
    assert any(a["after"] == expected for a in audit)


def test_a_held_run_is_released_once_by_an_editor_and_the_release_is_audited(
    console_stack, users: dict[str, httpx.Client]
) -> None:
    """A held run (as a roster sync over its safety thresholds leaves it in history): a viewer
    may not release it; an editor's release starts one run of the job; a second release, by
    API or CLI, is refused naming the first and starts nothing."""
    editor = users["editor"]
    job = editor.post(
        "/jobs",
        json=canary(
            f"Held {uuid.uuid4().hex[:6]}", schedule={"rule": {"kind": "on_demand"}, "tz": "UTC"}
        ),
    ).json()
    held = str(uuid.uuid4())

    async def insert() -> None:
        conn = await asyncpg.connect(console_stack.database_url)
        try:
            await conn.execute(
                "INSERT INTO history.runs (occurrence_id, run_id, job_id, job_type, job_title, pool,"
                " status, trigger, priority, scheduled_for, dispatched_at, started_at, finished_at,"
                " summary, output_text, error) VALUES ($1, $1, $2, 'system.canary', $3, 'notifier',"
                " 'held', 'schedule', 500, now(), now(), now(), now(), 'held', 'enrolments: ...', 'held')",
                uuid.UUID(held), uuid.UUID(job["id"]), job["title"],
            )  # fmt: skip
        finally:
            await conn.close()

    asyncio.run(insert())
    listed = editor.get("/runs", params={"job_id": job["id"], "status": "held"}).json()["items"]
    assert [r["run_id"] for r in listed] == [held]
    assert "release:" in console_stack.cli.run("runs", "show", held).stdout

    with httpx.Client(base_url=console_stack.url, timeout=20) as browser:
        form_login(browser, *console_stack.admin)
        page = browser.get(f"/history/{held}").text
        assert f'action="/history/{held}/release"' in page and "Held" in page

    denied = users["viewer"].post(f"/runs/{held}/release")
    assert denied.status_code == 403, denied.text
    assert users["editor"].post("/runs/not-a-uuid/release").status_code in (400, 422)
    released = editor.post(f"/runs/{held}/release")
    assert released.status_code == 200, released.text
    body = released.json()
    assert body["first"] is True and body["released_by"] == "editor1" and body["release_run_id"]
    assert wait_for_run(editor, body["release_run_id"])["requested_by"] == "editor1"

    again = editor.post(f"/runs/{held}/release")
    assert again.status_code == 409, again.text
    assert "released already by editor1" in again.json()["detail"]
    cli = console_stack.cli.run("runs", "release", held, check=False)
    assert cli.returncode != 0 and "released already by editor1" in cli.stderr + cli.stdout
    runs = editor.get("/runs", params={"job_id": job["id"]}).json()["items"]
    assert len(runs) == 2  # the held run and the one release started
    audit = users["admin"].get("/audit", params={"action": "runs.release"}).json()["items"]
    outcomes = sorted(a["outcome"] for a in audit if a["target"] == held)
    assert outcomes == ["denied", "failed", "failed", "ok"]
    doc = httpx.get(console_stack.url + API + "/openapi.json").json()
    assert "post" in doc["paths"]["/api/v1/runs/{run_id}/release"]


STAGED_COUNT = 1_300
"""Three batches of 500: more than the 1,000 documents a single request takes."""


def tagged(client: httpx.Client, tag: str) -> int:
    return int(client.get("/jobs", params={"q": tag, "limit": 1}).json()["total"])


def test_a_large_import_lands_whole_or_not_at_all(console_stack, users, tmp_path) -> None:  # type: ignore[no-untyped-def]
    editor = users["editor"]
    tag = uuid.uuid4().hex[:8]
    documents = [canary(f"Staged {tag} {i:05d}", paused=True) for i in range(STAGED_COUNT)]
    documents[-1]["priority"] = -5  # one bad document in the last batch
    path = tmp_path / "jobs.json"
    path.write_text(json.dumps(documents))
    bad = console_stack.cli.run("jobs", "import", str(path), check=False)
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert f"document {STAGED_COUNT}: priority" in bad.stderr and "nothing imported" in bad.stderr
    assert "importing 500 of 1300 documents" in bad.stderr, bad.stderr
    assert tagged(editor, tag) == 0, "the batches staged before the bad one were not applied"

    documents[-1]["priority"] = 5
    documents[10]["id"] = documents[900]["id"] = str(uuid.uuid4())  # one job twice, two batches
    path.write_text(json.dumps(documents))
    twice = console_stack.cli.run("jobs", "import", str(path), "--json", check=False)
    assert twice.returncode == 2 and "appears in more than one document" in twice.stdout
    assert tagged(editor, tag) == 0

    del documents[900]["id"]
    streamed = editor.post(
        "/import",
        content=json.dumps(documents),
        headers={"Content-Type": "application/json", "Accept": "application/x-ndjson"},
        timeout=120,
    )
    lines = [json.loads(line) for line in streamed.text.splitlines()]
    assert [line["progress"]["done"] for line in lines[:-1]] == [500, 1000, 1300]
    result = lines[-1]["result"]
    assert result["applied"] and len(result["items"]) == STAGED_COUNT and not result["errors"]
    assert tagged(editor, tag) == STAGED_COUNT
    audit = users["admin"].get("/audit", params={"action": "jobs.import", "limit": 5}).json()
    assert any(f"create {STAGED_COUNT}" in (e["detail"] or "") for e in audit["items"])
    viewer = users["viewer"].post(
        "/import", content="[]", headers={"Accept": "application/x-ndjson"}
    )
    assert viewer.status_code == 403
