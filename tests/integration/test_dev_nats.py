"""``make dev``'s NATS: the users of ``.dev/``, clients and monitoring on 127.0.0.1 only, and the
streams provisioned as the provisioner before any service starts (the services may not)."""

from __future__ import annotations

import io
import json
import urllib.request
from pathlib import Path

import nats
import pytest
from nats.errors import Error as NatsError

from belltower import natsauth, natsclient, streams
from belltower.settings import Settings
from belltower.subjects import DUE_STREAM
from belltower_dev import devstack
from belltower_dev.localservers import free_port


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return json.load(reply)


async def test_the_dev_nats_listens_on_localhost_and_is_provisioned_before_the_services(
    tmp_path: Path,
) -> None:
    paths = devstack.DevPaths(tmp_path / ".dev")
    paths.root.mkdir()
    auth = natsauth.prepare_dev(paths.root)
    server = devstack.dev_nats(paths, auth, port=free_port(), monitor_port=free_port())
    with server:
        varz = _get(f"{server.monitor_url}/varz")
        # the monitoring port has no authentication of its own: only this machine reaches it
        assert varz["http_host"] == "127.0.0.1" and varz["http_port"] == server.monitor_port
        assert varz["host"] == "127.0.0.1"
        assert varz["auth_required"] is True
        with pytest.raises(NatsError, match=r"(?i)authorization"):
            await nats.connect(server.url, allow_reconnect=False, max_reconnect_attempts=0)

        said = io.StringIO()
        await devstack.provision_streams(server, auth, devstack.Terminal(said))
        assert (
            streams.COMMAND in said.getvalue() and f"created stream {DUE_STREAM}" in said.getvalue()
        )

        identity = auth.identities["history"]
        settings = Settings(
            nats_url=server.url, nats_user=identity.user, nats_password=identity.password
        )
        nc = await nats.connect(
            server.url, allow_reconnect=False, **natsclient.connect_options(settings, "history")
        )
        try:
            await streams.ensure(nc.jetstream(timeout=2), settings)  # a service now starts
        finally:
            await nc.close()
