"""Wiring of the history process: a batched durable consumer of run events, and history queries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
from faststream import FastStream
from faststream.nats import NatsMessage
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig, DeliverPolicy

from belltower import logs, streams, telemetry
from belltower.api import PurgeRequest, PurgeResult, RunQuery, RunRecord, RunRef
from belltower.broker import make_broker
from belltower.db import create_pool, migrate
from belltower.errors import InvalidInput, NotFound
from belltower.events import RUN_STATUSES, run_event_decoder
from belltower.rpc import decode_request, serve
from belltower.settings import Settings
from belltower.subjects import HISTORY_CONSUMER, RUNS_STREAM, RUNS_SUBJECTS, api_subject

from .store import Store

log = logging.getLogger(__name__)

MAX_LIMIT = 10_000
_STATUSES = (*RUN_STATUSES, "running")


class HistoryService:
    def __init__(self, settings: Settings | None = None, batch_size: int = 500) -> None:
        self.batch_size = batch_size
        self._consumer: asyncio.Task[None] | None = None
        self._subscription: JetStreamContext.PullSubscription | None = None
        self.settings = settings or Settings()
        self.broker = make_broker(self.settings, "history")
        self.store: Store | None = None
        self._pool: Any = None
        self.recorded = 0
        for operation, target in (
            ("runs.list", self.list_runs),
            ("runs.get", self.get_run),
            ("runs.purge", self.purge),
        ):
            self._route(operation, target)

    def _route(self, operation: str, target: Any) -> None:
        async def handler(msg: NatsMessage) -> bytes:
            return await serve(target, msg.body)

        self.broker.subscriber(
            api_subject("history", operation), queue="history", title=f"history {operation}"
        )(handler)

    def app(self) -> FastStream:
        app = FastStream(self.broker)
        app.on_startup(self.on_startup)
        app.after_startup(self.start_consuming)
        app.on_shutdown(self.on_shutdown)
        return app

    async def on_startup(self) -> None:
        logs.configure("history", self.settings)
        telemetry.setup("belltower-history")
        self._pool = await create_pool(self.settings.database_url)
        await migrate(self._pool, "history", "belltower_history")
        self.store = Store(self._pool)
        await self.broker.connect()
        await streams.ensure(self.broker.connection.jetstream(), self.settings)
        log.info("history ready", extra={"action": "history.ready"})

    async def on_shutdown(self) -> None:
        if self._consumer is not None:
            self._consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumer
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
        if self._pool is not None:
            await self._pool.close()

    async def start_consuming(self) -> None:
        """Pull run events in batches from the durable ``history`` consumer.

        A plain nats-py fetch loop rather than faststream's batch subscriber: faststream 0.7.8
        drops a partly gathered batch when nats-py raises a bare ``asyncio.TimeoutError``
        mid-window, which left those events waiting a whole ack-wait for redelivery.
        """
        js = self.broker.connection.jetstream()
        subscription = await js.pull_subscribe(
            RUNS_SUBJECTS,
            durable=HISTORY_CONSUMER,
            stream=RUNS_STREAM,
            config=ConsumerConfig(
                durable_name=HISTORY_CONSUMER,
                ack_policy=JsAckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=self.settings.ack_wait_s,
                max_ack_pending=self.batch_size * 8,
                filter_subject=RUNS_SUBJECTS,
            ),
        )
        self._subscription = subscription
        self._consumer = asyncio.create_task(self._consume(subscription), name="history-ingest")

    async def _consume(self, subscription: JetStreamContext.PullSubscription) -> None:
        while True:
            try:
                batch = await subscription.fetch(self.batch_size, timeout=1.0)
            except TimeoutError:  # nothing to fetch; also nats-py's own TimeoutError
                continue
            except Exception as exc:
                log.warning(
                    "fetching run events failed; retrying",
                    extra={"action": "history.fetch_failed", "error": repr(exc)},
                )
                await asyncio.sleep(1.0)
                continue
            await self.ingest(batch)

    async def ingest(self, batch: list[Msg]) -> None:
        """Store one batch of run events, then ack it; on a database error leave it for redelivery."""
        assert self.store is not None
        events, kept = [], []
        for raw in batch:
            try:
                events.append(run_event_decoder.decode(raw.data))
                kept.append(raw)
            except msgspec.DecodeError as exc:
                log.error(
                    "undecodable run event dropped",
                    extra={
                        "action": "history.bad_event",
                        "error": str(exc),
                        "subject": raw.subject,
                    },
                )
                await raw.term()
        try:
            await self.store.record(events)
        except Exception:
            log.exception(
                "run events not stored; they will be redelivered",
                extra={"action": "history.store_failed"},
            )
            for raw in kept:
                with contextlib.suppress(Exception):
                    await raw.nak(delay=2.0)
            return
        for raw in kept:
            await raw.ack()
        self.recorded += len(events)

    async def list_runs(self, data: bytes) -> list[RunRecord]:
        assert self.store is not None
        query = decode_request(data, RunQuery)
        if query.job_id is not None:
            _check_uuid("job", query.job_id, "a job id (UUID) as shown by `belltower jobs list`")
        if query.status is not None and query.status not in _STATUSES:
            raise InvalidInput(
                "status", f"{query.status!r} is not a run status", ", ".join(_STATUSES)
            )
        if not 1 <= query.limit <= MAX_LIMIT:
            raise InvalidInput("limit", f"{query.limit} is out of range", f"1 to {MAX_LIMIT}")
        if query.since and query.until and query.until <= query.since:
            raise InvalidInput("to", "is not after from", "a 'to' later than 'from'")
        return await self.store.query(query)

    async def get_run(self, data: bytes) -> RunRecord:
        assert self.store is not None
        ref = decode_request(data, RunRef)
        _check_uuid("run_id", ref.run_id, "a UUID as shown by `belltower runs list`")
        record = await self.store.get(ref.run_id)
        if record is None:
            raise NotFound(
                f"no run with id {ref.run_id}; it may not have started yet, or was purged"
            )
        return record

    async def purge(self, data: bytes) -> PurgeResult:
        assert self.store is not None
        request = decode_request(data, PurgeRequest)
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


def _check_uuid(field: str, value: str, accepted: str) -> None:
    try:
        uuid.UUID(value)
    except ValueError:
        raise InvalidInput(field, f"{value!r} is not an id", accepted) from None


def main() -> None:
    asyncio.run(HistoryService().app().run())
