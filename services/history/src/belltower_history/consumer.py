"""History's intake: a durable push consumer of run events whose callback gathers batches.

Why it is written this way, rather than with a pull ``fetch`` loop or faststream's subscriber:

* **Push, not pull.** nats-py's ``PullSubscription.fetch`` creates an asyncio task and a
  ``wait_for`` for every message it returns; that cost a quarter of history's CPU. A push
  subscription with a callback runs every message through one long-lived task of nats-py's
  (``_wait_for_msgs``), and the callback here only appends to a list, so receiving is cheap.
  It also needs no fetch round trips: the server keeps sending while a batch is written.
* **Durable, shared, bounded.** The consumer is durable (:data:`HISTORY_CONSUMER`) with a
  deliver group of the same name, so several history replicas split the events between them
  and a restart resumes where the last one stopped. Acks are explicit (never ``AckPolicy.ALL``:
  with replicas, one replica's ack must not cover another's uncommitted messages), and
  ``max_ack_pending`` (four batches unless told) bounds what is in flight, buffered or being
  written, across replicas.
  That bound is this consumer's back-pressure: no flow control nor idle heartbeats, because
  with a deliver group the server sends those to any one member of the group, so they say
  nothing about a given subscriber (nats.go and nats.c refuse a queue subscription on such a
  consumer for that reason), and nats-py only acts on heartbeats for ordered consumers.
* **Fixed deliver subject.** The consumer is created with :data:`DELIVER_SUBJECT` rather than
  a random inbox, so replicas starting at once all ask for the same configuration, which the
  server accepts as one idempotent create.
* **Batching off the callback.** A task takes up to ``batch_size`` messages from the buffer as
  soon as it is full, or once its oldest message has waited ``linger_s``, so a lone event is
  stored within that time while a busy stream gets full batches. Up to ``concurrency`` batches
  are in the handler at once, so one is decoded while the one before is in PostgreSQL (the
  handler writes them one at a time, in order), and receiving goes on meanwhile. The handler
  acks a batch only after PostgreSQL committed it and naks it with a delay when the write
  failed, so nothing is acked that is not stored.
* **Shutdown.** :meth:`BatchConsumer.stop` unsubscribes first (a live subscription kept
  nats-py's connection drain waiting its full timeout), lets the batches in hand finish
  and naks what was still buffered, so another replica takes it at once instead of after
  ``ack_wait``.
* **NATS restarts.** nats-py re-subscribes the deliver subject when it reconnects and the
  durable consumer is kept in the server's store, so delivery simply resumes; messages whose
  acks were lost are delivered again after ``ack_wait`` and the writes are idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from belltower import streams

log = logging.getLogger(__name__)

DELIVER_SUBJECT = "belltower.deliver.history"
"""Where the server pushes run events for history; outside every stream's subjects."""

Handler = Callable[[list[Msg]], Awaitable[bool]]
"""Stores, then acks or naks, one batch; True when it was stored."""


class BatchConsumer:
    """Pushes a stream's messages through ``handler`` in batches of up to ``batch_size``."""

    def __init__(
        self,
        js: JetStreamContext,
        *,
        stream: str,
        durable: str,
        filter_subject: str,
        handler: Handler,
        batch_size: int,
        ack_wait_s: float,
        linger_s: float = 0.025,
        max_ack_pending: int | None = None,
        concurrency: int = 2,
        retry_pause_s: float = 0.5,
    ) -> None:
        self.js = js
        self.stream = stream
        self.durable = durable
        self.filter_subject = filter_subject
        self.handler = handler
        self.batch_size = batch_size
        self.ack_wait_s = ack_wait_s
        self.linger_s = linger_s
        self.max_ack_pending = max_ack_pending or batch_size * 4
        self.concurrency = concurrency
        self.retry_pause_s = retry_pause_s
        self._buffer: list[Msg] = []
        self._oldest_at = 0.0
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()
        self._stopping = False
        self._subscription: JetStreamContext.PushSubscription | None = None
        self._writer: asyncio.Task[None] | None = None
        self._in_hand: set[asyncio.Task[None]] = set()
        self._keeper: asyncio.Task[None] | None = None

    def config(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.durable,
            deliver_subject=DELIVER_SUBJECT,
            deliver_group=self.durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self.ack_wait_s,
            max_ack_pending=self.max_ack_pending,
            filter_subject=self.filter_subject,
        )

    async def start(self) -> None:
        config = await self._ensure_consumer()
        self._writer = asyncio.create_task(self._write_batches(), name=f"{self.durable}-writer")
        self._subscription = await self.js.subscribe_bind(
            stream=self.stream,
            config=config,
            consumer=self.durable,
            cb=self._on_message,
            manual_ack=True,
        )
        # Deleted under us (an operator's `nats consumer rm`), the consumer is created again
        # from the stream's start: its ack floor went with it, so every run event the stream
        # still holds comes again, and the upserts store nothing twice.
        self._keeper = asyncio.create_task(
            streams.keep_consumer(self.js, self.stream, self.config()),
            name=f"{self.durable}-keeper",
        )

    async def _ensure_consumer(self) -> ConsumerConfig:
        """Create or update the durable consumer; replace a pull consumer of an earlier version.

        A pull consumer cannot become a push one in place, so it is deleted and created again
        from just after its ack floor: nothing acked is delivered again, anything else is.
        """
        config = self.config()
        try:
            info = await self.js.consumer_info(self.stream, self.durable)
        except NotFoundError:
            info = None
        if info is not None and info.config.deliver_subject is None:
            log.warning(
                "replacing the pull consumer of an earlier version with a push consumer",
                extra={"action": "history.consumer_replaced", "consumer": self.durable},
            )
            with contextlib.suppress(NotFoundError):  # another replica did it meanwhile
                await self.js.delete_consumer(self.stream, self.durable)
            config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = info.ack_floor.stream_seq + 1
        elif info is not None:  # where it starts cannot change, the rest can
            config.deliver_policy = info.config.deliver_policy
            config.opt_start_seq = info.config.opt_start_seq
            config.opt_start_time = info.config.opt_start_time
        return (await self.js.add_consumer(self.stream, config)).config

    async def _on_message(self, msg: Msg) -> None:
        """nats-py's callback, once per message: buffer it; the writer task does the rest."""
        buffer = self._buffer
        buffer.append(msg)
        n = len(buffer)
        if n == 1:
            self._oldest_at = time.monotonic()
            self._arrived.set()
        if n >= self.batch_size:
            self._full.set()

    async def _write_batches(self) -> None:
        buffer = self._buffer
        slots = asyncio.Semaphore(self.concurrency)
        while not self._stopping:
            if not buffer:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            if len(buffer) < self.batch_size:
                wait = self._oldest_at + self.linger_s - time.monotonic()
                if wait > 0:
                    self._full.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait):
                            await self._full.wait()
            await slots.acquire()
            if self._stopping or not buffer:
                slots.release()
                continue
            batch = buffer[: self.batch_size]
            del buffer[: self.batch_size]
            # What is left arrived after this batch's oldest message: it is flushed no later.
            task = asyncio.create_task(self._handle(batch, slots))
            self._in_hand.add(task)
            task.add_done_callback(self._in_hand.discard)

    async def _handle(self, batch: list[Msg], slots: asyncio.Semaphore) -> None:
        try:
            stored = await self.handler(batch)
        except Exception:  # the handler acks or naks; this is a bug, not a database error
            log.exception(
                "run events not handled; they will be redelivered",
                extra={"action": "history.batch_failed"},
            )
            stored = False
        try:
            if not stored:  # the database is likely down: don't spin through the buffer
                await asyncio.sleep(self.retry_pause_s)
        finally:
            slots.release()

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop receiving, finish the batches being written, and nak the ones still buffered."""
        self._stopping = True
        if self._keeper is not None:
            self._keeper.cancel()
            self._keeper = None
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
            self._subscription = None
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        if self._in_hand:
            _, late = await asyncio.wait(set(self._in_hand), timeout=grace_s)
            for task in late:  # their messages come again after ack_wait
                task.cancel()
            if late:
                await asyncio.wait(late)
        left, self._buffer[:] = list(self._buffer), []
        for msg in left:
            with contextlib.suppress(Exception):
                await msg.nak()
