"""Hostile text posted through the console's HTML forms (not the JSON API): NUL, control
characters and non-ASCII tokens get a 422 page naming the field (or the login page's refusal),
never a 500, and nothing is written."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

pytestmark = pytest.mark.slow


def login_token(browser: httpx.Client) -> str:
    found = re.search(r'name="login_csrf" value="([^"]+)"', browser.get("/login").text)
    assert found, "the login page hands out a login_csrf token"
    return found.group(1)


@pytest.fixture(scope="module")
def browser(console_stack) -> Iterator[tuple[httpx.Client, str]]:
    """An admin's browser session and its CSRF token (read off a page's hidden field)."""
    with httpx.Client(base_url=console_stack.url, timeout=30) as client:
        username, password = console_stack.admin
        done = client.post(
            "/login",
            data={"username": username, "password": password, "login_csrf": login_token(client)},
        )
        assert done.status_code == 303, done.text[:300]
        page = client.get("/jobs/new?type=system.canary").text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert csrf, page[:500]
        yield client, csrf.group(1)


def refused_page(response: httpx.Response, field: str) -> None:
    assert response.status_code == 422, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("text/html")
    assert field in response.text


@pytest.mark.parametrize(
    ("username", "field"),
    [("admin\x00", "username"), ("adm\x1bin", "username"), ("admin\n", "username")],
)
def test_a_login_form_with_control_characters_is_refused(console_stack, username, field) -> None:
    with httpx.Client(base_url=console_stack.url, timeout=30) as client:
        response = client.post(
            "/login",
            data={
                "username": username,
                "password": "whatever-123",
                "login_csrf": login_token(client),
            },
        )
        refused_page(response, field)


def test_a_login_form_with_a_non_ascii_csrf_token_is_refused_not_a_500(console_stack) -> None:
    with httpx.Client(base_url=console_stack.url, timeout=30) as client:
        login_token(client)
        response = client.post(
            "/login", data={"username": "admin", "password": "x" * 12, "login_csrf": "é" * 8}
        )
        assert response.status_code == 403, (response.status_code, response.text[:300])


def test_a_session_post_with_a_non_ascii_csrf_token_is_refused_not_a_500(browser) -> None:
    client, _ = browser
    response = client.post("/admin/tokens", data={"name": "t", "csrf_token": "ü" * 10})
    assert response.status_code == 403, (response.status_code, response.text[:300])


@pytest.mark.parametrize(
    ("field", "value"),
    [("title", "Nightly\x00absences"), ("title", "Two\rlines"), ("message", "hi\x00there")],
)
def test_a_job_form_with_nul_or_control_characters_is_refused(browser, field, value) -> None:
    client, csrf = browser
    before = client.get("/jobs").text.count('href="/jobs/')
    form = {
        "csrf_token": csrf,
        "title": "Form probe",
        "kind": "every",
        "every": "1h",
        "tz": "UTC",
        "param.message": "ok",
    }
    form["param.message" if field == "message" else field] = value
    response = client.post("/jobs/new?type=system.canary", data=form)
    refused_page(response, "param.message" if field == "message" else field)
    assert client.get("/jobs").text.count('href="/jobs/') == before, "nothing was written"


def test_an_admin_form_with_a_nul_in_a_user_name_is_refused(browser) -> None:
    client, csrf = browser
    response = client.post(
        "/admin/users",
        data={
            "csrf_token": csrf,
            "username": "eve\x00",
            "role": "viewer",
            "password": "Correct-Horse-9",
        },
    )
    refused_page(response, "username")
    assert "eve" not in client.get("/admin/users").text


def test_the_job_forms_concurrency_key_is_checked_and_kept(browser) -> None:
    client, csrf = browser
    form = {
        "csrf_token": csrf, "title": "Keyed by form", "kind": "every", "every": "1h",
        "tz": "UTC", "param.message": "relay-7", "concurrency_limit": "2",
    }  # fmt: skip
    for key, field in (
        ("smtp:{nope}", "concurrency_key"),
        ("smtp:\x1b{message}", "concurrency_key"),
    ):
        refused_page(
            client.post("/jobs/new?type=system.canary", data={**form, "concurrency_key": key}),
            field,
        )
    refused_page(
        client.post(
            "/jobs/new?type=system.canary",
            data={**form, "concurrency_key": "smtp:{message}", "concurrency_limit": "٣"},
        ),
        "concurrency_limit",
    )
    saved = client.post(
        "/jobs/new?type=system.canary", data={**form, "concurrency_key": "smtp:{message}"}
    )
    assert saved.status_code == 303, (saved.status_code, saved.text[:500])
    page = client.get(saved.headers["location"]).text
    assert "2 at once of <code>smtp:relay-7</code>" in page
