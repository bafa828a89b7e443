"""The worker runtime both worker services are built from.

A worker is a faststream app on the durable pull consumer of its pool. For each due occurrence
it claims the occurrence in the claims bucket, publishes ``run.started``, runs the handler under
its timeout while heart-beating, writes the finished event into the claim (the commit point),
publishes ``run.finished`` and only then acks. Whatever crashes:

- a redelivered occurrence whose claim holds a finished event only re-publishes that event
  (de-duplicated by its ``Nats-Msg-Id``), so a run is never executed twice to completion;
- a claim whose holder stopped heart-beating is taken over with a compare-and-set, so a worker
  killed mid-run leads to exactly one recorded completion;
- history stores a run once per occurrence whatever arrives twice.

Retries use JetStream redelivery: a run that failed or timed out with retries left releases
its claim and is nak'ed with the backoff delay, so the same occurrence (same id, same run id)
comes back with the next delivery number as its attempt; history sees one run whose attempt
grows. Every delivery counts, so an occurrence that keeps crashing workers is not retried
forever: past the job's ``max_deliveries`` it is recorded ``dead_lettered`` with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
from faststream import AckPolicy, FastStream
from faststream.nats import JStream, NatsMessage, PullSub
from nats.js import JetStreamContext
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from . import health, logs, metrics, streams, telemetry
from .broker import make_broker
from .errors import BelltowerError, InvalidInput, JobFailed
from .events import (
    DueOccurrence,
    RunFinished,
    RunFinishedData,
    RunProgress,
    RunProgressData,
    RunStarted,
    RunStartedData,
    RunStatus,
    due_decoder,
    event_headers,
    utcnow,
)
from .jobtypes import Database, JobContext, JobType, Output, Registry
from .mail import Mailer
from .natsauth import inbox_prefix
from .rpc import ApiClient
from .settings import Settings, get_settings
from .subjects import (
    CATALOG_BUCKET,
    CLAIMS_BUCKET,
    DUE_STREAM,
    Pool,
    claim_key,
    due_filter,
    run_finished_subject,
    run_progress_subject,
    run_started_subject,
    worker_consumer,
)

log = logging.getLogger(__name__)

_encoder = msgspec.json.Encoder()


class Claim(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The value of an occurrence's key in the claims bucket."""

    state: Literal["running", "finished"]
    worker: str
    attempt: int
    heartbeat_at: float
    event: msgspec.Raw = msgspec.Raw(b"null")
    """The encoded run-finished event, once the state is finished."""
    seq: int = 0
    """The stream sequence of the delivery being run: the scheduler's reconciler looks it up to
    tell a run that a redelivery can still take over from one whose message is gone."""


_claim_decoder = msgspec.json.Decoder(Claim)


@dataclass
class _Outcome:
    status: RunStatus
    error: str | None = None


class Worker:
    """Runs the job types of one pool; one per worker process."""

    def __init__(self, pool: Pool, registry: Registry, settings: Settings | None = None) -> None:
        self.pool = pool
        self.registry = registry
        self.settings = settings or get_settings()
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.source = f"belltower/{pool}-worker"
        self.heartbeat_s = max(0.2, min(self.settings.ack_wait_s / 3, 10.0))
        self.lease_s = self.heartbeat_s * 3
        self.broker = make_broker(self.settings, f"{pool}-worker")
        self.db = Database(self.settings.database_url)
        self.mailer = Mailer(self.settings)
        self._js: JetStreamContext | None = None
        self._claims: KeyValue | None = None
        self._api: ApiClient | None = None
        self.running: set[str] = set()
        self._consumer_kept: asyncio.Task[None] | None = None
        """Recreates the pool's consumer if it is deleted while this worker runs."""
        self._subscribe()

    # -- wiring -------------------------------------------------------------------------------

    def app(self) -> FastStream:
        app = FastStream(self.broker, logger=logging.getLogger("faststream.app"))
        self.health = health.serve(app, self.health_server())
        app.on_startup(self.on_startup)
        app.on_shutdown(self.on_shutdown)
        return app

    def _subscribe(self) -> None:
        concurrency = self.settings.worker_concurrency
        self.consumer_config = ConsumerConfig(
            durable_name=worker_consumer(self.pool),
            ack_policy=JsAckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self.settings.ack_wait_s,
            max_ack_pending=max(1000, concurrency * 4),
            filter_subject=due_filter(self.pool),
        )
        self.broker.subscriber(
            due_filter(self.pool),
            stream=JStream(DUE_STREAM, declare=False),
            durable=worker_consumer(self.pool),
            config=self.consumer_config,
            pull_sub=PullSub(batch_size=min(concurrency, 256), timeout=5.0),
            inbox_prefix=f"{inbox_prefix(f'{self.pool}-worker')}.".encode(),
            max_workers=concurrency,
            ack_policy=AckPolicy.MANUAL,
            title=f"{self.pool}-worker",
            description=f"Runs the occurrences due for the {self.pool} pool",
        )(self.handle)

    def health_server(self) -> health.HealthServer:
        return health.HealthServer(
            f"{self.pool}-worker",
            self.settings,
            {
                "nats": health.nats_check(self.broker),
                "database": health.database_check(lambda: self.db.opened, required=False),
            },
            before_scrape=self.refresh_metrics,
        )

    async def refresh_metrics(self) -> None:
        if self._js is not None:
            await metrics.refresh_consumer_pending(self._js, DUE_STREAM, worker_consumer(self.pool))

    async def on_startup(self) -> None:
        logs.configure(f"{self.pool}-worker", self.settings)
        telemetry.setup(f"belltower-{self.pool}-worker", instrument_clients=True)
        await self.broker.connect()
        js = self.broker.connection.jetstream()
        await streams.ensure(js, self.settings)
        self._js = js
        self._claims = await js.key_value(CLAIMS_BUCKET)
        self._api = ApiClient(self.broker.connection, self.settings.request_timeout_s)
        await self.advertise()
        self._consumer_kept = asyncio.create_task(
            streams.keep_consumer(js, DUE_STREAM, self.consumer_config), name="keep-consumer"
        )
        log.info(
            "worker ready",
            extra={
                "action": "worker.ready",
                "pool": self.pool,
                "job_types": [t.name for t in self.registry.for_pool(self.pool)],
                "concurrency": self.settings.worker_concurrency,
            },
        )

    async def on_shutdown(self) -> None:
        if self._consumer_kept is not None:
            self._consumer_kept.cancel()
        await self.db.close()

    async def advertise(self) -> None:
        """Tell the scheduler which job types this pool runs (replacing the pool's previous list)."""
        assert self._js is not None
        catalog = await self._js.key_value(CATALOG_BUCKET)
        infos = [t.info() for t in self.registry.for_pool(self.pool)]
        await catalog.put(f"pool.{self.pool}", _encoder.encode(infos))

    # -- one occurrence ----------------------------------------------------------------------

    async def handle(self, msg: NatsMessage) -> None:
        raw = msg.raw_message
        try:
            due = due_decoder.decode(raw.data)
        except msgspec.DecodeError as exc:
            log.error(
                "undecodable due message dropped",
                extra={"action": "worker.bad_message", "error": str(exc)},
            )
            await msg.reject()
            return
        attempt = raw.metadata.num_delivered if raw.metadata else 1
        if attempt > 1:
            metrics.CONSUMER_REDELIVERIES.labels(self.pool).inc()
        try:
            with telemetry.consumer_span(
                raw.subject,
                due.occurrence_id,
                raw.headers,
                consumer=worker_consumer(self.pool),
                attributes={"belltower.job.type": due.job_type, "belltower.run.attempt": attempt},
            ):
                await self._process(msg, due, attempt)
        except Exception as exc:
            # The broker or the claims bucket failed us: leave the occurrence for redelivery.
            log.warning(
                "occurrence left for redelivery",
                extra={
                    "action": "worker.retry_later",
                    "occurrence_id": due.occurrence_id,
                    "error": repr(exc),
                },
            )
            try:
                await msg.nack(delay=1.0)
            except Exception:
                log.debug("nack failed", exc_info=True)

    async def _process(self, msg: NatsMessage, due: DueOccurrence, attempt: int) -> None:
        assert self._claims is not None
        key = claim_key(due.occurrence_id)
        revision = await self._claim(msg, key, due, attempt)
        if revision is None:
            return
        if attempt > due.max_deliveries:
            event = self._dead_letter(
                due,
                attempt,
                f"dead-lettered after {attempt - 1} deliveries without a result "
                "(the workers running it stopped, or the broker failed them)",
            )
        else:
            self.running.add(due.occurrence_id)
            try:
                event, revision = await self._run(msg, key, revision, due, attempt)
            finally:
                self.running.discard(due.occurrence_id)
            data = event.data
            if data.status in ("failed", "timed_out") and attempt <= due.retries:
                if attempt < due.max_deliveries:
                    await self._retry_later(msg, key, revision, due, attempt, data.error)
                    return
                event = self._dead_letter(
                    due,
                    attempt,
                    f"dead-lettered after {attempt} deliveries; last error: {data.error}",
                )
        payload = _encoder.encode(event)
        finished = Claim(
            state="finished",
            worker=self.name,
            attempt=attempt,
            heartbeat_at=time.time(),
            event=msgspec.Raw(payload),
        )
        if not await self._commit(key, finished, revision, attempt):
            # Another worker took the occurrence over; it stays queued until one of us finishes it.
            log.warning(
                "lost the claim while running; the occurrence is left to the worker holding it",
                extra={"action": "worker.claim_lost", "occurrence_id": due.occurrence_id},
            )
            await msg.nack(delay=self.lease_s)
            return
        await self._publish_finished(event.data.status, due.job_type, event.id, payload)
        metrics.record_run(self.pool, event.data)
        await msg.ack()

    def _dead_letter(self, due: DueOccurrence, attempt: int, reason: str) -> RunFinished:
        """The final event of an occurrence that is not tried again: status ``dead_lettered``."""
        now = utcnow()
        log.warning(
            "occurrence dead-lettered",
            extra={
                "action": "run.dead_lettered",
                "occurrence_id": due.occurrence_id,
                "reason": reason,
            },
        )
        return RunFinished(
            id=due.run_id,
            source=self.source,
            subject=due.job_id,
            time=now,
            data=RunFinishedData(
                **_carried(due),
                status="dead_lettered",
                started_at=now,
                finished_at=now,
                duration_ms=0,
                attempt=attempt,
                worker=self.name,
                summary=reason[:300],
                output_text=reason + "\n",
                error=reason,
            ),
        )

    async def _retry_later(
        self,
        msg: NatsMessage,
        key: str,
        revision: int,
        due: DueOccurrence,
        attempt: int,
        error: str | None,
    ) -> None:
        """Give the occurrence back for its next attempt after the backoff: release the claim,
        say so in a progress event (history shows it on the run), nak with the delay."""
        assert self._claims is not None and self._js is not None
        initial, factor, most = due.backoff_s
        delay = min(most, initial * factor ** (attempt - 1))
        message = (
            f"attempt {attempt} failed: {error or 'no error given'}; "
            f"retry {attempt} of {due.retries} in {delay:g}s"
        )
        await self._claims.delete(key, last=revision)
        progress = RunProgress(
            id=f"{due.run_id}.retry.{attempt}",
            source=self.source,
            subject=due.job_id,
            time=utcnow(),
            data=RunProgressData(
                run_id=due.run_id,
                occurrence_id=due.occurrence_id,
                job_id=due.job_id,
                at=utcnow(),
                message=message,
            ),
        )
        try:
            await self._js.publish(
                run_progress_subject(due.job_type),
                _encoder.encode(progress),
                headers={"Nats-Msg-Id": progress.id},
            )
        except Exception:
            log.warning("retry notice not published", extra={"action": "worker.progress_lost"})
        log.info(
            "run failed; retried later",
            extra={
                "action": "run.retry",
                "occurrence_id": due.occurrence_id,
                "attempt": attempt,
                "delay_s": delay,
            },
        )
        await msg.nack(delay=delay)

    async def _commit(self, key: str, finished: Claim, revision: int, attempt: int) -> bool:
        """Write the finished claim; False when the claim now belongs to another worker."""
        assert self._claims is not None
        while True:
            try:
                await self._claims.update(key, _encoder.encode(finished), last=revision)
                return True
            except KeyWrongLastSequenceError:
                entry = await self._claims.get(key)
                held = _claim_decoder.decode(entry.value or b"{}")
                if not (
                    held.state == "running" and held.worker == self.name and held.attempt == attempt
                ):
                    return False
                if entry.revision is not None:  # our own heartbeat moved it on
                    revision = entry.revision

    async def _claim(
        self, msg: NatsMessage, key: str, due: DueOccurrence, attempt: int
    ) -> int | None:
        """Take the occurrence for this worker; None when it is done or someone else holds it."""
        assert self._claims is not None
        claim = Claim(
            state="running",
            worker=self.name,
            attempt=attempt,
            heartbeat_at=time.time(),
            seq=_stream_seq(msg),
        )
        try:
            return await self._claims.create(key, _encoder.encode(claim))
        except KeyWrongLastSequenceError:
            pass
        try:
            entry = await self._claims.get(key)
        except KeyNotFoundError:
            await msg.nack(delay=0.2)
            return None
        held = _claim_decoder.decode(entry.value or b"{}")
        if held.state == "finished":
            # Finished before, but its event may not have been stored: publish it again (de-duplicated).
            event = msgspec.json.decode(held.event, type=RunFinished)
            await self._publish_finished(
                event.data.status, due.job_type, event.id, bytes(held.event)
            )
            await msg.ack()
            log.info(
                "occurrence already finished; not run again",
                extra={"action": "worker.duplicate", "occurrence_id": due.occurrence_id},
            )
            return None
        age = time.time() - held.heartbeat_at
        if age < self.lease_s and not (
            held.worker == self.name and due.occurrence_id not in self.running
        ):
            await msg.nack(delay=max(0.2, self.lease_s - age))
            return None
        try:
            revision = await self._claims.update(key, _encoder.encode(claim), last=entry.revision)
        except KeyWrongLastSequenceError:
            await msg.nack(delay=0.2)
            return None
        log.info(
            "took over an occurrence whose worker stopped",
            extra={
                "action": "worker.takeover",
                "occurrence_id": due.occurrence_id,
                "previous": held.worker,
            },
        )
        return revision

    async def _run(
        self, msg: NatsMessage, key: str, revision: int, due: DueOccurrence, attempt: int
    ) -> tuple[RunFinished, int]:
        assert self._js is not None and self._claims is not None and self._api is not None
        started_at = utcnow()
        trace_id = telemetry.current_trace_id()
        started = RunStarted(
            id=f"{due.run_id}.started.{attempt}",
            source=self.source,
            subject=due.job_id,
            time=started_at,
            data=RunStartedData(
                **_carried(due),
                started_at=started_at,
                attempt=attempt,
                worker=self.name,
                trace_id=trace_id,
            ),
        )
        # Not awaited: the run need not wait for the store to confirm its start. The finished
        # event follows on the same connection, so it is never stored before the start.
        confirmation = await self._js.publish_async(
            run_started_subject(due.job_type),
            _encoder.encode(started),
            headers=telemetry.inject(event_headers(started.id)),
        )
        confirmation.add_done_callback(_log_unconfirmed)
        output = Output()
        job_type = self.registry.get(due.job_type)
        timeout = (
            due.timeout_s
            or (job_type.timeout_s if job_type else None)
            or self.settings.default_timeout_s
        )
        state = {"revision": revision, "progress": 0}

        async def progress(done: int | None, total: int | None, message: str) -> None:
            state["progress"] += 1
            event = RunProgress(
                id=f"{due.run_id}.progress.{attempt}.{state['progress']}",
                source=self.source,
                subject=due.job_id,
                time=utcnow(),
                data=RunProgressData(
                    run_id=due.run_id,
                    occurrence_id=due.occurrence_id,
                    job_id=due.job_id,
                    at=utcnow(),
                    done=done,
                    total=total,
                    message=message,
                ),
            )
            try:
                await self._js.publish(  # type: ignore[union-attr]
                    run_progress_subject(due.job_type),
                    _encoder.encode(event),
                    headers=telemetry.inject(event_headers(event.id)),
                )
            except Exception:
                log.warning(
                    "progress not published",
                    extra={"action": "worker.progress_lost"},
                    exc_info=True,
                )

        stop = asyncio.Event()
        seq = _stream_seq(msg)

        async def heartbeat() -> None:
            # Stopped by an event, never cancelled: a claim update cut off in flight could be
            # applied without its new revision being kept, and the run would lose its own claim.
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.heartbeat_s)
                if stop.is_set():
                    return
                try:
                    await msg.in_progress()
                    beat = Claim(
                        state="running",
                        worker=self.name,
                        attempt=attempt,
                        heartbeat_at=time.time(),
                        seq=seq,
                    )
                    state["revision"] = await self._claims.update(  # type: ignore[union-attr]
                        key, _encoder.encode(beat), last=state["revision"]
                    )
                except KeyWrongLastSequenceError:
                    return
                except Exception:
                    log.warning(
                        "heartbeat failed",
                        extra={"action": "worker.heartbeat_failed"},
                        exc_info=True,
                    )

        ctx = JobContext(
            run_id=due.run_id,
            occurrence_id=due.occurrence_id,
            job_id=due.job_id,
            job_title=due.job_title,
            job_type=due.job_type,
            trigger=due.trigger,
            requested_by=due.requested_by,
            scheduled_for=due.scheduled_for,
            attempt=attempt,
            deadline=time.monotonic() + timeout,
            log=logging.LoggerAdapter(
                logging.getLogger(f"belltower.job.{due.job_type}"),
                {"run_id": due.run_id, "job_id": due.job_id, "occurrence_id": due.occurrence_id},
            ),
            output=output,
            settings=self.settings,
            db=self.db,
            mailer=self.mailer,
            api=self._api,
            _progress=progress,
        )
        beating = asyncio.create_task(heartbeat())
        try:
            with telemetry.span(
                f"run {due.job_type}", attributes={"belltower.job.type": due.job_type}
            ):
                outcome = await self._execute(job_type, due, ctx, timeout)
                telemetry.record_outcome(outcome.status, outcome.error)
        finally:
            stop.set()
            await asyncio.gather(beating, return_exceptions=True)
        finished_at = utcnow()
        text = output.text
        last_line = next((line for line in reversed(text.splitlines()) if line.strip()), "")
        summary = (output.summary or (outcome.error or "").partition("\n")[0] or last_line)[:300]
        event = RunFinished(
            id=due.run_id,
            source=self.source,
            subject=due.job_id,
            time=finished_at,
            data=RunFinishedData(
                **_carried(due),
                status=outcome.status,
                started_at=started_at,
                finished_at=finished_at,
                duration_ms=max(0, round((finished_at - started_at).total_seconds() * 1000)),
                attempt=attempt,
                worker=self.name,
                summary=summary,
                output_text=text,
                output_html=output.html_text,
                error=outcome.error,
                trace_id=trace_id,
                # History turns this into the result e-mail, in the same commit as the run.
                result_mail=due.result_mail,
            ),
        )
        log.info(
            "run finished",
            extra={
                "action": "run.finished",
                "run_id": due.run_id,
                "job_id": due.job_id,
                "job_type": due.job_type,
                "status": outcome.status,
                "duration_ms": event.data.duration_ms,
            },
        )
        return event, state["revision"]

    async def _execute(
        self, job_type: JobType[Any] | None, due: DueOccurrence, ctx: JobContext, timeout: float
    ) -> _Outcome:
        if job_type is None:
            installed = ", ".join(t.name for t in self.registry.for_pool(self.pool)) or "none"
            message = (
                f"job type {due.job_type!r} is not installed on the {self.pool}-worker (it runs: {installed}). "
                f"The job {due.job_title!r} ({due.job_id}) cannot run until that type is installed again; "
                "change the job to another type or delete it."
            )
            ctx.output.line(message)
            return _Outcome("failed", message)
        try:
            params = job_type.decode_params(due.params)
        except InvalidInput as exc:
            message = f"the job's parameters do not fit {due.job_type}: {exc.message}"
            ctx.output.line(message)
            return _Outcome("failed", message)
        try:
            async with asyncio.timeout(timeout) as scope:
                await job_type.run(ctx, params)
        except TimeoutError:
            if scope.expired():
                message = f"timed out after {timeout:g}s"
                ctx.output.line(message)
                return _Outcome("timed_out", message)
            return _unexpected_failure(ctx)
        except (JobFailed, BelltowerError) as exc:
            ctx.output.line(exc.message)
            return _Outcome("failed", exc.message)
        except Exception:
            return _unexpected_failure(ctx)
        return _Outcome("succeeded")

    async def _publish_finished(
        self, status: str, job_type: str, event_id: str, payload: bytes
    ) -> None:
        assert self._js is not None
        await self._js.publish(
            run_finished_subject(status, job_type),
            payload,
            headers=telemetry.inject(event_headers(event_id)),
        )


_CARRIED = (
    "run_id", "occurrence_id", "job_id", "job_type", "job_title", "pool", "priority", "trigger",
    "requested_by", "scheduled_for", "dispatched_at", "requested_from",
)  # fmt: skip


def _carried(due: DueOccurrence) -> dict[str, Any]:
    """The fields every run event repeats from the occurrence it is about."""
    return {name: getattr(due, name) for name in _CARRIED}


def _log_unconfirmed(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning(
            "a run-started event was not confirmed; history shows the run once it finishes",
            extra={"action": "worker.start_unconfirmed", "error": repr(future.exception())},
        )


def _stream_seq(msg: NatsMessage) -> int:
    """The stream sequence of a due message's delivery (0 when the broker did not say)."""
    metadata = msg.raw_message.metadata
    return metadata.sequence.stream if metadata else 0


def _unexpected_failure(ctx: JobContext) -> _Outcome:
    """A handler raised something it did not mean to: keep the traceback in the output."""
    exc = sys.exc_info()[1]
    message = f"{type(exc).__name__}: {exc}"
    ctx.output.line(f"failed: {message}")
    ctx.output.write(traceback.format_exc())
    return _Outcome("failed", message)


def run(pool: Pool, registry: Registry) -> None:
    """Entry point body of a worker service."""
    worker = Worker(pool, registry)
    asyncio.run(worker.app().run())
