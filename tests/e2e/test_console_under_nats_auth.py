"""The console end to end with NATS authentication on: the streams provisioned by
``belltower-streams apply`` as the provisioner, then the four services and the console as
processes, each connected as its own NATS user, and the console's HTTP API used as a person
uses it. NATS refuses an anonymous client, and no process tried a subject outside its part."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nats
import pytest
from nats.errors import Error as NatsError

from belltower import natsauth
from belltower_dev.localservers import MailSink, NatsServer, free_port
from tests.e2e.conftest import SERVICES, Stack
from tests.secured_nats import operator_nats, secured_nats, violations

pytestmark = pytest.mark.slow

API = "/api/v1"
ADMIN = ("admin", "admin-password-1")
PROCESSES: tuple[natsauth.Role, ...] = (*SERVICES, "console")  # type: ignore[assignment]


@dataclass
class Locked:
    server: NatsServer
    stack: Stack
    url: str


def _env(
    nats_url: str, database_url: str, batch: Path, mail: MailSink, port: int
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BELLTOWER_")}
    env.update(
        BELLTOWER_NATS_URL=nats_url,
        BELLTOWER_DATABASE_URL=database_url,
        BELLTOWER_BATCH_FOLDER=str(batch),
        BELLTOWER_SMTP_HOST=mail.host,
        BELLTOWER_SMTP_PORT=str(mail.port),
        BELLTOWER_ACK_WAIT_S="3",
        BELLTOWER_LOG_JSON="true",
        BELLTOWER_CONSOLE_PORT=str(port),
        OTEL_TRACES_EXPORTER="none",
    )
    return env


def _wait(what: str, stack: Stack, check: Any, timeout: float = 180) -> Any:
    """Until ``check()`` returns something true; fails early if a process exits."""
    deadline = time.monotonic() + timeout
    while True:
        for name, proc in stack.procs.items():
            assert proc.poll() is None, f"{name} exited:\n{stack.log(name)[-3000:]}"
        try:
            found = check()
        except httpx.HTTPError:
            found = None
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}:\n" + "\n".join(
            stack.log(n)[-2000:] for n in stack.procs
        )
        time.sleep(0.3)


@contextmanager
def _nats(how: str, directory: Path) -> Iterator[tuple[NatsServer, dict[str, dict[str, str]]]]:
    """A provisioned NATS with authentication, and each role's ``BELLTOWER_NATS_*`` variables:
    a user and password each, or a decentralized-JWT ``.creds`` file each."""
    if how == "passwords":
        with secured_nats(directory) as (server, identities):
            yield server, {role: identity.env() for role, identity in identities.items()}
    else:
        with operator_nats(directory) as (server, creds):
            yield (
                server,
                {role: {"BELLTOWER_NATS_CREDS": str(path)} for role, path in creds.items()},
            )


@pytest.fixture(params=["passwords", "creds"])
def locked(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    database_url: str,
    tmp_batch_folder: Path,
    mail_sink: MailSink,
) -> Iterator[Locked]:
    with _nats(request.param, tmp_path) as (server, identities):
        port = free_port()
        env = _env(server.url, database_url, tmp_batch_folder, mail_sink, port)
        logs = tmp_path / "logs"
        logs.mkdir()
        stack = Stack(env, logs)
        try:
            for name in PROCESSES:
                extra = dict(identities[name])
                if name == "console":
                    extra |= {
                        "BELLTOWER_CONSOLE_ADMIN_USER": ADMIN[0],
                        "BELLTOWER_CONSOLE_ADMIN_PASSWORD": ADMIN[1],
                    }
                stack.start(name, **extra)
            url = f"http://127.0.0.1:{port}"
            _wait(
                "console not ready",
                stack,
                lambda: httpx.get(url + "/readyz", timeout=2).status_code == 200,
            )
            yield Locked(server, stack, url)
        finally:
            stack.stop_all()


def _admin(locked: Locked) -> httpx.Client:
    """The bootstrap admin, logged in, with a token it makes for itself."""
    with httpx.Client(base_url=locked.url + API, timeout=20) as session:
        login = session.post("/login", json=dict(zip(("username", "password"), ADMIN, strict=True)))
        assert login.status_code == 200, login.text
        csrf = login.json()["csrf_token"]
        made = session.post("/tokens", json={"name": "auth-e2e"}, headers={"X-CSRF-Token": csrf})
        assert made.status_code == 201, made.text
        token = made.json()["token"]
    return httpx.Client(
        base_url=locked.url + API, headers={"Authorization": f"Bearer {token}"}, timeout=20
    )


async def _reference_sis(database_url: str) -> None:
    from belltower import sis

    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    try:
        await sis.migrate(pool)
    finally:
        await pool.close()


def _user_name(connection: dict[str, Any]) -> str:
    """Who a client connected as: its user name, or the name in its user JWT (a JWT user's
    ``authorized_user`` is its public key)."""
    if "jwt" not in connection:
        return str(connection.get("authorized_user", ""))
    claims = connection["jwt"].split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))["name"])


def _users_connected(server: NatsServer) -> set[str]:
    with urllib.request.urlopen(f"{server.monitor_url}/connz?auth=true", timeout=5) as reply:
        connz = json.load(reply)
    return {_user_name(c) for c in connz["connections"]}


def test_the_console_works_through_nats_with_each_process_as_its_own_user(
    locked: Locked, database_url: str
) -> None:
    admin = _admin(locked)
    with admin:
        pools = _wait(
            "job types never registered",
            locked.stack,
            # Until the scheduler answers, /job-types is a 503 problem document, not a list.
            lambda: (
                isinstance(types := admin.get("/job-types").json(), list)
                and {t["pool"] for t in types} >= {"notifier", "integration"}
                and types
            ),
        )
        assert any(t["name"] == "system.canary" for t in pools)

        title = f"Under auth {uuid.uuid4().hex[:6]}"
        created = admin.post(
            "/jobs",
            json={
                "type": "system.canary",
                "title": title,
                "schedule": {"rule": {"kind": "every", "seconds": 3600}, "tz": "UTC"},
                "params": {"message": "locked down"},
            },
        )
        assert created.status_code == 201, created.text
        job = created.json()

        ran = admin.post(f"/jobs/{job['id']}/run")
        assert ran.status_code == 202, ran.text
        run_id = ran.json()["run_id"]
        run = _wait(
            f"run {run_id} did not finish",
            locked.stack,
            lambda: (
                (got := admin.get(f"/runs/{run_id}")).status_code == 200
                and got.json()["finished_at"]
                and got.json()
            ),
            timeout=60,
        )
        assert run["status"] == "succeeded" and "locked down" in run["output_text"]
        assert run["requested_by"] == ADMIN[0]
        listed = admin.get("/runs", params={"job_id": job["id"]}).json()["items"]
        assert [r["run_id"] for r in listed] == [run_id]

        assert admin.get("/settings").json() == {"result_mail_only_failures": None}
        changed = admin.patch("/settings", json={"result_mail_only_failures": True})
        assert changed.status_code == 200, changed.text
        assert admin.get("/settings").json() == {"result_mail_only_failures": True}
        refused = admin.patch("/settings", json={"result_mail_only_failures": "sometimes"})
        assert refused.status_code == 422

        audit = admin.get("/audit", params={"limit": 200}).json()["items"]
        actions = {(e["action"], e["actor"]) for e in audit}
        assert ("settings.update", ADMIN[0]) in actions, actions

        # The OneRoster provider: the console asks the integration worker, which answers
        # belltower.api.integration.> as its own user (an empty reference SIS: the root org).
        asyncio.run(_reference_sis(database_url))
        client = admin.post("/tokens", json={"name": "oneroster: e2e"}).json()
        token = httpx.post(
            locked.url + "/ims/oneroster/token", data={"grant_type": "client_credentials"},
            auth=(client["id"], client["token"]), timeout=20,
        )  # fmt: skip
        assert token.status_code == 200, token.text
        orgs = httpx.get(
            locked.url + "/ims/oneroster/rostering/v1p2/orgs", timeout=20,
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
        )  # fmt: skip
        assert orgs.status_code == 200, orgs.text
        assert [o["sourcedId"] for o in orgs.json()["orgs"]] == ["institution"]

    assert _users_connected(locked.server) >= set(PROCESSES)
    assert violations(locked.server) == []


async def test_nats_refuses_an_anonymous_client_beside_the_running_console(
    locked: Locked,
) -> None:
    with pytest.raises(NatsError, match=r"(?i)authorization"):
        await nats.connect(locked.server.url, allow_reconnect=False, max_reconnect_attempts=0)
    assert "" not in _users_connected(locked.server)  # nobody is connected anonymously


def test_a_service_on_an_unprovisioned_nats_refuses_to_start_naming_the_command(
    tmp_path: Path, database_url: str, tmp_batch_folder: Path, mail_sink: MailSink
) -> None:
    with secured_nats(tmp_path, provisioned=False) as (server, identities):
        env = _env(server.url, database_url, tmp_batch_folder, mail_sink, free_port())
        logs = tmp_path / "logs"
        logs.mkdir()
        stack = Stack(env, logs)
        try:
            proc = stack.start("notifier-worker", **identities["notifier-worker"].env())
            code = proc.wait(120)
        finally:
            stack.stop_all()
        log = stack.log("notifier-worker")
        assert code != 0, log[-3000:]
        assert "belltower-streams apply" in log and "does not exist" in log, log[-3000:]
