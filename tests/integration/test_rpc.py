"""Typed calls over real NATS: an Endpoint subscribed through faststream, as the services
subscribe theirs, answers an ApiClient that calls by declaration; the reply comes back as the
declared type and every error class of the code table comes back as itself."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import msgspec
import pytest

from belltower import operations as ops
from belltower.api import (
    JobsPageRequest,
    LastRunsRequest,
    PurgeRequest,
    PurgeResult,
    RunQuery,
    RunRecord,
    RunRef,
    RunsPage,
    RunsPageRequest,
)
from belltower.broker import make_broker, serve_api
from belltower.errors import (
    BelltowerError,
    InternalError,
    InvalidInput,
    Unavailable,
    wire_codes,
)
from belltower.holds import Release, ReleaseRequest, ReleasesQuery, ReleaseStarted
from belltower.rpc import ApiClient, Endpoint, Reply, raise_error, serves
from belltower.settings import Settings

AT = datetime(2026, 12, 1, 7, 30, tzinfo=UTC)
JOB = str(uuid.uuid4())


def record(run_id: str) -> RunRecord:
    return RunRecord(
        run_id=run_id, occurrence_id=run_id, job_id=JOB,
        job_type="system.canary", job_title="Canary", status="succeeded", trigger="manual",
        requested_by="alice", priority=500, scheduled_for=AT, dispatched_at=AT, started_at=AT,
        finished_at=AT, duration_ms=12, attempt=1, worker="w1", summary="ok", output_text="ok\n",
        output_html=None, error=None, trace_id=None,
    )  # fmt: skip


class StandInHistory:
    """Answers history's operations; a run id in ``raising`` makes runs.get raise that error."""

    def __init__(self) -> None:
        self.raising: dict[str, Exception] = {}
        self.queries: list[RunQuery] = []

    @serves(ops.RUNS_LIST)
    async def list_runs(self, query: RunQuery) -> list[RunRecord]:
        self.queries.append(query)
        return [record(str(uuid.uuid4())) for _ in range(query.limit)]

    @serves(ops.RUNS_PAGE)
    async def page_runs(self, request: RunsPageRequest) -> RunsPage:
        return RunsPage(runs=[record(str(uuid.uuid4())) for _ in range(request.limit)])

    @serves(ops.RUNS_LAST)
    async def last_runs(self, request: LastRunsRequest) -> list[RunRecord]:
        return [record(str(uuid.uuid4())) for _ in request.job_ids]

    @serves(ops.RUNS_GET)
    async def get_run(self, ref: RunRef) -> RunRecord:
        if ref.run_id in self.raising:
            raise self.raising[ref.run_id]
        return record(ref.run_id)

    @serves(ops.RUNS_PURGE)
    async def purge(self, request: PurgeRequest) -> PurgeResult:
        return PurgeResult(
            deleted=len(request.keep_days), by_job=dict.fromkeys(request.keep_days, 1)
        )

    @serves(ops.RUNS_RELEASE)
    async def release(self, request: ReleaseRequest) -> Release:
        return _release(request.run_id)

    @serves(ops.RUNS_RELEASE_STARTED)
    async def release_started(self, request: ReleaseStarted) -> Release:
        return _release(request.run_id, request.release_run_id)

    @serves(ops.RUNS_RELEASES)
    async def releases(self, query: ReleasesQuery) -> list[Release]:
        return []


def _release(run_id: str, release_run_id: str | None = None) -> Release:
    return Release(
        run_id=run_id,
        job_id=str(uuid.uuid4()),
        released_by="editor",
        released_from=None,
        released_at=datetime.now(UTC),
        release_run_id=release_run_id,
    )


async def answering(api: ApiClient) -> None:
    """Wait until the endpoint answers: on a loaded machine the first request can reach the
    server before the subscriptions of the other connection are visible to it (CI saw a
    NoResponders once, right after the broker's flush)."""
    for _ in range(50):
        try:
            await api.call(ops.RUNS_GET, RunRef(run_id=str(uuid.uuid4())))
            return
        except Unavailable:
            await asyncio.sleep(0.1)
    raise AssertionError("the stand-in history never answered")


@pytest.fixture
async def served(settings: Settings, nc) -> AsyncIterator[tuple[StandInHistory, ApiClient]]:  # type: ignore[no-untyped-def]
    broker = make_broker(settings, "history")
    endpoint = Endpoint("history", StandInHistory)
    serve_api(broker, endpoint)
    handlers = StandInHistory()
    endpoint.attach(handlers)
    await broker.start()
    await broker.connection.flush()
    api = ApiClient(nc, timeout=5)
    await answering(api)
    try:
        yield handlers, api
    finally:
        await broker.stop()


async def test_a_typed_call_returns_the_declared_reply(served) -> None:  # type: ignore[no-untyped-def]
    handlers, api = served
    run_id = str(uuid.uuid4())
    got = await api.call(ops.RUNS_GET, RunRef(run_id=run_id))
    assert isinstance(got, RunRecord) and got == record(run_id)
    assert (got.scheduled_for, got.output_text, got.duration_ms) == (AT, "ok\n", 12)
    runs = await api.call(ops.RUNS_LIST, RunQuery(limit=3, since=AT, status="failed"))
    assert len(runs) == 3 and all(isinstance(r, RunRecord) for r in runs)
    assert handlers.queries == [RunQuery(limit=3, since=AT, status="failed")]
    purged = await api.call(ops.RUNS_PURGE, PurgeRequest(keep_days={"a": 7, "b": None}))
    assert purged == PurgeResult(deleted=2, by_job={"a": 1, "b": 1})


@pytest.mark.parametrize("cls", sorted(wire_codes().values(), key=lambda c: c.code))
async def test_an_error_raised_on_the_server_is_raised_on_the_client(served, cls) -> None:  # type: ignore[no-untyped-def]
    handlers, api = served
    if cls is InvalidInput:
        sent: BelltowerError = InvalidInput("limit", "is out of range", "1 to 10000")
    else:
        sent = cls(f"{cls.__name__}: what went wrong, and how to fix it")
    run_id = str(uuid.uuid4())
    handlers.raising[run_id] = sent
    with pytest.raises(BelltowerError) as raised:
        await api.call(ops.RUNS_GET, RunRef(run_id=run_id))
    assert type(raised.value) is cls
    assert raised.value.message == sent.message
    if isinstance(sent, InvalidInput):
        assert isinstance(raised.value, InvalidInput)
        assert (raised.value.field, raised.value.accepted) == ("limit", "1 to 10000")


async def test_an_unexpected_failure_and_a_bad_body_reach_the_client(served, nc) -> None:  # type: ignore[no-untyped-def]
    handlers, api = served
    run_id = str(uuid.uuid4())
    handlers.raising[run_id] = KeyError("lost")
    with pytest.raises(InternalError, match="internal error: KeyError: 'lost'"):
        await api.call(ops.RUNS_GET, RunRef(run_id=run_id))
    # A body no typed client would send (another language's client, a hand-made request):
    # the server refuses it naming the field, and the error decodes as its class.
    raw = await nc.request(ops.RUNS_LIST.subject, b'{"limit": "many"}', timeout=5)
    reply = msgspec.json.decode(raw.data, type=Reply)
    with pytest.raises(InvalidInput) as refused:
        raise_error(reply.error)
    assert refused.value.field == "limit"


async def test_nobody_answering_is_unavailable(nc) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Unavailable, match="no scheduler is running"):
        await ApiClient(nc, timeout=2).call(ops.JOBS_LIST, JobsPageRequest())
