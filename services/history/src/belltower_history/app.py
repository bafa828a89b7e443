"""Wiring of the history process: a batched durable consumer of run events, and history queries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
from faststream import FastStream
from nats.aio.msg import Msg

from belltower import health, heap, logs, metrics, paging, sitesettings, streams, telemetry
from belltower import operations as ops
from belltower.api import (
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
from belltower.db import create_pool, migrate
from belltower.errors import InvalidInput, NotFound
from belltower.events import RUN_STATUSES, RunEvent, run_event_decoder
from belltower.holds import Release, ReleaseRequest, ReleasesQuery, ReleaseStarted
from belltower.mail import Mailer
from belltower.rpc import Endpoint, serves
from belltower.settings import Settings
from belltower.subjects import HISTORY_CONSUMER, RUNS_STREAM, RUNS_SUBJECTS

from . import listing, releases
from .consumer import BatchConsumer
from .resultmail import OutboxSender, ResultMailComposer
from .store import Store

log = logging.getLogger(__name__)

_BAD_DATA = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    ValueError,
    OverflowError,
)
"""Errors that say an event itself is unacceptable, as opposed to the database being away."""

MAX_LIMIT = 10_000
NAK_DELAY_S = 2.0
FAILING_EVERY_S = 30.0
_FINISHED = "belltower.run.finished."
_STORE_SPAN = {
    "db.system.name": "postgresql",
    "db.operation.name": "INSERT",
    "db.collection.name": "history.runs",
    "db.namespace": "history",
}
_STATUSES = (*RUN_STATUSES, "running")
_SLICE = 500
"""Events decoded or acked between two yields to the event loop: a batch's decoding and acks
run while the batch before or after it is in PostgreSQL, whose replies would otherwise wait
for the whole loop (tens of milliseconds a round trip at 4,000 events)."""


class HistoryService:
    def __init__(
        self, settings: Settings | None = None, batch_size: int = 4000, linger_s: float = 0.025
    ) -> None:
        self.batch_size = batch_size
        self.linger_s = linger_s
        self._consumer: BatchConsumer | None = None
        self._write_lock = asyncio.Lock()
        self.settings = settings or Settings()
        self.broker = make_broker(self.settings, "history")
        self.store: Store | None = None
        self.mail = ResultMailComposer(
            only_failures=self.settings.result_mail_only_failures,
            console_url=self.settings.console_url,
        )
        self.outbox: OutboxSender | None = None
        self.site: sitesettings.Follower | None = None
        self._pool: Any = None
        self.recorded = 0
        self._failing_read_at = -FAILING_EVERY_S
        self.api = Endpoint("history", HistoryService)
        serve_api(self.broker, self.api)

    def app(self) -> FastStream:
        app = FastStream(self.broker, logger=logging.getLogger("faststream.app"))
        self.health = health.serve(app, self.health_server())
        app.on_startup(self.on_startup)
        app.after_startup(self.start_consuming)
        app.on_shutdown(self.on_shutdown)
        return app

    def health_server(self) -> health.HealthServer:
        return health.HealthServer(
            "history",
            self.settings,
            {
                "nats": health.nats_check(self.broker),
                "database": health.database_check(lambda: self._pool),
            },
            before_scrape=self.refresh_metrics,
        )

    async def refresh_metrics(self) -> None:
        """Before a scrape: the consumer's backlog, and the failing jobs at most every 30 s."""
        if self._consumer is not None:
            await metrics.refresh_consumer_pending(self._consumer.js, RUNS_STREAM, HISTORY_CONSUMER)
        now = time.monotonic()
        if self.store is not None and now >= self._failing_read_at + FAILING_EVERY_S:
            self._failing_read_at = now
            metrics.JOBS_FAILING.set(await self.store.failing_jobs())

    async def on_startup(self) -> None:
        logs.configure("history", self.settings)
        telemetry.setup("belltower-history")
        self._pool = await create_pool(self.settings.database_url)
        await migrate(self._pool, "history", "belltower_history")
        self.store = Store(self._pool)
        self.api.attach(self)
        self.outbox = OutboxSender(
            self._pool, Mailer(self.settings).send, give_up_s=self.settings.result_mail_give_up_s
        )
        self.outbox.start()
        await self.broker.connect()
        await streams.ensure(self.broker.connection.jetstream(), self.settings)
        self.site = sitesettings.Follower(
            self.broker.connection.jetstream(),
            self._apply_site_settings,
            replicas=self.settings.stream_replicas,
        )
        await self.site.start()
        log.info("history ready", extra={"action": "history.ready"})

    def _apply_site_settings(self, site: sitesettings.SiteSettings) -> None:
        """An admin's choice in the console wins over the environment's default."""
        only = site.result_mail_only_failures
        self.mail.only_failures = self.settings.result_mail_only_failures if only is None else only
        log.info(
            "site settings applied",
            extra={
                "action": "history.settings",
                "result_mail_only_failures": self.mail.only_failures,
            },
        )

    async def on_shutdown(self) -> None:
        if self.site is not None:
            await self.site.stop()
            self.site = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        if self.outbox is not None:
            await self.outbox.stop()
            self.outbox = None
        if self._pool is not None:
            await self._pool.close()

    async def start_consuming(self) -> None:
        """Receive run events from the durable ``history`` consumer in batches; see :mod:`.consumer`."""
        self._consumer = BatchConsumer(
            self.broker.connection.jetstream(),
            stream=RUNS_STREAM,
            durable=HISTORY_CONSUMER,
            filter_subject=RUNS_SUBJECTS,
            handler=self.ingest,
            batch_size=self.batch_size,
            ack_wait_s=self.settings.ack_wait_s,
            linger_s=self.linger_s,
        )
        await self._consumer.start()

    async def ingest(self, batch: list[Msg]) -> bool:
        """Store one batch of run events under one span linked to each run's trace; each
        finished run's own trace gets a span of the write that stored it."""
        started = time.time_ns()
        with telemetry.batch_span(RUNS_SUBJECTS, batch, consumer=HISTORY_CONSUMER):
            stored = await self._ingest(batch)
        if stored:
            telemetry.span_in_each_trace(
                (m for m in batch if m.subject.startswith(_FINISHED)),
                "INSERT history.runs",
                start_time=started,
                attributes=_STORE_SPAN,
            )
        return stored

    async def _ingest(self, batch: list[Msg]) -> bool:
        """Store one batch of run events, then ack it; on a database error nak it for redelivery.

        Returns whether the batch was stored. Acks go out only after the commit, so a crash in
        between delivers the batch again, which the idempotent writes absorb.
        """
        assert self.store is not None
        events, kept = [], []
        decode = run_event_decoder.decode
        for i, raw in enumerate(batch, 1):
            if not i % _SLICE:
                await asyncio.sleep(0)
            try:
                events.append(decode(raw.data))
            except msgspec.DecodeError as exc:
                log.error(
                    "undecodable run event dropped",
                    extra={
                        "action": "history.bad_event",
                        "error": str(exc),
                        "subject": raw.subject,
                    },
                )
                with contextlib.suppress(Exception):
                    await raw.term()
            else:
                kept.append(raw)
        try:
            prepared = self.store.prepare(events, self.mail)
            # Batches are prepared while the one before is written, but written one at a time,
            # in the order they arrived.
            async with self._write_lock:
                await self.store.write(prepared)
            if prepared.mail_json is not None and self.outbox is not None:
                self.outbox.wake.set()
        except _BAD_DATA:
            # One event PostgreSQL refuses must not hold back the others forever.
            return await self._ingest_one_by_one(kept, events)
        except Exception:
            log.exception(
                "run events not stored; they will be redelivered",
                extra={"action": "history.store_failed"},
            )
            for raw in kept:
                with contextlib.suppress(Exception):
                    await raw.nak(delay=NAK_DELAY_S)
            return False
        for i, raw in enumerate(kept, 1):
            if not i % _SLICE:
                await asyncio.sleep(0)
            try:
                await raw.ack()
            except Exception:  # e.g. NATS is reconnecting; the event comes again after ack_wait
                log.warning(
                    "acks not sent; those events will be redelivered",
                    extra={"action": "history.ack_failed"},
                )
                break
        self.recorded += len(events)
        metrics.record_history_events(events)
        return True

    async def _ingest_one_by_one(self, kept: list[Msg], events: list[RunEvent]) -> bool:
        """Write a refused batch event by event; an event refused on its own is dropped and logged."""
        assert self.store is not None
        for raw, event in zip(kept, events, strict=True):
            try:
                async with self._write_lock:
                    await self.store.record([event], self.mail)
            except _BAD_DATA as exc:
                log.error(
                    "run event refused by the database and dropped",
                    extra={
                        "action": "history.bad_event",
                        "error": str(exc),
                        "subject": raw.subject,
                        "event_id": event.id,
                    },
                )
                with contextlib.suppress(Exception):
                    await raw.term()
                continue
            except Exception:
                log.exception(
                    "run event not stored; it will be redelivered",
                    extra={"action": "history.store_failed"},
                )
                with contextlib.suppress(Exception):
                    await raw.nak(delay=NAK_DELAY_S)
                continue
            with contextlib.suppress(Exception):
                await raw.ack()
            self.recorded += 1
            metrics.record_history_events([event])
        return True

    @serves(ops.RUNS_LIST)
    async def list_runs(self, query: RunQuery) -> list[RunRecord]:
        assert self.store is not None
        self._check_filters(query.job_id, query.status, query.since, query.until)
        if not 1 <= query.limit <= MAX_LIMIT:
            raise InvalidInput("limit", f"{query.limit} is out of range", f"1 to {MAX_LIMIT}")
        if query.offset < 0:
            raise InvalidInput("offset", f"{query.offset} is negative", "0 or more")
        # Never more than one NATS message holds: a long list with outputs is cut short (the
        # caller pages on from the number it got); runs.page pages by cursor instead.
        return paging.fit(await self.store.query(query))[0]

    @serves(ops.RUNS_PAGE)
    async def page_runs(self, request: RunsPageRequest) -> RunsPage:
        """A keyset page of runs, sorted and searched in SQL (:mod:`.listing`), cut to fit one
        NATS message (the cursor then starts the next page after the last run sent)."""
        assert self.store is not None
        self._check_filters(request.job_id, request.status, request.since, request.until)
        window = await listing.runs_page(self.store.pool, request)
        runs, cut = paging.fit(window.runs)
        nxt = window.next
        if cut:
            nxt = paging.encode_cursor(window.order, window.scope, window.keys[len(runs) - 1])
        return RunsPage(runs=runs, cursor=nxt, prev_cursor=window.prev)

    @serves(ops.RUNS_LAST)
    async def last_runs(self, request: LastRunsRequest) -> list[RunRecord]:
        assert self.store is not None
        for job_id in request.job_ids:
            _check_uuid("job_ids", job_id, "job ids (UUIDs) as shown by `belltower jobs list`")
        return paging.fit(await listing.last_runs(self.store.pool, request.job_ids))[0]

    @staticmethod
    def _check_filters(
        job_id: str | None, status: str | None, since: datetime | None, until: datetime | None
    ) -> None:
        if job_id is not None:
            _check_uuid("job", job_id, "a job id (UUID) as shown by `belltower jobs list`")
        if status is not None and status not in _STATUSES:
            raise InvalidInput("status", f"{status!r} is not a run status", ", ".join(_STATUSES))
        if since and until and until <= since:
            raise InvalidInput("to", "is not after from", "a 'to' later than 'from'")

    @serves(ops.RUNS_GET)
    async def get_run(self, ref: RunRef) -> RunRecord:
        assert self.store is not None
        _check_uuid("run_id", ref.run_id, "a UUID as shown by `belltower runs list`")
        record = await self.store.get(ref.run_id)
        if record is None:
            raise NotFound(
                f"no run with id {ref.run_id}; it may not have started yet, or was purged"
            )
        return record

    @serves(ops.RUNS_PURGE)
    async def purge(self, request: PurgeRequest) -> PurgeResult:
        assert self.store is not None
        if request.default_days is not None and request.default_days < 1:
            raise InvalidInput(
                "default_days",
                f"{request.default_days} is not a number of days",
                "1 or more, or null for forever",
            )
        for job, days in request.keep_days.items():
            if days is not None and days < 1:
                raise InvalidInput(
                    f"keep_days.{job}",
                    f"{days} is not a number of days",
                    "1 or more, or null for forever",
                )
        by_job = await self.store.purge(
            request.keep_days, request.default_days, datetime.now(UTC), request.dry_run
        )
        return PurgeResult(deleted=sum(by_job.values()), by_job=by_job)

    @serves(ops.RUNS_RELEASE)
    async def release(self, request: ReleaseRequest) -> Release:
        assert self.store is not None
        _check_uuid("run_id", request.run_id, "a UUID as shown by `belltower runs list`")
        return await releases.release(self.store.pool, request)

    @serves(ops.RUNS_RELEASE_STARTED)
    async def release_started(self, request: ReleaseStarted) -> Release:
        assert self.store is not None
        _check_uuid("run_id", request.run_id, "a UUID as shown by `belltower runs list`")
        _check_uuid("release_run_id", request.release_run_id, "a run id (UUID)")
        return await releases.started(self.store.pool, request)

    @serves(ops.RUNS_RELEASES)
    async def releases_of_job(self, query: ReleasesQuery) -> list[Release]:
        assert self.store is not None
        _check_uuid("job_id", query.job_id, "a job id (UUID) as shown by `belltower jobs list`")
        if not 1 <= query.limit <= 100:
            raise InvalidInput("limit", f"{query.limit} is out of range", "1 to 100")
        return await releases.of_job(self.store.pool, query)


def _check_uuid(field: str, value: str, accepted: str) -> None:
    try:
        uuid.UUID(value)
    except ValueError:
        raise InvalidInput(field, f"{value!r} is not an id", accepted) from None


def main() -> None:
    app = HistoryService().app()
    heap.freeze_long_lived()
    asyncio.run(app.run())
