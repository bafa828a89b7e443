"""What the worker reads of a delivery without nats-py's full metadata, and its batch metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from nats.aio.msg import Msg
from prometheus_client import REGISTRY

from belltower import metrics
from belltower.worker import _delivered_and_seq

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "reply",
    [
        "$JS.ACK.BELLTOWER_DUE.notifier-worker.3.1207.9.1764876000000000000.41",
        "$JS.ACK._.ACCOUNTHASH.BELLTOWER_DUE.notifier-worker.2.88.7.1764876000000000000.0.tok",
        "$JS.ACK.hub.ACCOUNTHASH.BELLTOWER_DUE.notifier-worker.1.5.5.1764876000000000000.3",
    ],
)
def test_the_attempt_and_sequence_are_those_of_the_metadata(reply) -> None:
    msg = Msg(_client=None, subject="s", reply=reply)  # type: ignore[arg-type]
    assert _delivered_and_seq(msg) == (msg.metadata.num_delivered, msg.metadata.sequence.stream)


def test_a_plain_message_is_a_first_attempt_with_no_sequence() -> None:
    assert _delivered_and_seq(Msg(_client=None, subject="s", reply="")) == (1, 0)  # type: ignore[arg-type]
    assert _delivered_and_seq(Msg(_client=None, subject="s", reply="_INBOX.x")) == (1, 0)  # type: ignore[arg-type]


def _samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    wanted = (
        "belltower_runs_total",
        "belltower_run_duration_seconds",
        "belltower_queue_wait_seconds",
    )
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in REGISTRY.collect()
        if family.name.startswith(wanted)
        for s in family.samples
    }


def test_a_batch_is_counted_as_its_runs_one_by_one() -> None:
    at = datetime(2030, 3, 4, 9, tzinfo=UTC)
    runs = [
        SimpleNamespace(job_type=t, status=st, duration_ms=ms, started_at=at + timedelta(seconds=w), dispatched_at=at)
        for t, st, ms, w in [("a.one", "succeeded", 5, 0.2), ("a.one", "failed", 900, 3), ("a.two", "succeeded", 40, 0)]
    ]  # fmt: skip
    before = _samples()
    for run in runs:
        metrics.record_run("pool-one", run)
    one_by_one = {k: v - before.get(k, 0.0) for k, v in _samples().items()}
    before = _samples()
    metrics.record_runs("pool-one", runs)
    batched = {k: v - before.get(k, 0.0) for k, v in _samples().items()}
    assert batched == pytest.approx(one_by_one)
    assert any(v for v in batched.values())
