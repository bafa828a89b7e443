"""The safety hold over real NATS and PostgreSQL: a held run's finished event lands in history as
``held``, a release is recorded once through the management API, and a roster sync's look-up
(the worker's own API client) finds it."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from belltower import operations as ops
from belltower.api import RunQuery
from belltower.errors import Conflict
from belltower.holds import ReleaseRequest
from belltower.jobtypes import JobContext, Output
from belltower.rpc import ApiClient
from belltower_history.app import HistoryService
from belltower_integration import safety
from tests.helpers.result_mail import finished, history_with, publish, wait_for


@pytest.fixture
async def history(settings) -> AsyncIterator[HistoryService]:
    service = await history_with(settings, {})
    yield service
    await service.on_shutdown()
    await service.broker.stop()


async def test_a_held_run_is_released_once_and_the_sync_finds_the_release(
    history: HistoryService, nc, pool
) -> None:
    event = finished(None, status="held", summary="held by the safety thresholds")
    run = event.data
    await publish(nc, event)
    await wait_for(pool, f"SELECT status FROM history.runs WHERE run_id = '{run.run_id}'", "held")
    api = ApiClient(nc, timeout=5)
    listed = await api.call(ops.RUNS_LIST, RunQuery(status="held", job_id=run.job_id))
    assert [r.run_id for r in listed] == [run.run_id]

    first = await api.call(ops.RUNS_RELEASE, ReleaseRequest(run_id=run.run_id, released_by="ed"))
    second = await api.call(ops.RUNS_RELEASE, ReleaseRequest(run_id=run.run_id, released_by="al"))
    assert (first.first, second.first, second.released_by) == (True, False, "ed")

    ok = finished(None)
    await publish(nc, ok)
    await wait_for(
        pool, f"SELECT status FROM history.runs WHERE run_id = '{ok.data.run_id}'", "succeeded"
    )
    with pytest.raises(Conflict, match="is succeeded, not held"):
        await api.call(ops.RUNS_RELEASE, ReleaseRequest(run_id=ok.data.run_id))

    async def progress(done: int | None, total: int | None, message: str) -> None:
        return None

    ctx = JobContext(
        run_id="r", occurrence_id="o", job_id=run.job_id, job_title="t", job_type=run.job_type,
        trigger="manual", requested_by=None, scheduled_for=datetime.now(UTC), attempt=1,
        deadline=time.monotonic() + 10, log=logging.LoggerAdapter(logging.getLogger("t"), {}),
        output=Output(), settings=history.settings, db=None, mailer=None, api=api,  # type: ignore[arg-type]
        _progress=progress,
    )  # fmt: skip
    assert [r.run_id for r in await safety.releases_of(ctx)] == [run.run_id]
