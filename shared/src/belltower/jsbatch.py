"""JetStream paid per batch: a lean pull consumer and a pipelined publisher.

**The pull consumer:** one subscription, one pull request for many messages.

Why not faststream's subscriber or nats-py's ``PullSubscription.fetch``: the worker's hot path
paid per message for faststream's middleware, dependency injection and logging scopes, and
nats-py's ``fetch`` creates an asyncio task and a ``wait_for`` for every message it returns.
Here a pull request (``$JS.API.CONSUMER.MSG.NEXT``) asks for as many messages as there are
free slots, the server sends them to one inbox subscription, and its callback hands each one
to ``on_message`` without a task of its own. The messages are ordinary nats-py ``Msg`` objects,
so ``ack``, ``nak``, ``in_progress``, ``term`` and ``metadata`` work on them as usual.

Credit is what was asked for and has not arrived. A new request goes out only when the last
one ended (all its messages came, or the server said it expired, or it lapsed on our side, as
after a server restart that forgot it) and at least ``min_batch`` slots are free, so a busy
pool pulls in large batches while a lone occurrence is still fetched at once.

**The publisher** sends JetStream publishes with a reply subject each and no wait, and
:meth:`Publisher.confirm_all` waits for a batch's acks together: one round trip for a batch.
Why not nats-py's ``publish_async``: when the server answers with an error (a compare-and-set
on a key-value revision that lost, ``err_code`` 10071), its reply handler raises instead of
failing the future, so the future never ends and the error goes to the connection's error
callback. Claims are exactly such compare-and-sets, and losing one is normal, not an error.
It also draws a random token from the OS for every publish; a counter does here.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import Callable, Sequence

import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

log = logging.getLogger(__name__)

_STATUS = "Status"
_HEARTBEAT = "100"
_NO_MESSAGES = "404"
_EXPIRED = "408"
_CONFLICT = "409"
_LAPSE_S = 1.0
"""How long past its expiry a request is waited for before it is taken as lost."""
_CONFLICT_PAUSE_S = 0.1


class PullConsumer:
    """Keeps up to ``limit`` messages of a durable pull consumer in hand."""

    def __init__(
        self,
        nc: NatsClient,
        *,
        stream: str,
        durable: str,
        on_message: Callable[[Msg], None],
        limit: int,
        max_batch: int = 256,
        expires_s: float = 5.0,
    ) -> None:
        self.nc = nc
        self.next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self.on_message = on_message
        self.limit = limit
        self.max_batch = max(1, min(max_batch, limit))
        self.min_batch = max(1, self.max_batch // 4)
        self.expires_s = expires_s
        self.in_hand = 0
        self._credit = 0
        self._conflict = False
        self._request_done = asyncio.Event()
        self._slots_freed = asyncio.Event()
        self._subscription: Subscription | None = None
        self._loop: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        inbox = self.nc.new_inbox()
        self._subscription = await self.nc.subscribe(inbox, cb=self._receive)
        self._inbox = inbox
        self._loop = asyncio.create_task(self._pull(), name=f"pull {self.next_subject}")

    async def stop(self) -> None:
        """Stop asking for messages; those already delivered still reach ``on_message``."""
        self._stopping = True
        self._slots_freed.set()
        self._request_done.set()
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
            self._loop = None
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
            self._subscription = None

    def release(self, n: int = 1) -> None:
        """``n`` messages left our hands (acked, nak'ed or termed)."""
        self.in_hand -= n
        if self.limit - self.in_hand >= self.min_batch or self.in_hand <= 0:
            self._slots_freed.set()

    async def _receive(self, msg: Msg) -> None:
        headers = msg.headers
        status = headers.get(_STATUS) if headers else None
        if status is None:
            self.in_hand += 1
            self._credit -= 1
            if self._credit <= 0:
                self._request_done.set()
            self.on_message(msg)
            return
        if status == _HEARTBEAT:
            return
        # 404, 408, 409: this request is over, whatever it still had to give. A 409 (too many
        # unacknowledged, too many waiting requests, a leader change) asks us to slow down.
        self._conflict = status == _CONFLICT
        self._credit = 0
        self._request_done.set()

    async def _pull(self) -> None:
        while not self._stopping:
            free = self.limit - self.in_hand
            if free < self.min_batch and self.in_hand > 0:
                self._slots_freed.clear()
                await self._slots_freed.wait()
                continue
            batch = min(free, self.max_batch)
            self._credit = batch
            self._request_done.clear()
            request = {"batch": batch, "expires": int(self.expires_s * 1e9)}
            try:
                await self.nc.publish(
                    self.next_subject, json.dumps(request).encode(), reply=self._inbox
                )
            except Exception:
                log.warning(
                    "pull request not sent", extra={"action": "worker.pull_failed"}, exc_info=True
                )
                await asyncio.sleep(_LAPSE_S)
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.expires_s + _LAPSE_S):
                    await self._request_done.wait()
            if self._credit > 0 or self._conflict:  # lapsed (a server restart forgot it) or refused
                self._credit = 0
                self._conflict = False
                await asyncio.sleep(_CONFLICT_PAUSE_S)


class PublishError(Exception):
    """JetStream refused a publish; ``err_code`` says why (10071: wrong last sequence)."""

    def __init__(self, code: int, err_code: int, description: str) -> None:
        super().__init__(f"{description} (code {code}, err_code {err_code})")
        self.code = code
        self.err_code = err_code
        self.description = description


class _Error(msgspec.Struct):
    code: int = 0
    err_code: int = 0
    description: str = ""


class _PubAck(msgspec.Struct):
    seq: int = 0
    error: _Error | None = None


_ack_decoder = msgspec.json.Decoder(_PubAck)
_NO_RESPONDERS = "503"

Publish = tuple[str, bytes, dict[str, str] | None]
"""Subject, payload and headers of one publish."""


class Publisher:
    """JetStream publishes whose acks are awaited together, as futures of the stored sequence."""

    def __init__(self, nc: NatsClient, timeout_s: float) -> None:
        self.nc = nc
        self.timeout_s = timeout_s
        self._tokens = itertools.count()
        self._waiting: dict[str, asyncio.Future[int]] = {}
        self._prefix = ""
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        self._prefix = self.nc.new_inbox() + "."
        self._subscription = await self.nc.subscribe(self._prefix + "*", cb=self._reply)

    async def stop(self) -> None:
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
            self._subscription = None
        for future in self._waiting.values():
            future.cancel()
        self._waiting.clear()

    async def publish(
        self, subject: str, payload: bytes, headers: dict[str, str] | None = None
    ) -> asyncio.Future[int]:
        """Send one publish; the future ends with its stream sequence or :class:`PublishError`."""
        token = str(next(self._tokens))
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting[token] = future
        try:
            await self.nc.publish(subject, payload, reply=self._prefix + token, headers=headers)
        except BaseException:
            self._waiting.pop(token, None)
            raise
        future.add_done_callback(lambda _: self._waiting.pop(token, None))
        return future

    async def confirm_all(self, publishes: Sequence[Publish]) -> list[int | BaseException]:
        """Publish every message, then wait for all their acks at once (``timeout_s`` at most)."""
        futures: list[asyncio.Future[int] | BaseException] = []
        for subject, payload, headers in publishes:
            try:
                futures.append(await self.publish(subject, payload, headers))
            except Exception as exc:
                futures.append(exc)
        await self.wait([f for f in futures if isinstance(f, asyncio.Future)])
        return [result_of(f) for f in futures]

    async def wait(self, futures: Sequence[asyncio.Future[int]]) -> None:
        """Wait for the futures to end; those not ended in ``timeout_s`` are cancelled (their
        acks were lost, as in a server restart) and read as :class:`TimeoutError`."""
        pending = [f for f in futures if not f.done()]
        if pending:
            _, late = await asyncio.wait(pending, timeout=self.timeout_s)
            for future in late:
                future.cancel()

    async def _reply(self, msg: Msg) -> None:
        future = self._waiting.pop(msg.subject[len(self._prefix) :], None)
        if future is None or future.done():
            return
        if msg.headers and msg.headers.get(_STATUS) == _NO_RESPONDERS:
            future.set_exception(PublishError(503, 0, "no stream takes this subject"))
            return
        try:
            ack = _ack_decoder.decode(msg.data)
        except msgspec.DecodeError as exc:
            future.set_exception(exc)
            return
        if ack.error is not None:
            error = ack.error
            future.set_exception(PublishError(error.code, error.err_code, error.description))
        else:
            future.set_result(ack.seq)


def result_of(future: asyncio.Future[int] | BaseException) -> int | BaseException:
    """A confirmed publish's sequence, or what went wrong with it."""
    if isinstance(future, BaseException):
        return future
    if future.cancelled():
        return TimeoutError("the publish was not confirmed in time")
    return future.exception() or future.result()
