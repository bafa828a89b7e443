"""Every service checks, before it relies on it, that NATS can do what Belltower needs, and that
the streams it finds are the ones the code declares."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import nats
import pytest
from nats.js.api import DiscardPolicy
from nats.js.errors import APIError

from belltower import streams
from belltower.errors import ConfigurationError
from belltower.settings import Settings
from belltower.subjects import DUE_STREAM, due_subject
from belltower_dev.localservers import NatsServer


def test_versions_before_2_11_are_refused_naming_found_and_needed() -> None:
    for old in ("2.9.25", "2.10.22", "v2.10.0"):
        with pytest.raises(
            ConfigurationError,
            match=rf"nats-server {old} at nats://x is too old: Belltower needs 2\.11\.0",
        ):
            streams.check_server({"version": old, "jetstream": True}, "nats://x")
    streams.check_server({"version": "2.11.0", "jetstream": True})
    streams.check_server({"version": "2.15.1-dev", "jetstream": True})
    with pytest.raises(ConfigurationError, match="without JetStream: start it with -js"):
        streams.check_server({"version": "2.12.1", "jetstream": False})


def _old_nats_server() -> Path | None:
    """A nats-server older than 2.11 installed on this machine (Debian's package), if any."""
    found = shutil.which("nats-server", path="/usr/sbin:/usr/bin:/usr/local/bin")
    if found is None:
        return None
    out = subprocess.run([found, "--version"], capture_output=True, text=True, check=False)
    version = out.stdout.strip().rsplit("v", 1)[-1]
    try:
        return Path(found) if streams.server_version(version) < streams.MIN_SERVER else None
    except ConfigurationError:
        return None


async def test_a_service_refuses_an_old_server(tmp_path: Path) -> None:
    binary = _old_nats_server()
    if binary is None:
        pytest.skip(
            "no nats-server older than 2.11 on this machine to start (Debian's nats-server)"
        )
    with NatsServer(binary=binary) as server:
        nc = await nats.connect(server.url)
        try:
            with pytest.raises(ConfigurationError, match=r"is too old: Belltower needs 2\.11\.0"):
                await streams.ensure(nc.jetstream(), Settings(nats_url=server.url))
        finally:
            await nc.close()


async def test_a_drifted_stream_is_migrated_or_refused(fresh_nats) -> None:
    settings = Settings(nats_url=fresh_nats.url)
    nc = await nats.connect(fresh_nats.url)
    try:
        js = nc.jetstream()
        [due, _] = streams.stream_configs(settings)
        await js.add_stream(dataclasses.replace(due, max_age=3600.0))
        refuse = settings.model_copy(update={"stream_drift": "refuse"})
        with pytest.raises(
            ConfigurationError, match=r"stream BELLTOWER_DUE differs .*max_age is 3600.0"
        ):
            await streams.ensure(js, refuse)
        assert (await js.stream_info(DUE_STREAM)).config.max_age == 3600
        await streams.ensure(js, settings)  # migrate, the default
        assert (await js.stream_info(DUE_STREAM)).config.max_age == settings.due_max_age_s
        await streams.ensure(js, refuse)  # nothing differs any more
    finally:
        await nc.close()


async def test_a_full_due_stream_refuses_publishes_instead_of_dropping_the_oldest(
    fresh_nats,
) -> None:
    """Discard new: an occurrence JetStream cannot keep is refused (the scheduler keeps it
    pending and retries), never accepted at the cost of an older one. A stream declared before
    (discard old) is migrated."""
    settings = Settings(nats_url=fresh_nats.url)
    nc = await nats.connect(fresh_nats.url)
    try:
        js = nc.jetstream()
        [due, _] = streams.stream_configs(settings)
        await js.add_stream(dataclasses.replace(due, discard=DiscardPolicy.OLD))
        await streams.ensure(js, settings)
        config = (await js.stream_info(DUE_STREAM)).config
        assert config.discard == DiscardPolicy.NEW
        await js.update_stream(dataclasses.replace(config, max_bytes=2_000))
        accepted, refused = 0, []
        for i in range(30):
            try:
                await js.publish(due_subject("notifier", "system.canary"), b"x" * 100, headers={"Nats-Msg-Id": f"occ-{i}"})  # fmt: skip
                accepted += 1
            except APIError as exc:
                refused.append(exc.description)
        state = (await js.stream_info(DUE_STREAM)).state
        print(f"max_bytes 2000: {accepted} accepted, {len(refused)} refused, {state.messages} kept")
        assert refused and accepted == state.messages, "every accepted publish is still there"
        assert state.first_seq == 1, "none of the oldest was dropped to make room"
        assert set(refused) == {"maximum bytes exceeded"}
    finally:
        await nc.close()
