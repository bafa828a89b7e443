"""The worker's publisher writes the very protocol commands nats-py's ``publish`` would."""

from __future__ import annotations

import pytest
from nats.aio.client import Client

from belltower.jsbatch import _frame

pytestmark = pytest.mark.unit


async def nats_py_command(
    subject: str, reply: str, payload: bytes, headers: dict[str, str] | None
) -> bytes:
    """What nats-py queues for this publish (a client never connected only queues it)."""
    client = Client()
    await client._send_publish(subject, reply, payload, len(payload), headers)
    return client._pending[-1]


@pytest.mark.parametrize(
    ("subject", "reply", "payload", "headers"),
    [
        ("$KV.belltower_claims.occ.1", "_INBOX.abc.7.0", b'{"state":"running"}', {"Nats-Expected-Last-Subject-Sequence": "0"}),
        (
            "belltower.run.finished.succeeded.system.canary",
            "_INBOX.abc.8.12",
            b'{"id":"r"}',
            {
                "Nats-Msg-Id": "f13b0aea-8c87-5c7b-90d4-493ce16ce34d",
                "Content-Type": "application/cloudevents+json",
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-02",
            },
        ),
        ("belltower.run.started.system.canary", "", "é".encode(), {"Nats-Msg-Id": "r.started.1"}),
        ("$JS.ACK.BELLTOWER_DUE.notifier.1.2.3.4.5", "", b"+ACK", None),
        ("a.b", "", b"", {}),
    ],
)  # fmt: skip
async def test_a_frame_is_what_nats_py_would_write(subject, reply, payload, headers) -> None:
    assert _frame(subject, reply, payload, headers) == await nats_py_command(
        subject, reply, payload, headers
    )


@pytest.mark.parametrize(
    ("subject", "headers"),
    [
        ("a b", None),  # nats-py refuses the subject
        ("a.b", {"Bad Key": "v"}),  # and the key
        ("a.b", {" Nats-Msg-Id": "v"}),  # strips the key
        ("a.b", {"Nats-Msg-Id": "one\r\nPUB x 0"}),  # replaces the line break
    ],
)
def test_what_nats_py_would_refuse_or_rewrite_is_left_to_it(subject, headers) -> None:
    assert _frame(subject, "", b"x", headers) is None
