"""Publishing due occurrences to JetStream in batches, with one waiter per batch.

JetStream acknowledges every published message on its reply subject. nats-py's
``publish_async`` gives each message a future, a done-callback, a random token (a system call),
a semaphore round and a JSON-decoded ``PubAck`` dataclass; at 100,000 messages due at the same
instant that is most of the scheduler's CPU, and the process is the bottleneck of a burst
(`bench/run.py --only burst_drain_s`). Here the messages of a batch share one reply prefix
and are told apart by their index in the batch (``<prefix>.<batch>.<index>``); an ack only
flips one byte of the batch's outcome, and the batch's waiter wakes once, when all of it is
acknowledged or its time is up. The protocol is the one ``publish_async`` speaks (core
publish with a reply subject; the ack is a JSON ``PubAck`` or an ``error``; a 503 status when
no stream listens), so the server sees nothing different.

Flow control: at most ``max_pending`` messages are unacknowledged at once (nats-py's default
for ``publish_async`` is 4,000); publishing waits until acks bring the count back below half,
and gives up with :class:`Stalled` after ``stall_s`` seconds without room (a broker that takes
messages and acknowledges none must not hang the dispatcher).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass, field

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

PENDING = 0
CONFIRMED = 1
FAILED = 2
"""A message's outcome in :attr:`Batch.outcome`."""

_NO_RESPONDERS = "503"
KEPT_ERRORS = 5


class Stalled(Exception):
    """Nothing was acknowledged for too long while the window was full."""


@dataclass(eq=False)
class Batch:
    """Messages published together; ``outcome[i]`` says what became of the i-th."""

    name: str
    outcome: bytearray = field(default_factory=bytearray)
    unacked: int = 0
    errors: list[str] = field(default_factory=list)
    """The first few refusals' reasons (:data:`KEPT_ERRORS`), for the log."""
    _all_acked: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def confirmed(self) -> int:
        return self.outcome.count(CONFIRMED)

    @property
    def refused(self) -> int:
        return self.outcome.count(FAILED)

    def _refuse(self, index: int, reason: str) -> None:
        self.outcome[index] = FAILED
        if len(self.errors) < KEPT_ERRORS:  # a stream refusing 100k messages says one thing
            self.errors.append(reason)

    async def wait(self, timeout: float) -> None:
        """Until every message is acknowledged (confirmed or refused), or ``timeout`` seconds.

        What is still unacknowledged then stays ``PENDING``; a late ack is ignored.
        """
        if self.unacked:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_acked.wait(), timeout)


class BatchPublisher:
    """JetStream publishing with acks gathered per batch (see the module's docstring)."""

    def __init__(self, nc: NatsClient, max_pending: int = 4_000, stall_s: float = 10.0) -> None:
        self.nc = nc
        self.max_pending = max_pending
        self.stall_s = stall_s
        self._prefix = ""
        self._sub: Subscription | None = None
        self._batches: dict[str, Batch] = {}
        self._ids = itertools.count()
        self._in_flight = 0
        self._room = asyncio.Event()
        self._room.set()

    async def _start(self) -> None:
        self._prefix = self.nc.new_inbox()
        self._sub = await self.nc.subscribe(f"{self._prefix}.*.*", cb=self._on_ack)

    @property
    def in_flight(self) -> int:
        """Messages published and not yet acknowledged (nor given up on)."""
        return self._in_flight

    def batch(self) -> Batch:
        """A new batch; publish into it with :meth:`publish`, then ``await batch.wait(...)``
        and :meth:`forget` it."""
        batch = Batch(name=str(next(self._ids)))
        self._batches[batch.name] = batch
        return batch

    async def publish(
        self, batch: Batch, subject: str, payload: bytes, headers: dict[str, str]
    ) -> None:
        """Publish one message of ``batch``; returns once it is handed to the client (the ack
        comes later). Waits while ``max_pending`` messages are unacknowledged."""
        if self._sub is None:
            await self._start()
        if self._in_flight >= self.max_pending:
            self._room.clear()
            try:
                await asyncio.wait_for(self._room.wait(), self.stall_s)
            except TimeoutError:
                raise Stalled(
                    f"JetStream acknowledged none of {self._in_flight:,} messages in "
                    f"{self.stall_s:g} s"
                ) from None
        index = len(batch.outcome)
        batch.outcome.append(PENDING)
        batch.unacked += 1
        batch._all_acked.clear()
        self._in_flight += 1
        try:
            await self.nc.publish(
                subject, payload, reply=f"{self._prefix}.{batch.name}.{index}", headers=headers
            )
        except BaseException:
            batch.outcome.pop()
            batch.unacked -= 1
            self._in_flight -= 1
            raise

    def forget(self, batch: Batch) -> None:
        """Stop following ``batch``: its unacknowledged messages no longer count as in flight."""
        if self._batches.pop(batch.name, None) is batch:
            self._release(batch.unacked)
            batch.unacked = 0

    def _release(self, n: int) -> None:
        self._in_flight -= n
        if self._in_flight <= self.max_pending // 2:
            self._room.set()

    async def _on_ack(self, msg: Msg) -> None:
        # <prefix>.<batch>.<index>; the prefix holds dots of its own, so split from the right.
        _, name, index_text = msg.subject.rsplit(".", 2)
        batch = self._batches.get(name)
        if batch is None:
            return
        index = int(index_text)
        if index >= len(batch.outcome) or batch.outcome[index] != PENDING:
            return  # a late or repeated ack
        data = msg.data
        if msg.headers and msg.headers.get("Status") == _NO_RESPONDERS:
            batch._refuse(index, "no stream listens on the subject (503 no responders)")
        elif b'"error"' in data:
            batch._refuse(index, data.decode(errors="replace"))
        else:
            batch.outcome[index] = CONFIRMED
        batch.unacked -= 1
        self._release(1)
        if batch.unacked == 0:
            batch._all_acked.set()
