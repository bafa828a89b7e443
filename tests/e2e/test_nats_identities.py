"""The services run end to end when each connects as its own least-privileged NATS user."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from belltower import natsauth
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
    cli = Cli({**env, **identities["cli"].env()})
    logs = tmp_path / "logs"
    logs.mkdir()
    stack = Stack(env, logs)
    try:
        for name in SERVICES:
            stack.start(name, **identities[name].env())  # type: ignore[index]
        _logged_ready(stack)
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


def test_the_cli_without_or_with_wrong_credentials_is_refused(
    secured, stack_env: dict[str, str], tmp_path: Path
) -> None:
    server, _ = secured
    cli = Cli({**stack_env, "BELLTOWER_NATS_URL": server.url})
    refused = cli.run("job-types", check=False)
    assert refused.returncode != 0 and "Authorization" in refused.stderr, refused.stderr
    wrong = Cli({**cli.env, **natsauth.Identity("cli", "cli", "not-the-password").env()}).run(
        "job-types", check=False
    )
    assert wrong.returncode != 0 and "Authorization" in wrong.stderr, wrong.stderr


def test_the_scheduler_and_the_cli_verify_the_server_over_tls(
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
        try:
            stack.start("scheduler", **identities["scheduler"].env(), **verified)
            _logged_ready(stack)
            cli = Cli({**env, **identities["cli"].env(), **verified})
            deadline = time.monotonic() + 30
            while (answered := cli.run("job-types", "--json", check=False)).returncode != 0:
                assert time.monotonic() < deadline, answered.stderr + stack.log("scheduler")
                time.sleep(0.3)
            assert json.loads(answered.stdout) == []
            unverified = Cli({**env, **identities["cli"].env()}).run("job-types", check=False)
            assert unverified.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in unverified.stderr
        finally:
            stack.stop_all()
