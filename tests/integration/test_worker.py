"""The worker runtime on real JetStream: claims, outcomes, redelivery and takeover."""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest

from belltower.subjects import CLAIMS_BUCKET, DUE_STREAM, RUNS_STREAM, claim_key
from belltower.worker import Claim
from tests.helpers.worker import (  # noqa: F401
    SleepParams,
    calls,
    due,
    finished_events,
    make_registry,
    publish,
)


async def test_a_run_is_claimed_run_and_reported(worker, nc) -> None:
    message = due(seconds=0.1)
    await publish(nc, message)
    [event] = await finished_events(nc)
    assert event.id == message.run_id and event.subject == message.job_id
    assert event.data.status == "succeeded" and "slept 0.1s" in event.data.output_text
    assert event.data.duration_ms >= 100
    claims = await nc.jetstream().key_value(CLAIMS_BUCKET)
    claim = msgspec.json.decode(
        (await claims.get(claim_key(message.occurrence_id))).value, type=Claim
    )
    assert claim.state == "finished"


async def test_a_finished_occurrence_delivered_again_is_not_run_again(worker, nc) -> None:
    message = due()
    await publish(nc, message)
    await finished_events(nc)
    await publish(nc, message, msg_id=f"{message.occurrence_id}-again")  # a second delivery of it
    js = nc.jetstream()
    deadline = time.monotonic() + 10
    while (await js.stream_info(DUE_STREAM)).state.messages and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert (await js.stream_info(DUE_STREAM)).state.messages == 0, (
        "the second delivery was not acked"
    )
    assert calls == [message.occurrence_id]
    assert len(await finished_events(nc, timeout=0)) == 1


@pytest.mark.parametrize(
    ("job_type", "params", "status", "words"),
    [
        ("test.sleep", {"fail": True}, "failed", "asked to fail"),
        ("test.crash", {}, "failed", "ZeroDivisionError: division by zero in a handler"),
        ("test.gone", {}, "failed", "job type 'test.gone' is not installed on the notifier-worker"),
        ("test.sleep", {"seconds": "lots"}, "failed", "parameters do not fit test.sleep"),
    ],
)
async def test_failures_are_recorded_with_a_clear_error(
    worker, nc, job_type, params, status, words
) -> None:
    await publish(nc, due(job_type, **params))
    [event] = await finished_events(nc)
    assert event.data.status == status
    assert words in (event.data.error or "")


async def test_a_run_over_its_timeout_is_timed_out(worker, nc) -> None:
    message = due(seconds=5)
    message.timeout_s = 0.3
    await publish(nc, message)
    [event] = await finished_events(nc)
    assert event.data.status == "timed_out"
    assert event.data.duration_ms < 3000


async def test_a_stale_claim_is_taken_over_and_completed_once(worker, nc) -> None:
    """A worker that died mid-run left a 'running' claim; the occurrence still completes, once."""
    message = due()
    claims = await nc.jetstream().key_value(CLAIMS_BUCKET)
    dead = Claim(state="running", worker="dead-host:1", attempt=1, heartbeat_at=time.time() - 60)
    await claims.create(claim_key(message.occurrence_id), msgspec.json.encode(dead))
    await publish(nc, message)
    [event] = await finished_events(nc)
    assert event.data.status == "succeeded"
    assert calls == [message.occurrence_id]


async def test_a_live_claim_held_elsewhere_is_left_alone(worker, nc) -> None:
    message = due()
    claims = await nc.jetstream().key_value(CLAIMS_BUCKET)
    alive = Claim(
        state="running", worker="other-host:1", attempt=1, heartbeat_at=time.time() + 3600
    )
    await claims.create(claim_key(message.occurrence_id), msgspec.json.encode(alive))
    await publish(nc, message)
    await asyncio.sleep(1.5)
    assert calls == []
    assert await finished_events(nc, timeout=0, expect=0) == []


async def test_progress_and_start_events_are_published(worker, nc) -> None:
    await publish(nc, due(seconds=0.05))
    await finished_events(nc)
    info = await nc.jetstream().stream_info(RUNS_STREAM, subjects_filter="belltower.run.>")
    subjects = set(info.state.subjects or {})
    assert {
        "belltower.run.started.test.sleep",
        "belltower.run.progress.test.sleep",
        "belltower.run.finished.succeeded.test.sleep",
    } <= subjects


async def test_runs_longer_than_several_heartbeats_keep_their_claim(worker, nc) -> None:
    """Heart-beats update the claim while the run goes on; the run must still commit its result."""
    messages = [due(seconds=1.5) for _ in range(16)]
    for message in messages:
        await publish(nc, message)
    events = await finished_events(nc, timeout=30, expect=len(messages))
    assert sorted(e.data.occurrence_id for e in events) == sorted(m.occurrence_id for m in messages)
    assert {e.data.status for e in events} == {"succeeded"}


async def test_more_occurrences_than_handler_slots_run_at_most_that_many_at_once_and_once_each(
    worker, nc
) -> None:
    """A worker keeps more occurrences in hand than it runs at once (worker_concurrency is 8
    here); those waiting for a slot keep their claim and delivery alive past ack_wait (2 s)."""
    messages = [due(seconds=0.4) for _ in range(40)]  # five waves of eight: about 2 s
    for message in messages:
        await publish(nc, message)
    events = await finished_events(nc, timeout=30, expect=len(messages))
    assert sorted(e.data.occurrence_id for e in events) == sorted(m.occurrence_id for m in messages)
    assert sorted(calls) == sorted(m.occurrence_id for m in messages), "one run each"
    edges = sorted(
        [(e.data.started_at, 1) for e in events] + [(e.data.finished_at, -1) for e in events]
    )
    running = most = 0
    for _, step in edges:  # an end and a start at the same instant count the end first
        running += step
        most = max(most, running)
    assert most <= worker.settings.worker_concurrency
