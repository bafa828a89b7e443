"""The scheduler's batch publisher against a real JetStream server: acks, refusals, the window."""

from __future__ import annotations

import uuid

import pytest
from nats.js.api import DiscardPolicy, StreamConfig

from belltower_scheduler.publisher import CONFIRMED, FAILED, PENDING, BatchPublisher, Stalled


def msg_id() -> dict[str, str]:
    return {"Nats-Msg-Id": str(uuid.uuid4())}


async def test_every_message_of_a_batch_is_confirmed_and_stored_in_order(nc) -> None:
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="PUBTEST", subjects=["pubtest.>"]))
    publisher = BatchPublisher(nc)
    batch = publisher.batch()
    for i in range(500):
        await publisher.publish(batch, "pubtest.a", str(i).encode(), msg_id())
    await batch.wait(10)
    publisher.forget(batch)
    assert batch.outcome == bytearray([CONFIRMED]) * 500
    assert batch.confirmed == 500 and batch.errors == []
    assert publisher.in_flight == 0
    sub = await js.pull_subscribe("pubtest.>", stream="PUBTEST")
    got = []
    while len(got) < 500:
        got += [int(m.data) for m in await sub.fetch(500, timeout=5)]
    assert got == list(range(500))


async def test_a_duplicate_is_acknowledged_and_stored_once(nc) -> None:
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="PUBDUP", subjects=["pubdup.>"]))
    publisher = BatchPublisher(nc)
    headers = msg_id()
    batch = publisher.batch()
    await publisher.publish(batch, "pubdup.a", b"first", headers)
    await publisher.publish(batch, "pubdup.a", b"again", headers)
    await batch.wait(10)
    assert list(batch.outcome) == [CONFIRMED, CONFIRMED]  # JetStream drops the copy, says so
    assert (await js.stream_info("PUBDUP")).state.messages == 1


async def test_no_stream_and_a_refusing_stream_fail_with_the_reason(nc) -> None:
    js = nc.jetstream()
    await js.add_stream(
        StreamConfig(name="PUBFULL", subjects=["pubfull.>"], max_msgs=1, discard=DiscardPolicy.NEW)
    )
    publisher = BatchPublisher(nc)
    batch = publisher.batch()
    await publisher.publish(batch, "nostream.here", b"x", msg_id())
    await publisher.publish(batch, "pubfull.a", b"1", msg_id())
    await publisher.publish(batch, "pubfull.a", b"2", msg_id())  # over max_msgs: refused
    await batch.wait(10)
    assert list(batch.outcome) == [FAILED, CONFIRMED, FAILED]
    assert batch.refused == 2
    assert "503" in batch.errors[0]
    assert "maximum messages" in batch.errors[1]
    assert publisher.in_flight == 0


async def test_the_window_bounds_what_is_unacknowledged(nc) -> None:
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="PUBWIN", subjects=["pubwin.>"]))
    publisher = BatchPublisher(nc, max_pending=8)
    batch = publisher.batch()
    most = 0
    for i in range(200):
        await publisher.publish(batch, "pubwin.a", str(i).encode(), msg_id())
        most = max(most, publisher.in_flight)
    await batch.wait(10)
    assert most <= 8
    assert batch.confirmed == 200
    assert (await js.stream_info("PUBWIN")).state.messages == 200


class Swallowing:
    """A connection whose publishes never reach the server (so are never acknowledged)."""

    def __init__(self, nc) -> None:
        self.nc = nc

    def __getattr__(self, name):
        return getattr(self.nc, name)

    async def publish(self, subject, payload=b"", reply="", headers=None):
        pass


async def test_what_is_not_acknowledged_in_time_stays_pending_and_frees_the_window(nc) -> None:
    publisher = BatchPublisher(Swallowing(nc), max_pending=4)
    batch = publisher.batch()
    for _ in range(4):
        await publisher.publish(batch, "pubgone.a", b"x", msg_id())
    await batch.wait(0.2)
    assert list(batch.outcome) == [PENDING] * 4
    assert publisher.in_flight == 4
    publisher.forget(batch)
    assert publisher.in_flight == 0
    second = publisher.batch()  # the window is open again: this does not wait
    await publisher.publish(second, "pubgone.a", b"y", msg_id())
    assert publisher.in_flight == 1


async def test_a_full_window_that_is_never_acknowledged_stops_publishing_with_an_error(nc) -> None:
    publisher = BatchPublisher(Swallowing(nc), max_pending=3, stall_s=0.2)
    batch = publisher.batch()
    for _ in range(3):
        await publisher.publish(batch, "pubgone.a", b"x", msg_id())
    with pytest.raises(Stalled, match=r"acknowledged none of 3 messages in 0\.2 s"):
        await publisher.publish(batch, "pubgone.a", b"x", msg_id())
    assert len(batch.outcome) == 3  # the one refused was not counted as published
