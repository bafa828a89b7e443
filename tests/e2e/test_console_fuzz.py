"""schemathesis over every operation of the HTTP API, against a console started by the test:
no 500, only documented statuses, replies that match their schemas and content types."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from .conftest import BIN
from .test_console_hostile import start_console, stop

pytestmark = pytest.mark.slow

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def test_schemathesis_finds_nothing_over_every_operation(console_stack, tmp_path) -> None:
    # A console of its own, behind a "proxy" address of its own, so the logins it fuzzes are
    # throttled for that address and never for the other tests' 127.0.0.1.
    proc, base = start_console(console_stack, BELLTOWER_CONSOLE_TRUSTED_PROXIES="127.0.0.1")
    try:
        fuzzer = {"X-Forwarded-For": "192.0.2.77"}
        session = httpx.post(
            base + "/api/v1/login",
            json=dict(zip(("username", "password"), console_stack.admin, strict=True)),
            headers=fuzzer,
            timeout=30,
        )
        assert session.status_code == 200, session.text
        token = httpx.post(
            base + "/api/v1/tokens",
            json={"name": "schemathesis"},
            cookies=session.cookies,
            headers={**fuzzer, "X-CSRF-Token": session.json()["csrf_token"]},
            timeout=30,
        ).json()["token"]
        result = subprocess.run(
            [
                str(BIN / "st"), "run", base + "/api/v1/openapi.json", "--url", base,
                "--checks", CHECKS, "--max-examples", "8", "--phases", "examples,fuzzing",
                "--seed", "17", "--workers", "1", "--request-timeout", "60",
                "--header", f"Authorization: Bearer {token}",
                "--header", "X-Forwarded-For: 192.0.2.77",
                "--exclude-path", "/api/v1/logout",
                "--no-color",
            ],
            capture_output=True, text=True, timeout=900, cwd=tmp_path,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout[-12000:] + result.stderr[-3000:]
        assert "passed" in result.stdout.lower() or "no issues found" in result.stdout.lower()
    finally:
        stop(proc)
