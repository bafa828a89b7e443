"""The CLI's one door: every change goes through the console's HTTP API with an API token, is
role-checked and lands in the audit log as the token's user, from the address the console saw.
Without a token, with a wrong one, or with a role too small, the CLI says so and exits 5."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from belltower_dev import cliprofile
from belltower_dev.localservers import free_port
from tests.helpers.console import cli_env

from .conftest import Cli

pytestmark = pytest.mark.slow

BELLTOWER = str(Path(sys.executable).parent / "belltower")


def _admin(console_stack) -> httpx.Client:  # type: ignore[no-untyped-def]
    token = console_stack.cli.env["BELLTOWER_API_TOKEN"]
    return httpx.Client(
        base_url=console_stack.url + "/api/v1",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def _user_cli(console_stack, username: str, role: str) -> Cli:  # type: ignore[no-untyped-def]
    """A user of ``role`` with a token of their own, and the CLI that uses it."""
    password = f"{username}-pass-7Q"
    with _admin(console_stack) as admin:
        made = admin.post("/users", json={"username": username, "password": password, "role": role})
        assert made.status_code == 201, made.text
        # Only an admin makes tokens: one for the user, as the console's Tokens page does.
        token = admin.post("/tokens", json={"name": "cli", "username": username})
        assert token.status_code == 201, token.text
    return Cli({**console_stack.stack.env, **cli_env(console_stack.url, token.json()["token"])})


def test_cli_changes_are_audited_as_the_tokens_user(console_stack) -> None:
    cli = _user_cli(console_stack, "door-editor", "editor")
    cli.run("calendars", "create", "door-2026", "2026-12-24", "--label", "Eve")
    job = cli.json(
        "jobs", "create", "--type", "system.canary", "--title", "Door canary", "--every", "1h",
        "--calendar", "door-2026",
    )  # fmt: skip
    cli.run("jobs", "pause", job["id"])
    shown = cli.json("jobs", "show", job["id"])
    assert shown["paused_by"] == "door-editor from 127.0.0.1"  # the token's user, the peer seen
    [pause] = cli.json("jobs", "why", job["id"])["pauses"]
    assert (pause["paused_by"], pause["paused_from"]) == ("door-editor", "127.0.0.1")
    cli.run("calendars", "add-days", "door-2026", "2026-12-31")
    with _admin(console_stack) as admin:
        found = admin.get("/audit", params={"actor": "door-editor", "limit": 100}).json()
    entries = {(e["action"], e["target"]): e for e in found["items"]}
    for key in [
        ("calendars.create", "door-2026"),
        ("jobs.create", job["id"]),
        ("jobs.pause", job["id"]),
        ("calendars.add_days", "door-2026"),
    ]:
        assert key in entries, (key, sorted(entries))
        entry = entries[key]
        assert (entry["role"], entry["client"], entry["outcome"]) == ("editor", "127.0.0.1", "ok")
    assert entries[("jobs.pause", job["id"])]["after"] == {"paused": True}
    cli.run("jobs", "delete", job["id"])
    cli.run("calendars", "delete", "door-2026")


def test_no_token_a_wrong_one_or_a_small_role_is_refused_clearly(console_stack) -> None:
    env = console_stack.stack.env
    missing = Cli({**env, **cli_env(console_stack.url, None)}).run("jobs", "list", check=False)
    assert missing.returncode == 5, missing.stderr
    assert "no API token" in missing.stderr and "BELLTOWER_API_TOKEN" in missing.stderr

    wrong = Cli({**env, **cli_env(console_stack.url, "bt_not-a-token")})
    refused = wrong.run("jobs", "list", check=False)
    assert refused.returncode == 5, refused.stderr
    assert "refused the token" in refused.stderr and "wrong, expired or revoked" in refused.stderr

    viewer = _user_cli(console_stack, "door-viewer", "viewer")
    assert viewer.run("calendars", "list").returncode == 0  # reading is a viewer's right
    denied = viewer.run("calendars", "create", "viewer-made", check=False)
    assert denied.returncode == 5, denied.stderr
    assert "door-viewer (viewer) may not calendars.create" in denied.stderr
    with _admin(console_stack) as admin:
        log = admin.get("/audit", params={"actor": "door-viewer", "outcome": "denied"}).json()
        assert [e["action"] for e in log["items"]] == ["calendars.create"]
        assert admin.get("/calendars/viewer-made").status_code == 404

    nobody = Cli({**env, **cli_env(f"http://127.0.0.1:{free_port()}", "bt_x")})
    down = nobody.run("jobs", "list", check=False)
    assert down.returncode == 3 and "did not answer" in down.stderr, down.stderr


def test_make_devs_profile_is_found_with_no_settings_and_made_once(console_stack, tmp_path) -> None:
    dev = tmp_path / ".dev"
    path, made = asyncio.run(cliprofile.ensure_profile(dev, console_stack.url, console_stack.admin))
    assert made and path == dev / cliprofile.PROFILE and (path.stat().st_mode & 0o077) == 0
    env = {k: v for k, v in console_stack.stack.env.items() if not k.startswith("BELLTOWER_API")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")  # no profiles file of the user's
    found = subprocess.run(
        [BELLTOWER, "calendars", "list"], env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    text = path.read_text()
    _, again = asyncio.run(cliprofile.ensure_profile(dev, console_stack.url, console_stack.admin))
    assert again is False and path.read_text() == text
    # A token that stopped working (revoked here) is replaced.
    with _admin(console_stack) as admin:
        mine = [t for t in admin.get("/tokens").json() if t["name"] == cliprofile.TOKEN_NAME]
        for t in mine:
            admin.delete(f"/tokens/{t['id']}")
    _, remade = asyncio.run(cliprofile.ensure_profile(dev, console_stack.url, console_stack.admin))
    assert remade and path.read_text() != text
