"""``make dev``'s CLI profile: an API token for the dev stack's admin, made once through the
console as a person makes one (log in, create a token; both audited), and kept in
``.dev/cli-profile.toml``, where ``belltower`` run from this folder finds it with no settings
(:mod:`belltower.cli.remote`). A token that no longer works (revoked, expired, a reset database)
is replaced by a new one."""

from __future__ import annotations

import asyncio
import json
import time
import tomllib
from pathlib import Path

import httpx

PROFILE = "cli-profile.toml"
TOKEN_NAME = "make dev: the belltower CLI"
TOKEN_DAYS = 3660


def _token_in(path: Path) -> str | None:
    try:
        section = tomllib.loads(path.read_text()).get("default", {})
    except (OSError, tomllib.TOMLDecodeError):
        return None
    token = section.get("token") if isinstance(section, dict) else None
    return token if isinstance(token, str) else None


def write_profile(path: Path, url: str, token: str) -> None:
    """The profile, readable by its owner only (it holds an admin's token)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    # JSON strings are TOML basic strings for what a URL and a token hold.
    path.write_text(
        "# Written by `make dev`: the belltower CLI's URL and API token beside the dev stack.\n"
        f"[default]\nurl = {json.dumps(url)}\ntoken = {json.dumps(token)}\n"
    )


async def _wait_ready(http: httpx.AsyncClient, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if (await http.get(url + "/readyz")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the console at {url} was not ready within {timeout:g}s")
        await asyncio.sleep(0.3)


async def ensure_profile(
    dev_dir: Path, url: str, admin: tuple[str, str], timeout: float = 90
) -> tuple[Path, bool]:
    """The profile in ``dev_dir`` with a working token for ``admin``; whether it was (re)made."""
    path = dev_dir / PROFILE
    async with httpx.AsyncClient(timeout=10) as http:
        await _wait_ready(http, url, timeout)
        api = url + "/api/v1"
        token = _token_in(path) if path.is_file() else None
        if token is not None:
            me = await http.get(api + "/me", headers={"Authorization": f"Bearer {token}"})
            if me.status_code == 200:
                return path, False
        session = await http.post(api + "/login", json={"username": admin[0], "password": admin[1]})
        if session.status_code != 200:
            raise PermissionError(
                f"cannot log in to the console as {admin[0]} to make the CLI's token "
                f"(HTTP {session.status_code}); was the admin's password changed?"
            )
        made = await http.post(
            api + "/tokens",
            json={"name": TOKEN_NAME, "expires_in_days": TOKEN_DAYS},
            headers={"X-CSRF-Token": session.json()["csrf_token"]},  # the session's cookie is kept
        )
        made.raise_for_status()
        write_profile(path, url, made.json()["token"])
        return path, True
