"""Hostile and careless input against the real console: every probe is a 4xx problem document
(RFC 9457), never a 500, and nothing is written."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from belltower_dev.localservers import NatsServer, bound_to_parent, free_port

from .conftest import BIN

pytestmark = pytest.mark.slow

API = "/api/v1"


def canary(title: str) -> dict[str, Any]:
    return {
        "type": "system.canary",
        "title": title,
        "schedule": {"rule": {"kind": "every", "seconds": 3600}, "tz": "UTC"},
        "params": {"message": "hello"},
    }


@pytest.fixture(scope="module")
def admin(console_stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=console_stack.url + API, timeout=30) as session:
        login = session.post(
            "/login", json=dict(zip(("username", "password"), console_stack.admin, strict=True))
        )
        assert login.status_code == 200, login.text
        made = session.post(
            "/tokens",
            json={"name": "hostile tests"},
            headers={"X-CSRF-Token": login.json()["csrf_token"]},
        )
        assert made.status_code == 201, made.text
        token = made.json()["token"]
    with httpx.Client(
        base_url=console_stack.url + API, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as client:
        yield client


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The response is a problem document of this status; returns its body."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["status"] == status and body["type"].startswith("urn:belltower:problem:")
    assert body["title"] and body["detail"]
    return body


def fields(body: dict[str, Any]) -> set[str]:
    return {e["field"] for e in body.get("errors", [])}


def job_titles(client: httpx.Client) -> list[str]:
    listed = client.get("/jobs", params={"limit": 200})
    assert listed.status_code == 200, listed.text
    return [item["job"]["title"] for item in listed.json()["items"]]


def test_oversized_deep_and_exploding_bodies_are_refused_before_anything_runs(admin) -> None:
    before = job_titles(admin)
    huge = json.dumps([canary("x" * 100)] * 60_000).encode()
    assert len(huge) > 10_000_000
    body = problem(
        admin.post("/import", content=huge, headers={"content-type": "application/json"}), 413
    )
    assert "larger than" in body["detail"] and "MAX_IMPORT_BYTES" in body["detail"]
    assert job_titles(admin) == before, "nothing of it imported"
    # Elsewhere the general limit (4 MiB) holds.
    problem(
        admin.post("/jobs", content=huge[:5_000_000], headers={"content-type": "application/json"}),
        413,
    )

    deep = b"[" * 1000 + b"]" * 1000
    refused = problem(
        admin.post("/jobs", content=deep, headers={"content-type": "application/json"}), 422
    )
    assert "nested" in refused["detail"]
    deep_object = ('{"a":' * 100 + "1" + "}" * 100).encode()
    problem(
        admin.post("/jobs", content=deep_object, headers={"content-type": "application/json"}), 422
    )

    bomb = "\n".join(
        ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
        + [
            f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 10) + "]"
            for i in range(8)
        ]
    )
    started = time.monotonic()
    refused = problem(
        admin.post("/import", content=bomb.encode(), headers={"content-type": "application/yaml"}),
        422,
    )
    assert time.monotonic() - started < 5
    assert "expands to more than" in refused["detail"]
    assert job_titles(admin) == before


@pytest.mark.parametrize(
    ("raw_title", "why"),
    [
        ('"bad\\u0000title"', "NUL"),
        ('"bad\\ud800title"', "surrogate"),
        ('"Nightly\\r\\nBcc: everyone@example.org"', "control character"),
        ('"tab\\there"', "control character"),
    ],
)
def test_titles_with_nul_surrogates_or_control_characters_name_the_field(
    admin, raw_title: str, why: str
) -> None:
    before = job_titles(admin)
    document = json.dumps(canary("PLACEHOLDER")).replace('"PLACEHOLDER"', raw_title)
    body = problem(
        admin.post("/jobs", content=document, headers={"content-type": "application/json"}), 422
    )
    assert fields(body) == {"title"} and why in body["errors"][0]["message"]
    imported = problem(
        admin.post(
            "/import", content=f"[{document}]", headers={"content-type": "application/json"}
        ),
        422,
    )
    assert fields(imported) == {"0.title"}
    assert job_titles(admin) == before


def test_the_scheduler_refuses_a_title_with_a_line_break_from_any_client(console_stack) -> None:
    result = console_stack.cli.run(
        "jobs",
        "create",
        "--type",
        "system.canary",
        "--title",
        "two\nlines",
        "--every",
        "1h",
        "--param",
        "message=hi",
        check=False,
    )
    assert result.returncode != 0
    assert "title" in result.stderr + result.stdout and "control character" in (
        result.stderr + result.stdout
    )


def test_user_names_and_logins_with_hidden_characters(admin, console_stack) -> None:
    for name in ("admin\n", "evil\x00", "tab\tname"):
        body = problem(
            admin.post(
                "/users",
                json={"username": name, "password": "a-good-passphrase-9", "role": "viewer"},
            ),
            422,
        )
        assert fields(body) == {"username"}
    assert "admin\n" not in [u["username"] for u in admin.get("/users").json()]

    anonymous = httpx.post(
        console_stack.url + API + "/login",
        json={"username": "admin\n", "password": console_stack.admin[1]},
        timeout=30,
    )
    assert anonymous.status_code in (401, 422), anonymous.text
    problem(anonymous, anonymous.status_code)
    nul = httpx.post(
        console_stack.url + API + "/login",
        content=b'{"username": "ad\\u0000min", "password": "x"}',
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert fields(problem(nul, 422)) == {"username"}


def test_query_strings_with_nul_and_out_of_range_dates(admin) -> None:
    job = admin.post("/jobs", json=canary("Hostile preview target"))
    assert job.status_code == 201, job.text
    job_id = job.json()["id"]
    for value in ("9999-12-31T23:59:59", "0001-01-01T00:00:00", "9999-12-31T23:59:59-14:00"):
        body = problem(admin.get(f"/jobs/{job_id}/preview", params={"from": value}), 422)
        assert fields(body) == {"from"}
        assert fields(problem(admin.get("/runs", params={"to": value}), 422)) == {"to"}
        assert fields(problem(admin.get("/audit", params={"from": value}), 422)) == {"from"}
    assert admin.get(f"/jobs/{job_id}/preview", params={"from": "2030-01-01T00:00:00Z"}).is_success
    assert fields(problem(admin.get("/audit", params={"actor": "a\x00b"}), 422)) == {"actor"}
    assert fields(problem(admin.get("/jobs", params={"q": "\x00"}), 422)) == {"q"}
    assert fields(problem(admin.get("/runs", params={"limit": str(10**30)}), 400)) == {"limit"}
    problem(admin.get("/audit", params={"offset": str(2**63)}), 422)
    problem(admin.get("/jobs/%00"), 422)


def test_every_error_is_a_problem_document(admin, console_stack) -> None:
    anonymous = httpx.get(console_stack.url + API + "/jobs", timeout=30)
    problem(anonymous, 401)
    assert anonymous.headers["www-authenticate"] == "Bearer"
    problem(admin.get("/jobs/00000000-0000-4000-8000-000000000000"), 404)
    problem(admin.get("/no-such-operation"), 404)
    problem(admin.put("/jobs"), 405)
    refused = problem(
        admin.post("/jobs", content=b"{nope", headers={"content-type": "application/json"}), 422
    )
    assert refused["errors"]
    problem(admin.post("/users", json={"username": "x"}), 422)


def test_a_console_behind_a_trusted_proxy_records_the_real_client_and_secures_cookies(
    console_stack, admin
) -> None:
    proc, base = start_console(console_stack, BELLTOWER_CONSOLE_TRUSTED_PROXIES="127.0.0.0/8, ::1")
    try:
        login = httpx.post(
            base + API + "/login",
            json=dict(zip(("username", "password"), console_stack.admin, strict=True)),
            headers={
                "X-Forwarded-For": "203.0.113.9, 198.51.100.7, 127.0.0.1",
                "X-Forwarded-Proto": "https",
            },
            timeout=30,
        )
        assert login.status_code == 200, login.text
        cookie = login.headers["set-cookie"].lower()
        assert "secure" in cookie and "httponly" in cookie
        # The nearest untrusted hop is the client; what it claims further left is not believed.
        entries = admin.get("/audit", params={"action": "login", "actor": "admin"}).json()["items"]
        assert entries[0]["client"] == "198.51.100.7"

        plain = httpx.post(
            console_stack.url + API + "/login",
            json=dict(zip(("username", "password"), console_stack.admin, strict=True)),
            headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"},
            timeout=30,
        )
        assert plain.status_code == 200
        assert "secure" not in plain.headers["set-cookie"].lower()
        entries = admin.get("/audit", params={"action": "login", "actor": "admin"}).json()["items"]
        assert entries[0]["client"] == "127.0.0.1"
    finally:
        stop(proc)


def start_console(console_stack, **extra: str) -> tuple[subprocess.Popen[bytes], str]:
    """A second console over the same database, with extra settings; returns it and its URL."""
    port = free_port()
    env = {
        **console_stack.stack.env,
        "BELLTOWER_CONSOLE_PORT": str(port),
        "BELLTOWER_HEALTH_PORT": str(free_port()),
        **extra,
    }
    log = (console_stack.stack.logs / f"console-{port}.log").open("ab")
    proc = subprocess.Popen(
        bound_to_parent([BIN / "belltower-console"]), env=env, stdout=log, stderr=subprocess.STDOUT
    )
    log.close()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise AssertionError(
                f"console did not start: {console_stack.stack.log(f'console-{port}')}"
            )
        time.sleep(0.2)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def test_readyz_answers_503_naming_nats_when_it_is_gone(console_stack) -> None:
    ready = httpx.get(console_stack.url + "/readyz", timeout=10)
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}
    with NatsServer() as nats:
        proc, base = start_console(console_stack, BELLTOWER_NATS_URL=nats.url)
        try:
            nats.stop()
            deadline = time.monotonic() + 20
            while (answer := httpx.get(base + "/readyz", timeout=10)).status_code == 200:
                assert time.monotonic() < deadline, "readyz stayed 200 without NATS"
                time.sleep(0.2)
            body = problem(answer, 503)
            assert "nats" in body["detail"] and "database" not in body["detail"]
        finally:
            stop(proc)


def test_one_address_guessing_many_accounts_is_slowed_down_and_others_are_not(
    console_stack, admin
) -> None:
    proc, base = start_console(console_stack, BELLTOWER_CONSOLE_TRUSTED_PROXIES="127.0.0.1")
    try:

        def login(name: str, password: str, address: str) -> httpx.Response:
            return httpx.post(
                base + API + "/login",
                json={"username": name, "password": password},
                headers={"X-Forwarded-For": address},
                timeout=30,
            )

        attacker = "203.0.113.66"
        answers = [login(f"guess{i}", "not the password", attacker).status_code for i in range(21)]
        assert answers[:20] == [401] * 20 and answers[20] == 429
        throttled = login("admin", console_stack.admin[1], attacker)
        assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) >= 1
        # The admin, from elsewhere, logs in as usual: nobody was locked out.
        assert login("admin", console_stack.admin[1], "198.51.100.20").status_code == 200
    finally:
        stop(proc)


def test_password_policy_and_a_new_password_revoking_sessions_and_tokens(
    admin, console_stack
) -> None:
    for password, why in (
        ("          ", "whitespace"),
        ("zzzzzzzzzzzz", "repeated"),
        ("qwertyuiop", "common"),
        ("policyuser123", "user name"),
        ("x" * 257 + "y", "longer than"),
        ("short", "shorter than"),
    ):
        body = problem(
            admin.post(
                "/users", json={"username": "policyuser", "password": password, "role": "viewer"}
            ),
            422,
        )
        assert fields(body) == {"password"} and why in body["errors"][0]["message"], body
    made = admin.post(
        "/users",
        json={"username": "policyuser", "password": "staple-orbit-lantern", "role": "viewer"},
    )
    assert made.status_code == 201, made.text
    problem(admin.patch("/users/policyuser", json={"password": "1234567890"}), 422)

    token = admin.post("/tokens", json={"name": "script", "username": "policyuser"}).json()
    session = httpx.Client(base_url=console_stack.url + API, timeout=30)
    assert (
        session.post(
            "/login", json={"username": "policyuser", "password": "staple-orbit-lantern"}
        ).status_code
        == 200
    )
    as_token = {"Authorization": f"Bearer {token['token']}"}
    assert httpx.get(console_stack.url + API + "/me", headers=as_token).status_code == 200
    changed = admin.patch(
        "/users/policyuser", json={"password": "another-orbit-lantern", "revoke_tokens": True}
    )
    assert changed.status_code == 200, changed.text
    problem(session.get("/me"), 401)
    problem(httpx.get(console_stack.url + API + "/me", headers=as_token, timeout=30), 401)
    session.close()
