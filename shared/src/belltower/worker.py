"""The worker runtime both worker services are built from.

A worker is a faststream app (health, lifecycle, the broker connection) whose hot path is a
lean pull consumer of its pool's durable consumer (:mod:`belltower.pull`), paid per batch
rather than per message. Occurrences arrive in batches; each batch is claimed in the claims
bucket with one pipelined round trip (a ``create`` per occurrence, published with
``publish_async`` and confirmed together); each claimed occurrence publishes ``run.started``
(not confirmed: history records a run from its finished event) and runs its handler under its
timeout (one timer for all runs, :mod:`belltower.deadlines`), concurrently up to
``worker_concurrency``; runs that ended meanwhile are finished together: their finished events
are written into their claims (the commit point, again one pipelined round trip), then the
``run.finished`` events are published and confirmed together, and only then are the
occurrences acked, in one flush. One heartbeat
task keeps every long run's claim and delivery alive. Whatever crashes:

- a redelivered occurrence whose claim holds a finished event only re-publishes that event
  (de-duplicated by its ``Nats-Msg-Id``), so a run is never executed twice to completion;
- a claim whose holder stopped heart-beating is taken over with a compare-and-set, so a worker
  killed mid-run leads to exactly one recorded completion;
- every claim and commit is a compare-and-set on the key's revision, so batching changes who
  waits for the confirmation, never who wins;
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
import functools
import logging
import os
import socket
import sys
import time
import traceback
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
from faststream import FastStream
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from . import health, heap, logs, metrics, streams, telemetry
from .broker import make_broker, serve_api
from .deadlines import Deadlines
from .errors import BelltowerError, InvalidInput, JobFailed, RunHeld
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
from .jsbatch import Publish, Publisher, PublishError, PullConsumer
from .mail import Mailer
from .rpc import ApiClient, Endpoint
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
_CLAIM_SUBJECT = f"$KV.{CLAIMS_BUCKET}."
_EXPECTED_LAST = "Nats-Expected-Last-Subject-Sequence"
_WRONG_LAST_SEQUENCE = (10071, 10164)
MAX_BATCH = 256
"""Most occurrences one pull request asks for."""
IN_HAND = 256
"""Fewest occurrences a worker keeps in hand (claimed, running or being finished), whatever its
``worker_concurrency`` (how many handlers run at once): short runs are batched far better so,
while a run waiting for a handler slot keeps its claim alive like a running one."""
STOP_GRACE_S = 5.0
"""How long a stopping worker lets the runs in hand finish before it cuts them off."""


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


@dataclass(slots=True, eq=False)
class _Delivery:
    """One delivered occurrence on its way through the worker."""

    msg: Msg
    due: DueOccurrence
    attempt: int
    key: str
    seq: int
    """The delivery's stream sequence, kept in its claim for the scheduler's reconciler."""
    revision: int = 0
    beat_at: float = 0.0
    event: RunFinished | None = None
    payload: bytes = b""
    headers: dict[str, str] | None = None
    trace: dict[str, str] | None = None
    """The ``traceparent`` header its run events carry (that of the run's span)."""


def _wrong_sequence(result: object) -> bool:
    return isinstance(result, PublishError) and result.err_code in _WRONG_LAST_SEQUENCE


class Worker:
    """Runs the job types of one pool; one per worker process."""

    def __init__(
        self,
        pool: Pool,
        registry: Registry,
        settings: Settings | None = None,
        *,
        answers: type[Any] | None = None,
    ) -> None:
        """``answers``: the class whose methods answer the pool's management operations
        (:mod:`belltower.operations`, service = the pool's name), built with the worker's
        :class:`Database` once it starts."""
        self.pool = pool
        self.registry = registry
        self.settings = settings or get_settings()
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.source = f"belltower/{pool}-worker"
        self._consumer_name = worker_consumer(pool)
        self.heartbeat_s = max(0.2, min(self.settings.ack_wait_s / 3, 10.0))
        self.lease_s = self.heartbeat_s * 3
        self.broker = make_broker(self.settings, f"{pool}-worker")
        self.db = Database(self.settings.database_url)
        self.mailer = Mailer(self.settings)
        self._js: JetStreamContext | None = None
        self._claims: KeyValue | None = None
        self._api: ApiClient | None = None
        self.running: set[str] = set()
        self._puller: PullConsumer | None = None
        self._publisher: Publisher = None  # type: ignore[assignment]  # connected in on_startup
        self._arrived: list[Msg] = []
        self._finishing: list[_Delivery] = []
        self._beating: dict[str, _Delivery] = {}
        self._wake_claims = asyncio.Event()
        self._wake_finish = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(self.settings.worker_concurrency)
        self._deadlines = Deadlines()
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = False
        self._consumer_kept: asyncio.Task[None] | None = None
        """Recreates the pool's consumer if it is deleted while this worker runs."""
        self._answers = answers
        self.api: Endpoint[Any] | None = None
        if answers is not None:
            self.api = Endpoint(pool, answers)  # type: ignore[arg-type]
            serve_api(self.broker, self.api)

    # -- wiring -------------------------------------------------------------------------------

    def app(self) -> FastStream:
        app = FastStream(self.broker, logger=logging.getLogger("faststream.app"))
        self.health = health.serve(app, self.health_server())
        app.on_startup(self.on_startup)
        app.after_startup(self.start_consuming)
        app.on_shutdown(self.on_shutdown)
        return app

    def consumer_config(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=worker_consumer(self.pool),
            ack_policy=JsAckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self.settings.ack_wait_s,
            max_ack_pending=max(1000, self.settings.worker_concurrency * 4),
            filter_subject=due_filter(self.pool),
        )

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
        self._publisher = Publisher(self.broker.connection, self.settings.request_timeout_s)
        await self._publisher.start()
        if self.api is not None and self._answers is not None:
            self.api.attach(self._answers(self.db))
        await self.advertise()
        self._consumer_kept = asyncio.create_task(
            streams.keep_consumer(js, DUE_STREAM, self.consumer_config()), name="keep-consumer"
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

    async def start_consuming(self) -> None:
        """Create the pool's durable consumer if needed and start pulling from it."""
        assert self._js is not None
        await self._js.add_consumer(DUE_STREAM, self.consumer_config())
        self._stopping = False
        self._loops = [
            asyncio.create_task(self._claim_loop(), name=f"{self.pool}-worker claims"),
            asyncio.create_task(self._finish_loop(), name=f"{self.pool}-worker finishing"),
            asyncio.create_task(self._heartbeat_loop(), name=f"{self.pool}-worker heartbeats"),
        ]
        self._puller = PullConsumer(
            self.broker.connection,
            stream=DUE_STREAM,
            durable=worker_consumer(self.pool),
            on_message=self._arrive,
            limit=max(self.settings.worker_concurrency, IN_HAND),
            max_batch=MAX_BATCH,
        )
        await self._puller.start()

    async def stop_consuming(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop pulling, give back what was not claimed yet, let the runs in hand finish
        (cut off after ``grace_s``: their claims go stale and another worker takes them over)."""
        if self._puller is None:
            return
        self._stopping = True
        await self._puller.stop()
        self._wake_claims.set()
        claims_loop, finish_loop, _ = self._loops
        with contextlib.suppress(Exception):
            await asyncio.wait_for(claims_loop, grace_s)
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=grace_s)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        self._wake_finish.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(finish_loop, grace_s)
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops = []
        self._puller = None
        await self._publisher.stop()

    async def on_shutdown(self) -> None:
        if self._consumer_kept is not None:
            self._consumer_kept.cancel()
        await self.stop_consuming()
        await self.db.close()

    async def advertise(self) -> None:
        """Tell the scheduler which job types this pool runs (replacing the pool's previous list)."""
        assert self._js is not None
        catalog = await self._js.key_value(CATALOG_BUCKET)
        infos = [t.info() for t in self.registry.for_pool(self.pool)]
        await catalog.put(f"pool.{self.pool}", _encoder.encode(infos))

    # -- settling a delivery ------------------------------------------------------------------

    def _release(self) -> None:
        if self._puller is not None:
            self._puller.release()

    async def _ack(self, msg: Msg) -> None:
        try:
            await msg.ack()
        except Exception:
            log.debug("ack failed", exc_info=True)
        finally:
            self._release()

    async def _ack_all(self, msgs: list[Msg]) -> None:
        """Ack a batch's deliveries in one flush (an ack lost here only means a redelivery,
        which finds the finished claim and publishes nothing new)."""
        try:
            await self._publisher.ack_all(msgs)
        except Exception:
            log.debug("ack failed", exc_info=True)
        finally:
            if self._puller is not None and msgs:
                self._puller.release(len(msgs))

    async def _nak(self, msg: Msg, delay: float) -> None:
        try:
            await msg.nak(delay=delay)
        except Exception:
            log.debug("nack failed", exc_info=True)
        finally:
            self._release()

    async def _redeliver_later(self, d: _Delivery, error: BaseException) -> None:
        """The broker or the claims bucket failed us: leave the occurrence for redelivery."""
        log.warning(
            "occurrence left for redelivery",
            extra={
                "action": "worker.retry_later",
                "occurrence_id": d.due.occurrence_id,
                "error": repr(error),
            },
        )
        await self._nak(d.msg, 1.0)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._stopping:
            self._wake_finish.set()

    # -- claiming a batch ---------------------------------------------------------------------

    def _arrive(self, msg: Msg) -> None:
        self._arrived.append(msg)
        self._wake_claims.set()

    async def _claim_loop(self) -> None:
        while True:
            if not self._arrived:
                if self._stopping:
                    return
                self._wake_claims.clear()
                await self._wake_claims.wait()
                continue
            batch, self._arrived = self._arrived, []
            if self._stopping:  # not claimed: another worker may take them at once
                for msg in batch:
                    await self._nak(msg, 0.0)
                continue
            try:
                await self._claim_batch(batch)
            except Exception:  # a bug, not the broker: the messages come again after ack_wait
                log.exception("a batch of occurrences was not claimed")

    async def _delivery(self, msg: Msg) -> _Delivery | None:
        try:
            due = due_decoder.decode(msg.data)
        except msgspec.DecodeError as exc:
            log.error(
                "undecodable due message dropped",
                extra={"action": "worker.bad_message", "error": str(exc)},
            )
            try:
                await msg.term()
            finally:
                self._release()
            return None
        attempt, seq = _delivered_and_seq(msg)
        if attempt > 1:
            metrics.CONSUMER_REDELIVERIES.labels(self.pool).inc()
        return _Delivery(msg, due, attempt, claim_key(due.occurrence_id), seq)

    def _running_claim(self, d: _Delivery, now: float) -> bytes:
        """The encoded claim of a run this worker holds, as created and heart-beaten."""
        return _encoder.encode(
            Claim(state="running", worker=self.name, attempt=d.attempt, heartbeat_at=now, seq=d.seq)
        )

    async def _claim_batch(self, msgs: list[Msg]) -> None:
        """Create the claims of a batch in one pipelined round trip; start the runs won."""
        deliveries = [d for d in [await self._delivery(m) for m in msgs] if d is not None]
        now = time.time()
        creates: list[Publish] = [
            (
                _CLAIM_SUBJECT + d.key,
                self._running_claim(d, now),
                {_EXPECTED_LAST: "0"},
            )
            for d in deliveries
        ]
        results = await self._publisher.confirm_all(creates)
        for d, result in zip(deliveries, results, strict=True):
            if isinstance(result, int):
                d.revision = result
                self._spawn(self._run_one(d))
            elif _wrong_sequence(result):  # held, finished, or deleted for a retry: look closer
                self._spawn(self._claim_contested(d))
            else:
                await self._redeliver_later(d, result)

    async def _claim_contested(self, d: _Delivery) -> None:
        try:
            revision = await self._claim(d)
        except Exception as exc:
            await self._redeliver_later(d, exc)
            return
        if revision is not None:
            d.revision = revision
            await self._run_one(d)

    async def _claim(self, d: _Delivery) -> int | None:
        """Take the occurrence for this worker; None when it is done or someone else holds it."""
        assert self._claims is not None
        due, key, msg = d.due, d.key, d.msg
        claim = self._running_claim(d, time.time())
        try:
            return await self._claims.create(key, claim)
        except KeyWrongLastSequenceError:
            pass
        try:
            entry = await self._claims.get(key)
        except KeyNotFoundError:
            await self._nak(msg, 0.2)
            return None
        held = _claim_decoder.decode(entry.value or b"{}")
        if held.state == "finished":
            # Finished before, but its event may not have been stored: publish it again (de-duplicated).
            event = msgspec.json.decode(held.event, type=RunFinished)
            await self._publish_finished(
                event.data.status, due.job_type, event.id, bytes(held.event)
            )
            await self._ack(msg)
            log.info(
                "occurrence already finished; not run again",
                extra={"action": "worker.duplicate", "occurrence_id": due.occurrence_id},
            )
            return None
        age = time.time() - held.heartbeat_at
        if age < self.lease_s and not (
            held.worker == self.name and due.occurrence_id not in self.running
        ):
            await self._nak(msg, max(0.2, self.lease_s - age))
            return None
        try:
            revision = await self._claims.update(key, claim, last=entry.revision)
        except KeyWrongLastSequenceError:
            await self._nak(msg, 0.2)
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

    # -- one run ------------------------------------------------------------------------------

    async def _run_one(self, d: _Delivery) -> None:
        occurrence_id = d.due.occurrence_id
        # From its claim on, the heartbeat task keeps it (claim and delivery) alive, also while
        # it waits for a handler slot; its claim's revision lives in ``d``.
        d.beat_at = time.time()
        self._beating[occurrence_id] = d
        try:
            async with self._slots:
                if self._stopping:
                    await self._give_back(d)
                    return
                ready = await self._traced_outcome(d)
        except Exception as exc:
            await self._redeliver_later(d, exc)
            return
        finally:
            self._beating.pop(occurrence_id, None)
        if ready:
            self._finishing.append(d)
            self._wake_finish.set()

    async def _give_back(self, d: _Delivery) -> None:
        """A stopping worker's claimed but not started occurrence: release it for another worker."""
        assert self._claims is not None
        with contextlib.suppress(Exception):
            await self._claims.delete(d.key, last=d.revision)
        await self._nak(d.msg, 0.0)

    async def _traced_outcome(self, d: _Delivery) -> bool:
        msg = d.msg
        with telemetry.consumer_span(
            msg.subject,
            d.due.occurrence_id,
            msg.headers,
            consumer=self._consumer_name,
            attributes={
                "belltower.job.type": d.due.job_type,
                "belltower.run.attempt": d.attempt,
            }
            if telemetry.recording()
            else None,
        ):
            return await self._outcome(d)

    async def _outcome(self, d: _Delivery) -> bool:
        """Run the occurrence; True when its final event is ready to be committed."""
        due, attempt = d.due, d.attempt
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
                event = await self._run(d)
            finally:
                self.running.discard(due.occurrence_id)
            data = event.data
            if data.status in ("failed", "timed_out") and attempt <= due.retries:
                if attempt < due.max_deliveries:
                    await self._retry_later(d, data.error)
                    return False
                event = self._dead_letter(
                    due,
                    attempt,
                    f"dead-lettered after {attempt} deliveries; last error: {data.error}",
                )
        d.event = event
        d.payload = _encoder.encode(event)
        d.headers = {**event_headers(event.id), **(d.trace or telemetry.trace_headers())}
        return True

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

    async def _retry_later(self, d: _Delivery, error: str | None) -> None:
        """Give the occurrence back for its next attempt after the backoff: release the claim,
        say so in a progress event (history shows it on the run), nak with the delay."""
        assert self._claims is not None and self._js is not None
        due, attempt = d.due, d.attempt
        initial, factor, most = due.backoff_s
        delay = min(most, initial * factor ** (attempt - 1))
        message = (
            f"attempt {attempt} failed: {error or 'no error given'}; "
            f"retry {attempt} of {due.retries} in {delay:g}s"
        )
        await self._claims.delete(d.key, last=d.revision)
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
        await self._nak(d.msg, delay)

    # -- finishing a batch --------------------------------------------------------------------

    async def _finish_loop(self) -> None:
        while True:
            if not self._finishing:
                if self._stopping and not self._tasks:
                    return
                self._wake_finish.clear()
                await self._wake_finish.wait()
                continue
            batch, self._finishing = self._finishing, []
            try:
                await self._finish_batch(batch)
            except Exception:  # a bug, not the broker: the messages come again after ack_wait
                log.exception("a batch of finished runs was not settled")

    async def _finish_batch(self, batch: list[_Delivery]) -> None:
        """Commit the finished claims in one pipelined round trip, then announce the runs."""
        now = time.time()
        commits: list[Publish] = [
            (
                _CLAIM_SUBJECT + d.key,
                _encoder.encode(
                    Claim(
                        state="finished",
                        worker=self.name,
                        attempt=d.attempt,
                        heartbeat_at=now,
                        event=msgspec.Raw(d.payload),
                    )
                ),
                {_EXPECTED_LAST: str(d.revision)},
            )
            for d in batch
        ]
        results = await self._publisher.confirm_all(commits)
        committed: list[_Delivery] = []
        for d, result in zip(batch, results, strict=True):
            if isinstance(result, int):
                committed.append(d)
            elif _wrong_sequence(result):  # our own heartbeat moved it on, or we lost it
                self._spawn(self._finish_contested(d))
            else:
                await self._redeliver_later(d, result)
        await self._announce(committed)

    async def _finish_contested(self, d: _Delivery) -> None:
        try:
            won = await self._commit(d)
        except Exception as exc:
            await self._redeliver_later(d, exc)
            return
        if won:
            await self._announce([d])
            return
        # Another worker took the occurrence over; it stays queued until one of us finishes it.
        log.warning(
            "lost the claim while running; the occurrence is left to the worker holding it",
            extra={"action": "worker.claim_lost", "occurrence_id": d.due.occurrence_id},
        )
        await self._nak(d.msg, self.lease_s)

    async def _announce(self, committed: list[_Delivery]) -> None:
        """Publish the finished events together, then ack the occurrences they confirm."""
        if not committed:
            return
        results = await self._publisher.confirm_all(
            [
                (
                    run_finished_subject(d.event.data.status, d.due.job_type),  # type: ignore[union-attr]
                    d.payload,
                    d.headers,
                )
                for d in committed
            ]
        )
        confirmed: list[_Delivery] = []
        for d, result in zip(committed, results, strict=True):
            if isinstance(result, int):
                confirmed.append(d)
            else:  # committed: the redelivery publishes the event from the claim
                await self._redeliver_later(d, result)
        metrics.record_runs(self.pool, [d.event.data for d in confirmed])  # type: ignore[union-attr]
        await self._ack_all([d.msg for d in confirmed])

    async def _commit(self, d: _Delivery) -> bool:
        """Write the finished claim; False when the claim now belongs to another worker."""
        assert self._claims is not None
        finished = Claim(
            state="finished",
            worker=self.name,
            attempt=d.attempt,
            heartbeat_at=time.time(),
            event=msgspec.Raw(d.payload),
        )
        revision = d.revision
        while True:
            try:
                await self._claims.update(d.key, _encoder.encode(finished), last=revision)
                return True
            except KeyWrongLastSequenceError:
                entry = await self._claims.get(d.key)
                held = _claim_decoder.decode(entry.value or b"{}")
                if not (
                    held.state == "running"
                    and held.worker == self.name
                    and held.attempt == d.attempt
                ):
                    return False
                if entry.revision is not None:  # our own heartbeat moved it on
                    revision = entry.revision

    # -- heartbeats ---------------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        """Every long run's delivery and claim are kept alive by this one task, in batches."""
        while True:
            await asyncio.sleep(self.heartbeat_s / 2)
            try:
                await self._beat()
            except Exception:
                log.warning(
                    "heartbeat failed", extra={"action": "worker.heartbeat_failed"}, exc_info=True
                )

    async def _beat(self) -> None:
        now = time.time()
        beats = [d for d in self._beating.values() if now - d.beat_at >= self.heartbeat_s]
        if not beats:
            return
        for d in beats:
            d.beat_at = now
            with contextlib.suppress(Exception):
                await d.msg.in_progress()
        results = await self._publisher.confirm_all(
            [
                (
                    _CLAIM_SUBJECT + d.key,
                    self._running_claim(d, now),
                    {_EXPECTED_LAST: str(d.revision)},
                )
                for d in beats
            ]
        )
        for d, result in zip(beats, results, strict=True):
            if isinstance(result, int):
                d.revision = max(d.revision, result)
            elif _wrong_sequence(result):  # taken over (or just committed): stop beating it
                self._beating.pop(d.due.occurrence_id, None)
            else:
                log.warning(
                    "heartbeat failed",
                    extra={"action": "worker.heartbeat_failed", "error": repr(result)},
                )

    async def _run(self, d: _Delivery) -> RunFinished:
        assert self._api is not None
        due, attempt = d.due, d.attempt
        started_at = utcnow()
        trace_id, d.trace = telemetry.run_trace()
        carried = _carried(due)
        started = RunStarted(
            id=f"{due.run_id}.started.{attempt}",
            source=self.source,
            subject=due.job_id,
            time=started_at,
            data=RunStartedData(
                **carried,
                started_at=started_at,
                attempt=attempt,
                worker=self.name,
                trace_id=trace_id,
            ),
        )
        # Not confirmed: nothing waits on a run's start, and a start the broker lost (as in a
        # restart) costs nothing but the event itself: history records the run from its
        # finished event, which follows on the same connection, so is never stored before it.
        await self._publisher.send(
            run_started_subject(due.job_type),
            _encoder.encode(started),
            {**event_headers(started.id), **d.trace},
        )
        output = Output()
        job_type = self.registry.get(due.job_type)
        timeout = (
            due.timeout_s
            or (job_type.timeout_s if job_type else None)
            or self.settings.default_timeout_s
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
                _job_logger(due.job_type),
                {"run_id": due.run_id, "job_id": due.job_id, "occurrence_id": due.occurrence_id},
            ),
            output=output,
            settings=self.settings,
            db=self.db,
            mailer=self.mailer,
            api=self._api,
            _progress=self._progress_reporter(d),
        )
        try:
            if trace_id is None or telemetry.recording():
                with telemetry.span(
                    f"run {due.job_type}", attributes={"belltower.job.type": due.job_type}
                ):
                    outcome = await self._execute(job_type, due, ctx, timeout)
                    telemetry.record_outcome(outcome.status, outcome.error)
            else:  # the consumer's unrecorded span stands for the run's, as in telemetry.span
                outcome = await self._execute(job_type, due, ctx, timeout)
        finally:  # no more heartbeats: the commit follows
            self._beating.pop(due.occurrence_id, None)
        return self._finished_event(due, attempt, outcome, output, started_at, trace_id, carried)

    def _progress_reporter(self, d: _Delivery) -> Any:
        due, attempt = d.due, d.attempt
        count = 0

        async def progress(done: int | None, total: int | None, message: str) -> None:
            nonlocal count
            count += 1
            event = RunProgress(
                id=f"{due.run_id}.progress.{attempt}.{count}",
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

        return progress

    def _finished_event(
        self,
        due: DueOccurrence,
        attempt: int,
        outcome: _Outcome,
        output: Output,
        started_at: Any,
        trace_id: str | None,
        carried: dict[str, Any],
    ) -> RunFinished:
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
                **carried,
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
        if log.isEnabledFor(logging.INFO):  # its fields cost more than the check
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
        return event

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
        deadline = self._deadlines.start(timeout)
        try:
            await job_type.run(ctx, params)
        except asyncio.CancelledError:
            if not deadline.timed_out():
                raise
            message = f"timed out after {timeout:g}s"
            ctx.output.line(message)
            return _Outcome("timed_out", message)
        except RunHeld as exc:
            ctx.output.line(exc.message)
            return _Outcome("held", exc.message)
        except (JobFailed, BelltowerError) as exc:
            ctx.output.line(exc.message)
            return _Outcome("failed", exc.message)
        except Exception:  # a TimeoutError of the handler's own among them
            return _unexpected_failure(ctx)
        finally:
            self._deadlines.finish(deadline)
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


@functools.cache
def _job_logger(job_type: str) -> logging.Logger:
    return logging.getLogger(f"belltower.job.{job_type}")


def _delivered_and_seq(msg: Msg) -> tuple[int, int]:
    """A due message's delivery count (its attempt) and stream sequence, read from its ack
    subject as ``msg.metadata`` does, without building the rest of the metadata; (1, 0) for a
    message that is not a JetStream delivery (a test's plain message)."""
    reply = msg.reply
    if not reply:
        return 1, 0
    tokens = reply.split(".")
    try:
        if len(tokens) == 9:  # $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>...
            return int(tokens[4]), int(tokens[5])
        if len(tokens) >= 11:  # $JS.ACK.<domain>.<account hash>.<stream>.<consumer>...
            return int(tokens[6]), int(tokens[7])
        metadata = msg.metadata
        return metadata.num_delivered, metadata.sequence.stream
    except Exception:
        return 1, 0


def _unexpected_failure(ctx: JobContext) -> _Outcome:
    """A handler raised something it did not mean to: keep the traceback in the output."""
    exc = sys.exc_info()[1]
    message = f"{type(exc).__name__}: {exc}"
    ctx.output.line(f"failed: {message}")
    ctx.output.write(traceback.format_exc())
    return _Outcome("failed", message)


def run(pool: Pool, registry: Registry, answers: type[Any] | None = None) -> None:
    """Entry point body of a worker service (``answers``: see :class:`Worker`)."""
    worker = Worker(pool, registry, answers=answers)
    app = worker.app()
    heap.freeze_long_lived()
    asyncio.run(app.run())
