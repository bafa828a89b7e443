"""Retries with backoff and dead-lettering, on real JetStream redelivery."""

from __future__ import annotations

import asyncio
import time

import msgspec

from belltower.events import RunProgress
from belltower.subjects import CLAIMS_BUCKET, RUNS_STREAM, claim_key
from belltower.worker import Claim
from tests.helpers.worker import calls, due, finished_events, publish
from tests.support import stream_messages


async def retry_notices(nc) -> list[str]:
    return [
        msgspec.json.decode(m.data, type=RunProgress).data.message
        for m in await stream_messages(nc.jetstream(), RUNS_STREAM, "belltower.run.progress.")
        if ".retry." in m.headers.get("Nats-Msg-Id", "")
    ]


async def test_a_failing_run_is_retried_then_recorded_failed_once(worker, nc) -> None:
    message = msgspec.structs.replace(
        due(fail=True), retries=2, backoff_s=(0.2, 2.0, 0.3), max_deliveries=5
    )
    await publish(nc, message)
    [event] = await finished_events(nc, timeout=15)
    await asyncio.sleep(0.5)  # nothing more may come
    assert len(await finished_events(nc, timeout=0)) == 1
    assert (event.data.status, event.data.attempt, event.data.error) == (
        "failed",
        3,
        "asked to fail",
    )
    assert calls.count(message.occurrence_id) == 3
    assert event.id == message.run_id  # one run, whatever the attempts
    notices = await retry_notices(nc)
    assert notices == [
        "attempt 1 failed: asked to fail; retry 1 of 2 in 0.2s",
        "attempt 2 failed: asked to fail; retry 2 of 2 in 0.3s",
    ]


async def test_a_run_out_of_deliveries_is_dead_lettered_with_the_reason(worker, nc) -> None:
    message = msgspec.structs.replace(
        due(fail=True), retries=5, backoff_s=(0.1, 1.0, 0.1), max_deliveries=2
    )
    await publish(nc, message)
    [event] = await finished_events(nc, timeout=15)
    assert event.data.status == "dead_lettered"
    assert event.data.error == "dead-lettered after 2 deliveries; last error: asked to fail"
    assert calls.count(message.occurrence_id) == 2


async def test_a_run_that_succeeds_is_not_retried(worker, nc) -> None:
    message = msgspec.structs.replace(due(seconds=0.0), retries=1, backoff_s=(0.1, 1.0, 0.1))
    await publish(nc, message)
    [event] = await finished_events(nc)
    assert (event.data.status, event.data.attempt) == ("succeeded", 1)
    assert await retry_notices(nc) == []


async def test_deliveries_without_a_result_end_dead_lettered_not_retried_forever(
    worker,
    nc,
) -> None:
    """The worker running it died (its claim stopped heart-beating); with one delivery allowed,
    the next delivery records the run dead-lettered instead of running it again."""
    message = msgspec.structs.replace(due(), max_deliveries=1)
    claims = await nc.jetstream().key_value(CLAIMS_BUCKET)
    lease = worker.lease_s
    dying = Claim(
        state="running", worker="dead-host:1", attempt=1, heartbeat_at=time.time() - lease + 0.5
    )
    await claims.create(claim_key(message.occurrence_id), msgspec.json.encode(dying))
    await publish(nc, message)
    [event] = await finished_events(nc, timeout=15)
    assert event.data.status == "dead_lettered"
    assert event.data.error is not None and event.data.error.startswith(
        "dead-lettered after 1 deliveries"
    )
    assert calls == []


async def test_a_run_over_its_timeout_is_stopped_and_retried(worker, nc) -> None:
    message = msgspec.structs.replace(
        due(seconds=30), timeout_s=0.3, retries=1, backoff_s=(0.1, 1.0, 0.1)
    )
    await publish(nc, message)
    [event] = await finished_events(nc, timeout=15)
    assert (event.data.status, event.data.attempt) == ("timed_out", 2)
    assert event.data.error == "timed out after 0.3s"
    assert event.data.duration_ms < 5_000
    assert calls.count(message.occurrence_id) == 2
