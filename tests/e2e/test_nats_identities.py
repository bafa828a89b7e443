"""The services run end to end when each connects as its own least-privileged NATS user; the CLI
has none: it goes through the console, which calls the management API as the console user."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from belltower import natsclient
from belltower import operations as ops
from belltower.errors import Unavailable
from belltower.rpc import ApiClient
from belltower.settings import Settings
from tests.e2e.conftest import SERVICES, Cli, Stack
from tests.secured_nats import secured_nats, violations


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[tuple]:
    with secured_nats(tmp_path) as found:
        yield found


def _logged_ready(stack: Stack, timeout: float = 180) -> None:
    """Until every service has said it is ready: on a loaded machine they take a while to start."""
    deadline = time.monotonic() + timeout
    while not all('.ready"' in stack.log(name) for name in stack.procs):
        for name, proc in stack.procs.items():
            assert proc.poll() is None, f"{name} exited:\n{stack.log(name)[-3000:]}"
        assert time.monotonic() < deadline, "\n".join(stack.log(n)[-2000:] for n in stack.procs)
        time.sleep(0.5)


def test_a_canary_runs_to_success_with_one_identity_per_service(
    secured, stack_env: dict[str, str], tmp_path: Path
) -> None:
    server, identities = secured
    env = {**stack_env, "BELLTOWER_NATS_URL": server.url}
    cli = Cli(dict(env))
    logs = tmp_path / "logs"
    logs.mkdir()
    stack = Stack(env, logs)
    try:
        for name in SERVICES:
            stack.start(name, **identities[name].env())  # type: ignore[index]
        _logged_ready(stack)
        stack.open_door(cli, **identities["console"].env())
        stack.wait_ready(cli)
        job = cli.json(
            "jobs", "create", "--type", "system.canary", "--title", "Canary under auth",
            "--every", "1h", "--param", "message=locked down",
        )  # fmt: skip
        dispatched = cli.json("jobs", "run-now", job["id"])
        run = None
        deadline = time.monotonic() + 30
        while run is None and time.monotonic() < deadline:
            shown = cli.run("runs", "show", dispatched["run_id"], "--json", check=False)
            if shown.returncode == 0 and '"finished_at": null' not in shown.stdout:
                run = json.loads(shown.stdout)
            time.sleep(0.2)
        assert run is not None, "\n".join(stack.log(n)[-2000:] for n in SERVICES)
        assert run["status"] == "succeeded" and "locked down" in run["output_text"]
        assert violations(server) == []
    finally:
        stack.stop_all()
    assert violations(server) == []


def test_the_scheduler_and_a_management_client_verify_the_server_over_tls(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    from tests.tls import make_ca_and_server_cert

    tls = make_ca_and_server_cert(tmp_path)
    with secured_nats(tmp_path, tls=tls) as (server, identities):
        env = {**stack_env, "BELLTOWER_NATS_URL": server.url}
        verified = {"BELLTOWER_NATS_TLS_CA": str(tls.ca)}
        logs = tmp_path / "logs"
        logs.mkdir()
        stack = Stack(env, logs)
        console = identities["console"]
        try:
            stack.start("scheduler", **identities["scheduler"].env(), **verified)
            _logged_ready(stack)
            settings = Settings(
                nats_url=server.url, nats_user=console.user, nats_password=console.password
            )
            deadline = time.monotonic() + 30
            while True:
                try:
                    types = asyncio.run(
                        _job_types(settings.model_copy(update={"nats_tls_ca": tls.ca}))
                    )
                    break
                except Unavailable as exc:
                    assert time.monotonic() < deadline, f"{exc}\n{stack.log('scheduler')}"
                    time.sleep(0.3)
            assert types == []
            with pytest.raises(Unavailable, match="CERTIFICATE_VERIFY_FAILED"):
                asyncio.run(_job_types(settings))
        finally:
            stack.stop_all()


async def _job_types(settings: Settings) -> list[object]:
    """The management API's job types, called as the console calls it."""
    client = await ApiClient.connect(
        settings.nats_url, 5, natsclient.connect_options(settings, "console")
    )
    try:
        return list(await client.call(ops.JOB_TYPES_LIST))
    finally:
        await client.close()
