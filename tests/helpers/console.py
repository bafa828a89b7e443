"""The console as the CLI's door in tests: started as a process, waited for, and an API token
issued for its admin, so the CLI runs as a user runs it (over HTTP, audited as that user)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ADMIN = ("admin", "admin-password-1")
"""The first admin every test console bootstraps (``BELLTOWER_CONSOLE_ADMIN_*``)."""


def console_env(port: int, admin: tuple[str, str] = ADMIN) -> dict[str, str]:
    """The variables a test console listens and bootstraps its first admin with."""
    return {
        "BELLTOWER_CONSOLE_PORT": str(port),
        "BELLTOWER_CONSOLE_ADMIN_USER": admin[0],
        "BELLTOWER_CONSOLE_ADMIN_PASSWORD": admin[1],
    }


def wait_console(
    url: str, alive: Callable[[], bool], log: Callable[[], str], timeout: float = 90
) -> None:
    """Until the console answers ``/readyz`` (PostgreSQL and NATS reached)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or not alive():
            raise AssertionError("console not ready:\n" + log()[-3000:])
        time.sleep(0.2)


def issue_token(url: str, admin: tuple[str, str] = ADMIN, name: str = "belltower cli") -> str:
    """An API token for ``admin``, made as a person makes one: log in, then ask for it."""
    with httpx.Client(base_url=url + "/api/v1", timeout=30) as http:
        session = http.post("/login", json={"username": admin[0], "password": admin[1]})
        assert session.status_code == 200, session.text
        made = http.post(
            "/tokens", json={"name": name}, headers={"X-CSRF-Token": session.json()["csrf_token"]}
        )
        assert made.status_code == 201, made.text
        return str(made.json()["token"])


def cli_env(url: str, token: str | None) -> dict[str, str]:
    """What the CLI needs to reach the console (no token: unset)."""
    env = {"BELLTOWER_API_URL": url}
    if token is not None:
        env["BELLTOWER_API_TOKEN"] = token
    return env


@contextmanager
def running_console(env: dict[str, str], log_file: Path) -> Iterator[str]:
    """``belltower-console`` as a process on a free port with ``env`` (NATS, PostgreSQL); yields
    its URL once ready, and stops it after."""
    from belltower_dev.localservers import bound_to_parent, free_port

    port = free_port()
    with log_file.open("ab") as log:
        proc = subprocess.Popen(
            bound_to_parent([Path(sys.executable).parent / "belltower-console"]),
            env={**env, **console_env(port)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_console(url, lambda: proc.poll() is None, lambda: log_file.read_text(errors="replace"))
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def wait_until(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll ``check`` until it returns something true, and return that; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.2)
    return value


@contextmanager
def signed_in(
    url: str, admin: tuple[str, str] = ADMIN
) -> Iterator[tuple[httpx.Client, dict[str, str]]]:
    """A browser-like client signed in to the console as ``admin``, with its CSRF header."""
    with httpx.Client(base_url=url, timeout=20) as web:
        login = web.post(
            "/api/v1/login", json=dict(zip(("username", "password"), admin, strict=True))
        )
        assert login.status_code == 200, login.text
        yield web, {"X-CSRF-Token": login.json()["csrf_token"]}
