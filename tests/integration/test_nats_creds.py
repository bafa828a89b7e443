"""``BELLTOWER_NATS_CREDS``: a decentralized-JWT ``.creds`` file (operator -> account -> user),
on a real nats-server in operator mode (``resolver: MEMORY``), with each role's permissions in
its user JWT. The raw client, the faststream broker and ``belltower-streams`` all connect with it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nats
import nkeys
import pytest
from nats.errors import Error as NatsError

from belltower import broker, natsclient, streams
from belltower.settings import Settings
from belltower.subjects import DUE_STREAM
from belltower_dev.localservers import NatsServer
from tests.helpers.natsjwt import Key, Operator

STREAMS_COMMAND = Path(sys.executable).parent / "belltower-streams"


@pytest.fixture(scope="module")
def operator_mode(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NatsServer, Path]]:
    """A nats-server trusting one operator, and a folder of ``<role>.creds`` files."""
    directory = tmp_path_factory.mktemp("creds")
    operator = Operator()
    (directory / "operator.conf").write_text(operator.server_config())
    for role in ("scheduler", "notifier-worker", "provisioner"):
        operator.write_creds(directory, role)
    forged = directory / "forged"
    forged.mkdir()
    untrusted = Key.new(nkeys.PREFIX_BYTE_ACCOUNT)  # an account the server has never heard of
    operator.write_creds(forged, "scheduler", signer=untrusted)
    args = ("-c", str(directory / "operator.conf"))
    with NatsServer(store_dir=directory / "nats", args=args) as server:
        yield server, directory


def _connect(server: NatsServer, creds: Path, role: str, **kwargs: object):  # type: ignore[no-untyped-def]
    settings = Settings(nats_url=server.url, nats_creds=creds)
    assert natsclient.credentials(settings).kind == "creds"
    return nats.connect(
        server.url,
        allow_reconnect=False,
        max_reconnect_attempts=0,
        **kwargs,
        **natsclient.connect_options(settings, role),
    )


def _provision(server: NatsServer, creds: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BELLTOWER_")}
    env |= {"BELLTOWER_NATS_URL": server.url, "BELLTOWER_NATS_CREDS": str(creds)}
    return subprocess.run(
        [str(STREAMS_COMMAND), "apply"], env=env, capture_output=True, text=True, timeout=120
    )


async def test_services_connect_with_creds_files_and_keep_to_their_permissions(
    operator_mode,
) -> None:
    server, creds = operator_mode
    applied = _provision(server, creds / "provisioner.creds")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert f"stream {DUE_STREAM}" in applied.stdout

    errors: list[str] = []

    async def record(exc: Exception) -> None:
        errors.append(str(exc).lower())

    nc = await _connect(server, creds / "scheduler.creds", "scheduler", error_cb=record)
    try:
        assert nc._server_info.get("auth_required") is True
        js = nc.jetstream(timeout=2)
        settings = Settings(nats_url=server.url, nats_creds=creds / "scheduler.creds")
        assert not streams.provisions(js, settings)
        await streams.ensure(js, settings)  # provisioned: the scheduler starts
        ack = await js.publish(
            "belltower.due.notifier.system.canary", b"{}", headers={"Nats-Msg-Id": "creds-1"}
        )
        assert ack.stream == DUE_STREAM
        for forbidden in (
            "belltower.run.finished.succeeded.system.canary",
            f"$JS.API.STREAM.DELETE.{DUE_STREAM}",
            f"$JS.API.STREAM.UPDATE.{DUE_STREAM}",
        ):
            errors.clear()
            await nc.publish(forbidden, b"{}")
            await nc.flush()
            await asyncio.sleep(0.05)
            assert any(f'publish to "{forbidden.lower()}"' in e for e in errors), forbidden
    finally:
        await nc.close()


async def test_the_faststream_broker_connects_with_a_creds_file(operator_mode) -> None:
    server, creds = operator_mode
    settings = Settings(nats_url=server.url, nats_creds=creds / "notifier-worker.creds")
    worker = broker.make_broker(settings, "notifier-worker")
    await worker.connect()
    try:
        connection = worker.connection
        assert connection.is_connected
        assert connection._server_info.get("auth_required") is True
        await connection.publish("belltower.run.started.system.canary", b"{}")
        await connection.flush()
    finally:
        await worker.stop()


async def test_without_a_trusted_creds_file_the_server_refuses(operator_mode) -> None:
    server, creds = operator_mode
    with pytest.raises(NatsError, match=r"(?i)authorization"):
        await nats.connect(server.url, allow_reconnect=False, max_reconnect_attempts=0)
    with pytest.raises(NatsError, match=r"(?i)authorization"):
        await _connect(server, creds / "forged" / "scheduler.creds", "scheduler")
    with pytest.raises(NatsError, match=r"(?i)authorization"):
        await nats.connect(
            server.url,
            user="scheduler",
            password="guessed",
            allow_reconnect=False,
            max_reconnect_attempts=0,
        )
