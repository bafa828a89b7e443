"""Each NATS identity can do its part and nothing else, on a real nats-server with the rendered
permissions; an anonymous or wrong client is refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError

from belltower import natsauth, natsclient, streams
from belltower.settings import Settings
from belltower.subjects import DUE_STREAM, worker_consumer
from belltower.worker import Worker
from belltower_notifier.jobs import registry
from tests.secured_nats import secured_nats

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "subscribe_run_finished.py"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    with secured_nats(tmp_path_factory.mktemp("secured")) as found:
        yield found


class Probe:
    """A client of one role that records the permission errors the server sends it."""

    def __init__(self, role: natsauth.Role) -> None:
        self.role = role
        self.errors: list[str] = []
        self.nc: Client | None = None

    async def connect(self, url: str, identity: natsauth.Identity) -> Probe:
        settings = Settings(nats_url=url, **_settings_of(identity))

        async def record(exc: Exception) -> None:
            self.errors.append(str(exc).lower())

        self.nc = await nats.connect(
            url,
            allow_reconnect=False,
            error_cb=record,
            **natsclient.connect_options(settings, self.role),
        )
        return self

    async def refused(self, subject: str, verb: str = "publish") -> bool:
        """Whether the server refused this publish (or subscription) of ``subject``."""
        assert self.nc is not None
        self.errors.clear()
        if verb == "publish":
            await self.nc.publish(subject, b"{}")
        else:
            await self.nc.subscribe(subject)
        await self.nc.flush()
        await asyncio.sleep(0.05)
        said = "publish" if verb == "publish" else "subscription"
        return any(f'{said} to "{subject.lower()}"' in e for e in self.errors)


def _settings_of(identity: natsauth.Identity) -> dict[str, object]:
    return {"nats_user": identity.user, "nats_password": identity.password}


@pytest.fixture
async def probe(secured) -> AsyncIterator:
    server, identities = secured
    made: list[Probe] = []

    async def make(role: natsauth.Role) -> Probe:
        made.append(await Probe(role).connect(server.url, identities[role]))
        return made[-1]

    yield make
    for p in made:
        if p.nc is not None and not p.nc.is_closed:
            await p.nc.close()


async def test_an_anonymous_or_wrong_client_cannot_connect(secured) -> None:
    server, identities = secured
    with pytest.raises(NatsError, match=r"(?i)authorization"):
        await nats.connect(server.url, allow_reconnect=False, max_reconnect_attempts=0)
    with pytest.raises(NatsError, match=r"(?i)authorization"):
        await nats.connect(
            server.url,
            user="scheduler",
            password=identities["console"].password,
            allow_reconnect=False,
            max_reconnect_attempts=0,
        )


PUBLISH = [
    # (role, subject, allowed)
    ("integrator", "belltower.due.notifier.system.canary", False),
    ("integrator", "belltower.api.scheduler.jobs.create", False),
    ("integrator", "belltower.run.finished.succeeded.system.canary", False),
    ("notifier-worker", "belltower.due.notifier.system.canary", False),
    ("notifier-worker", "belltower.api.scheduler.jobs.delete", False),
    ("notifier-worker", "belltower.run.started.system.canary", True),
    ("integration-worker", "belltower.due.integration.files.sftp_upload", False),
    ("integration-worker", "belltower.api.scheduler.jobs.create", False),
    ("integration-worker", "belltower.api.scheduler.jobs.list", True),
    ("integration-worker", "belltower.api.history.runs.purge", True),
    # roster syncs read the releases of their held runs, and may not release one themselves
    ("integration-worker", "belltower.api.history.runs.releases", True),
    ("integration-worker", "belltower.api.history.runs.release", False),
    ("history", "belltower.api.scheduler.jobs.create", False),
    ("history", "belltower.api.history.runs.purge", False),
    ("history", "belltower.run.finished.succeeded.system.canary", False),
    ("history", "belltower.due.notifier.system.canary", False),
    ("scheduler", "belltower.run.finished.succeeded.system.canary", False),
    ("scheduler", "belltower.due.notifier.system.canary", True),
    # the reconciler: its verdicts as finished events and claims, and the look-up of a copy
    ("scheduler", "belltower.run.finished.lost.system.canary", True),
    ("scheduler", "belltower.run.finished.abandoned.system.canary", True),
    ("scheduler", "belltower.run.started.system.canary", False),
    # job state: the failing, recovered and overdue alerts are the scheduler's alone
    ("scheduler", "belltower.run.alert.failing.system.canary", True),
    ("scheduler", "belltower.run.alert.overdue.system.canary", True),
    ("notifier-worker", "belltower.run.alert.failing.system.canary", False),
    ("integration-worker", "belltower.run.alert.recovered.system.canary", False),
    ("scheduler", "$KV.belltower_claims.occ.00000000-0000-0000-0000-000000000000", True),
    ("scheduler", "$JS.API.STREAM.MSG.GET.BELLTOWER_DUE", True),
    ("scheduler", "$JS.API.STREAM.PURGE.BELLTOWER_DUE", False),
    ("scheduler", "belltower.scheduler.run-now.0", True),
    ("console", "belltower.due.notifier.system.canary", False),
    ("console", "belltower.run.finished.failed.system.canary", False),
    ("console", "belltower.api.scheduler.jobs.create", True),
    ("console", "belltower.api.history.runs.list", True),
    ("console", "belltower.api.integration.oneroster.read", True),
    ("console", "$KV.belltower_leases.partition.0", False),
    ("console", "$JS.API.STREAM.DELETE.BELLTOWER_RUNS", False),
    ("notifier-worker", "$JS.API.STREAM.PURGE.BELLTOWER_DUE", False),
    ("notifier-worker", "$KV.belltower_catalog.pool.integration", False),
    ("integrator", "$JS.API.CONSUMER.DELETE.BELLTOWER_RUNS.history", False),
    ("integrator", "$JS.API.CONSUMER.DURABLE.CREATE.BELLTOWER_RUNS.history", False),
]


def test_only_services_may_call_the_raw_management_api() -> None:
    """People come through the console, which authenticates them and writes the audit log; the
    management API on NATS is the console's and the daily maintenance job's, and no one else's
    (the CLI has no NATS identity: it calls the console's HTTP API)."""
    callers = {
        role
        for role, permissions in natsauth.PERMISSIONS.items()
        if any(s.startswith(("belltower.api.", ">")) for s in permissions.publish)
    }
    assert callers == {"console", "integration-worker"}
    assert "cli" not in natsauth.ROLES
    maintenance = natsauth.PERMISSIONS["integration-worker"].publish
    assert sorted(s for s in maintenance if s.startswith("belltower.api.")) == [
        "belltower.api.history.runs.purge",
        "belltower.api.history.runs.releases",
        "belltower.api.scheduler.jobs.list",
        "belltower.api.scheduler.ledger.purge",
    ]


@pytest.mark.parametrize(("role", "subject", "allowed"), PUBLISH)
async def test_each_role_publishes_only_its_subjects(probe, role, subject, allowed) -> None:
    client = await probe(role)
    assert await client.refused(subject) is not allowed


SUBSCRIBE = [
    ("integrator", "belltower.run.>", True),
    ("integrator", "belltower.api.>", False),
    ("integrator", "belltower.due.>", False),
    ("integrator", "belltower.deliver.history", False),
    ("integrator", "_INBOX.console.>", False),
    ("notifier-worker", "belltower.api.scheduler.>", False),
    ("console", "belltower.run.>", False),
    ("history", "belltower.api.history.>", True),
    # the OneRoster provider's reads are the integration worker's to answer, no one else's
    ("integration-worker", "belltower.api.integration.>", True),
    ("integration-worker", "belltower.api.scheduler.>", False),
    ("notifier-worker", "belltower.api.integration.>", False),
    ("history", "belltower.api.integration.>", False),
    ("history", "belltower.api.scheduler.>", False),
    ("scheduler", "belltower.api.scheduler.>", True),
    ("scheduler", "belltower.scheduler.run-now.*", True),
    ("console", "belltower.scheduler.run-now.*", False),
    ("console", "_INBOX.>", False),
]


@pytest.mark.parametrize(("role", "subject", "allowed"), SUBSCRIBE)
async def test_each_role_subscribes_only_to_its_subjects(probe, role, subject, allowed) -> None:
    client = await probe(role)
    assert await client.refused(subject, "subscribe") is not allowed


async def test_the_integrator_reads_run_events_from_its_own_durable_consumer(probe) -> None:
    scheduler = await probe("scheduler")
    assert scheduler.nc is not None
    await streams.ensure(scheduler.nc.jetstream(), Settings())
    worker = await probe("notifier-worker")
    assert worker.nc is not None
    ack = await worker.nc.jetstream().publish(
        "belltower.run.finished.succeeded.system.canary",
        b'{"id": "e1"}',
        headers={"Nats-Msg-Id": "perm-test-e1"},
    )
    assert ack.stream == "BELLTOWER_RUNS"
    integrator = await probe("integrator")
    assert integrator.nc is not None
    js = integrator.nc.jetstream()
    sub = await js.pull_subscribe(
        "belltower.run.finished.>", durable="district-lms", stream="BELLTOWER_RUNS"
    )
    # The module's server is shared: earlier rows may have left other run events in the stream.
    seen = []
    while b'{"id": "e1"}' not in seen:
        (message,) = await sub.fetch(1, timeout=5)
        seen.append(message.data)
        await message.ack()
    assert len(seen) <= 100, seen
    with pytest.raises(NatsError):
        await js.publish("belltower.run.finished.succeeded.system.canary", b"{}", timeout=1)


async def test_a_service_verifies_the_server_over_tls(tmp_path: Path) -> None:
    from tests.tls import make_ca_and_server_cert

    tls = make_ca_and_server_cert(tmp_path)
    with secured_nats(tmp_path, tls=tls) as (server, identities):
        verified = Settings(
            nats_url=server.url, nats_tls_ca=tls.ca, **_settings_of(identities["scheduler"])
        )
        nc = await nats.connect(
            server.url, allow_reconnect=False, **natsclient.connect_options(verified, "scheduler")
        )
        assert nc.connected_url is not None and nc.is_connected
        await nc.close()
        unverified = Settings(nats_url=server.url, **_settings_of(identities["scheduler"]))
        with pytest.raises(Exception, match=r"(?i)certificate|tls|ssl"):
            await nats.connect(
                server.url,
                allow_reconnect=False,
                max_reconnect_attempts=0,
                connect_timeout=3,
                **natsclient.connect_options(unverified, "scheduler"),
            )


async def test_a_server_asking_for_client_certificates_refuses_a_client_without_one(
    tmp_path: Path,
) -> None:
    from tests.tls import make_ca_and_server_cert, make_client_cert

    tls = make_ca_and_server_cert(tmp_path, verify_clients=True)
    cert, key = make_client_cert(tmp_path)
    with secured_nats(tmp_path, tls=tls, provisioned=False) as (server, identities):
        base = {
            "nats_url": server.url,
            "nats_tls_ca": tls.ca,
            **_settings_of(identities["integrator"]),
        }
        with pytest.raises(Exception):  # noqa: B017 - the TLS handshake fails, however it says so
            await nats.connect(
                server.url,
                allow_reconnect=False,
                max_reconnect_attempts=0,
                connect_timeout=3,
                **natsclient.connect_options(Settings(**base), "integrator"),
            )
        mutual = Settings(**base, nats_tls_cert=cert, nats_tls_key=key)
        nc = await nats.connect(
            server.url, allow_reconnect=False, **natsclient.connect_options(mutual, "integrator")
        )
        assert nc.is_connected
        await nc.close()


def test_settings_that_cannot_work_are_refused_with_the_variable_to_set(tmp_path: Path) -> None:
    from belltower.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="BELLTOWER_NATS_PASSWORD"):
        natsclient.credentials(Settings(nats_user="scheduler"))
    with pytest.raises(ConfigurationError, match="BELLTOWER_NATS_TLS_KEY"):
        natsclient.tls_context(Settings(nats_tls_cert=tmp_path / "c.pem"))
    with pytest.raises(ConfigurationError, match="BELLTOWER_NATS_CREDS"):
        natsclient.credentials(Settings(nats_creds=tmp_path / "missing.creds"))


async def test_the_documented_subscriber_works_as_the_integrator(
    probe, secured, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    server, identities = secured
    spec = importlib.util.spec_from_file_location("subscribe_run_finished", EXAMPLE)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    scheduler = await probe("scheduler")
    await streams.ensure(scheduler.nc.jetstream(), Settings())
    worker = await probe("notifier-worker")
    await worker.nc.jetstream().publish(
        "belltower.run.finished.failed.system.canary",
        b'{"id": "doc-1"}',
        headers={"Nats-Msg-Id": "perm-test-doc-1"},
    )
    monkeypatch.setenv("NATS_USER", "integrator")
    monkeypatch.setenv("NATS_PASSWORD", identities["integrator"].password)
    events = example.run_finished_events(
        server.url, "belltower.run.finished.failed.>", durable="doc-example"
    )
    try:
        event = await asyncio.wait_for(anext(events), 10)
    finally:
        await events.aclose()
    assert event == {"id": "doc-1"}


async def test_the_dev_stack_keeps_its_users_and_a_client_beside_it_finds_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dev = tmp_path / ".dev"
    first = natsauth.prepare_dev(dev)
    again = natsauth.prepare_dev(dev)
    assert again.identities == first.identities  # passwords survive a restart
    assert (dev / natsauth.DEV_IDENTITIES).stat().st_mode & 0o077 == 0
    monkeypatch.chdir(tmp_path)
    found = natsauth.with_dev_identity(Settings(), "integrator")
    assert (found.nats_user, found.nats_password.get_secret_value()) == (
        "integrator",
        first.identities["integrator"].password,
    )
    elsewhere = natsauth.with_dev_identity(
        Settings(nats_url="nats://nats.school:4222"), "integrator"
    )
    assert elsewhere.nats_user is None  # dev passwords never go to another server
    from belltower_dev.localservers import NatsServer

    with NatsServer(store_dir=tmp_path / "nats", args=first.server_args()) as server:
        with pytest.raises(NatsError, match=r"(?i)authorization"):
            await nats.connect(server.url, allow_reconnect=False, max_reconnect_attempts=0)
        assert first.env("scheduler")["BELLTOWER_NATS_USER"] == "scheduler"
        settings = Settings(nats_url=server.url, **_settings_of(first.identities["scheduler"]))
        nc = await nats.connect(
            server.url, allow_reconnect=False, **natsclient.connect_options(settings, "scheduler")
        )
        await nc.close()


async def test_the_console_saves_site_settings_that_history_reads_but_cannot_change(
    probe,
) -> None:
    from belltower import sitesettings

    console = await probe("console")
    await sitesettings.save(
        console.nc.jetstream(), sitesettings.SiteSettings(result_mail_only_failures=True)
    )
    history = await probe("history")
    loaded = await sitesettings.load(history.nc.jetstream())
    assert loaded.result_mail_only_failures is True
    assert await history.refused("$KV.belltower_settings.site")
    worker = await probe("integration-worker")
    assert await worker.refused("$KV.belltower_settings.site")


async def test_a_worker_may_create_its_pools_consumer_again_after_it_was_deleted(probe) -> None:
    """streams.keep_consumer under the worker's own identity: the consumer is missing (as after
    an operator's ``nats consumer rm``), the worker looks it up and creates it again."""
    scheduler = await probe("scheduler")
    assert scheduler.nc is not None
    await streams.ensure(scheduler.nc.jetstream(), Settings())
    worker = await probe("notifier-worker")
    assert worker.nc is not None
    js = worker.nc.jetstream()
    config = Worker("notifier", registry, Settings()).consumer_config()
    keeper = asyncio.create_task(streams.keep_consumer(js, DUE_STREAM, config, every_s=0.05))
    try:
        for _ in range(100):
            try:
                info = await js.consumer_info(DUE_STREAM, worker_consumer("notifier"))
                break
            except NotFoundError:
                await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"not created; the server said: {worker.errors}")
    finally:
        keeper.cancel()
    assert info.config.filter_subject == config.filter_subject
    assert not worker.errors, worker.errors
