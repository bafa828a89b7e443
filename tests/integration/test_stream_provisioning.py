"""Streams and buckets are created and changed by one identity, the provisioner, with
``belltower-streams apply``; the services' identities may only look at them, and a service that
finds one missing or drifted refuses to start naming that command. On a real nats-server with
the rendered permissions."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from belltower import natsauth, natsclient, sitesettings, streams
from belltower.errors import ConfigurationError
from belltower.settings import Settings
from belltower.subjects import CATALOG_BUCKET, DUE_STREAM, LEASES_BUCKET, RUNS_STREAM
from belltower_dev.localservers import NatsServer, free_port
from tests.secured_nats import STREAMS_COMMAND, provision, secured_nats, violations

SERVICES: tuple[natsauth.Role, ...] = (
    "scheduler",
    "notifier-worker",
    "integration-worker",
    "history",
    "console",
    "integrator",
)
ASSETS = (DUE_STREAM, RUNS_STREAM, f"KV_{CATALOG_BUCKET}", f"KV_{LEASES_BUCKET}")
DECLARED = 2 + len(streams.bucket_configs(Settings()))


@pytest.fixture
def bare(tmp_path: Path) -> Iterator[tuple[NatsServer, dict[natsauth.Role, natsauth.Identity]]]:
    """A secured server on which nothing is provisioned yet."""
    with secured_nats(tmp_path, provisioned=False) as found:
        yield found


@pytest.fixture(scope="module")
def provisioned(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[NatsServer, dict[natsauth.Role, natsauth.Identity]]]:
    with secured_nats(tmp_path_factory.mktemp("provisioned")) as found:
        yield found


def _settings(server: NatsServer, identity: natsauth.Identity, **extra: object) -> Settings:
    return Settings(
        nats_url=server.url,
        nats_user=identity.user,
        nats_password=identity.password,
        **extra,
    )


async def _connect(server: NatsServer, identity: natsauth.Identity, errors: list[str]) -> Client:
    async def record(exc: Exception) -> None:
        errors.append(str(exc).lower())

    return await nats.connect(
        server.url,
        allow_reconnect=False,
        error_cb=record,
        **natsclient.connect_options(_settings(server, identity), identity.role),
    )


@pytest.fixture
async def connect(provisioned) -> AsyncIterator:
    server, identities = provisioned
    made: list[Client] = []

    async def make(role: natsauth.Role) -> tuple[Client, list[str]]:
        errors: list[str] = []
        made.append(await _connect(server, identities[role], errors))
        return made[-1], errors

    yield make
    for nc in made:
        await nc.close()


async def _refused(nc: Client, errors: list[str], subject: str) -> bool:
    errors.clear()
    await nc.publish(subject, b"{}")
    await nc.flush()
    await asyncio.sleep(0.05)
    return any(f'publish to "{subject.lower()}"' in e for e in errors)


@pytest.mark.parametrize("role", SERVICES)
async def test_no_service_identity_may_create_update_or_delete_a_stream(connect, role) -> None:
    nc, errors = await connect(role)
    for asset in ASSETS:
        for op in ("CREATE", "UPDATE", "DELETE", "PURGE"):
            subject = f"$JS.API.STREAM.{op}.{asset}"
            assert await _refused(nc, errors, subject), f"{role} may {subject}"


async def test_the_jetstream_calls_of_a_service_to_change_a_stream_fail(connect) -> None:
    nc, _ = await connect("scheduler")
    js = nc.jetstream(timeout=1)
    [due, _runs] = streams.stream_configs(Settings())
    with pytest.raises(nats.errors.Error):
        await js.update_stream(due)
    with pytest.raises(nats.errors.Error):
        await js.delete_stream(DUE_STREAM)
    assert (await js.stream_info(DUE_STREAM)).config.name == DUE_STREAM  # still there


async def test_the_provisioner_changes_streams_and_nothing_else(connect) -> None:
    nc, errors = await connect("provisioner")
    for subject in (
        f"$JS.API.STREAM.DELETE.{DUE_STREAM}",
        f"$JS.API.STREAM.PURGE.{RUNS_STREAM}",
        "$JS.API.STREAM.CREATE.SOMETHING_ELSE",
        f"$JS.API.CONSUMER.CREATE.{DUE_STREAM}.notifier-worker",
        f"$JS.API.STREAM.MSG.GET.KV_{LEASES_BUCKET}",
        "belltower.due.notifier.system.canary",
        "belltower.run.finished.succeeded.system.canary",
        "belltower.api.scheduler.jobs.create",
        f"$KV.{LEASES_BUCKET}.partition.0",
    ):
        assert await _refused(nc, errors, subject), subject
    for subject in (f"$JS.API.STREAM.UPDATE.{DUE_STREAM}", f"$JS.API.STREAM.INFO.{RUNS_STREAM}"):
        assert not await _refused(nc, errors, subject), subject


async def test_a_service_refuses_to_start_before_provisioning_and_starts_after(bare) -> None:
    server, identities = bare
    errors: list[str] = []
    nc = await _connect(server, identities["scheduler"], errors)
    try:
        js = nc.jetstream(timeout=2)
        settings = _settings(server, identities["scheduler"])
        with pytest.raises(ConfigurationError) as refused:
            await streams.ensure(js, settings)
        assert f"stream {DUE_STREAM} does not exist" in refused.value.message
        assert "`belltower-streams apply`" in refused.value.message
        assert "as the provisioner NATS identity" in refused.value.message
        with pytest.raises(ConfigurationError, match=f"bucket {LEASES_BUCKET} does not exist"):
            await streams.ensure_bucket(
                js, LEASES_BUCKET, "leases", history=1, ttl=None, settings=settings
            )
        with pytest.raises(nats.js.errors.NotFoundError):
            await js.stream_info(DUE_STREAM)  # the refusal created nothing

        checked = provision(server, identities["provisioner"], command="check")
        assert checked.returncode == 1, checked.stdout + checked.stderr
        assert f"stream {DUE_STREAM} does not exist" in checked.stdout
        assert "belltower-streams apply" in checked.stderr

        applied = provision(server, identities["provisioner"])
        assert applied.returncode == 0, applied.stdout + applied.stderr
        lines = applied.stdout.splitlines()
        assert len(lines) == DECLARED and all(line.startswith("created ") for line in lines)
        for config in streams.bucket_configs(settings):
            assert f"created bucket {config.bucket}" in lines

        await streams.ensure(js, settings)  # now it starts
        await streams.ensure_bucket(
            js, LEASES_BUCKET, "leases", history=1, ttl=None, settings=settings
        )
        again = provision(server, identities["provisioner"])
        assert again.returncode == 0 and "created" not in again.stdout, again.stdout
        ok = provision(server, identities["provisioner"], command="check")
        assert ok.returncode == 0 and "as declared" in ok.stdout, ok.stdout + ok.stderr
    finally:
        await nc.close()
    assert violations(server) == []  # nothing tried what it may not


async def test_the_console_names_the_provisioning_step_for_a_missing_settings_bucket(bare) -> None:
    """Site settings on a secured NATS nobody provisioned: a clear refusal, not a request the
    server refuses in silence (the console used to wait out its timeout creating the bucket)."""
    server, identities = bare
    errors: list[str] = []
    nc = await _connect(server, identities["console"], errors)
    try:
        with pytest.raises(ConfigurationError) as refused:
            await sitesettings.load(nc.jetstream(timeout=2))
        assert f"bucket {sitesettings.BUCKET} does not exist" in refused.value.message
        assert "`belltower-streams apply`" in refused.value.message
    finally:
        await nc.close()
    assert violations(server) == [], "it did not try to create the bucket"


async def test_drift_is_migrated_or_refused_by_the_provisioner_and_named_to_a_service(
    bare,
) -> None:
    server, identities = bare
    provisioner = identities["provisioner"]
    shorter = {"BELLTOWER_DUE_MAX_AGE_S": "3600"}
    assert provision(server, provisioner, extra_env=shorter).returncode == 0
    refused = provision(server, provisioner, extra_env={"BELLTOWER_STREAM_DRIFT": "refuse"})
    assert refused.returncode == 1
    assert f"stream {DUE_STREAM} differs" in refused.stderr and "max_age is 3600" in refused.stderr

    errors: list[str] = []
    nc = await _connect(server, identities["notifier-worker"], errors)
    try:
        js = nc.jetstream(timeout=2)
        with pytest.raises(ConfigurationError) as drifted:
            await streams.ensure(js, _settings(server, identities["notifier-worker"]))
        assert f"stream {DUE_STREAM} differs: max_age is 3600" in drifted.value.message
        assert "`belltower-streams apply`" in drifted.value.message
        assert (await js.stream_info(DUE_STREAM)).config.max_age == 3600  # left alone

        migrated = provision(server, provisioner)  # migrate, the default
        assert migrated.returncode == 0, migrated.stderr
        assert f"updated stream {DUE_STREAM}: max_age is 3600" in migrated.stdout
        await streams.ensure(js, _settings(server, identities["notifier-worker"]))
        assert (await js.stream_info(DUE_STREAM)).config.max_age == Settings().due_max_age_s
    finally:
        await nc.close()


async def test_the_command_says_what_is_wrong_with_its_settings(bare) -> None:
    server, identities = bare
    bad = provision(server, identities["provisioner"], extra_env={"BELLTOWER_STREAM_REPLICAS": "9"})
    assert bad.returncode == 2
    assert "BELLTOWER_STREAM_REPLICAS" in bad.stderr and "Traceback" not in bad.stderr


async def test_without_authentication_a_service_still_provisions_itself(fresh_nats) -> None:
    nc = await nats.connect(fresh_nats.url)
    try:
        js = nc.jetstream()
        assert streams.provisions(js, Settings(nats_url=fresh_nats.url))
        await streams.ensure(js, Settings(nats_url=fresh_nats.url))
        assert (await js.stream_info(RUNS_STREAM)).config.name == RUNS_STREAM
    finally:
        await nc.close()


async def test_the_command_says_plainly_when_it_cannot_provision(bare) -> None:
    server, identities = bare
    wrong = natsauth.Identity("provisioner", "provisioner", "not-the-password")
    refused = provision(server, wrong)
    assert refused.returncode == 1
    assert "refused these credentials" in refused.stderr and "Traceback" not in refused.stderr
    as_service = provision(
        server, identities["scheduler"], extra_env={"BELLTOWER_REQUEST_TIMEOUT_S": "2"}
    )
    assert as_service.returncode == 1, as_service.stdout + as_service.stderr
    assert "only the provisioner identity may create" in as_service.stderr
    assert "Traceback" not in as_service.stderr


def test_the_command_gives_up_on_an_unreachable_nats_naming_it() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BELLTOWER_")}
    url = f"nats://127.0.0.1:{free_port()}"
    done = subprocess.run(
        [str(STREAMS_COMMAND), "check", "--wait", "1"],
        env={**env, "BELLTOWER_NATS_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert f"NATS at {url} is not reachable after 1 s" in done.stderr
    assert "Traceback" not in done.stderr


async def test_a_process_connected_as_the_provisioner_provisions_at_start(bare) -> None:
    server, identities = bare
    errors: list[str] = []
    nc = await _connect(server, identities["provisioner"], errors)
    try:
        js = nc.jetstream(timeout=2)
        settings = _settings(server, identities["provisioner"])
        assert streams.provisions(js, settings)
        await streams.ensure(js, settings)
        assert (await js.stream_info(DUE_STREAM)).config.name == DUE_STREAM
    finally:
        await nc.close()
