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
It also draws a random token from the OS for every publish; a counter does here. A batch's
publishes are written into the connection's buffer as protocol commands (nats-py re-validates
every header byte by byte per publish) and their acks fill one batch's slots, not a future
each; the worker's run starts and acks go the same way with no reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
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

_UNSAFE_SUBJECT = re.compile(r"[ \t\r\n]")
_HEADER_KEY = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_safe_keys: set[str] = set()
_ACK_FRAME = b" 4\r\n+ACK\r\n"


def _frame(
    subject: str, reply: str, payload: bytes, headers: dict[str, str] | None
) -> bytes | None:
    """The ``PUB``/``HPUB`` command of one publish as nats-py would write it, or None when it
    must go nats-py's own way (a subject with white space, a header key nats-py would refuse or
    strip, a value with a line break, which nats-py replaces).

    nats-py validates and encodes every header key and value byte by byte; for the worker's
    handful of fixed keys and ids that was a tenth of its CPU per run.
    """
    if not subject or _UNSAFE_SUBJECT.search(subject) or (reply and _UNSAFE_SUBJECT.search(reply)):
        return None
    if headers is None:
        return b"PUB %s %s %d\r\n%s\r\n" % (subject.encode(), reply.encode(), len(payload), payload)
    if not headers:
        block = b"NATS/1.0\r\n\r\n"
    else:
        if not _safe_keys.issuperset(headers):
            for key in headers:
                if not _HEADER_KEY.fullmatch(key):
                    return None
                _safe_keys.add(key)
        lines = "\r\n".join(map(": ".join, headers.items()))
        breaks = len(headers) - 1
        if lines.count("\n") != breaks or lines.count("\r") != breaks:
            return None
        block = b"NATS/1.0\r\n%s\r\n\r\n" % lines.encode()
    return b"HPUB %s %s %d %d\r\n%s%s\r\n" % (
        subject.encode(),
        reply.encode(),
        len(block),
        len(block) + len(payload),
        block,
        payload,
    )


class _Batch:
    """The acks a :meth:`Publisher.confirm_all` waits for: one slot per publish."""

    __slots__ = ("done", "left", "results")

    def __init__(self, n: int, done: asyncio.Future[None]) -> None:
        self.results: list[int | BaseException | None] = [None] * n
        self.left = n
        self.done = done

    def settle(self, i: int, result: int | BaseException) -> None:
        if self.results[i] is None:
            self.results[i] = result
            self.left -= 1
            if self.left <= 0 and not self.done.done():
                self.done.set_result(None)


class Publisher:
    """JetStream publishes whose acks are awaited together.

    A batch's publishes are written straight into the connection's pending buffer as protocol
    commands and flushed together; their acks come back to one wildcard inbox as
    ``<prefix><batch>.<index>`` and fill the batch's slots, so a batch costs one future, not one
    per message. Whatever cannot take that way (the connection is down and buffering, a header
    nats-py would rewrite) goes through nats-py's ``publish`` unchanged.
    """

    def __init__(self, nc: NatsClient, timeout_s: float) -> None:
        self.nc = nc
        self.timeout_s = timeout_s
        self._tokens = itertools.count()
        self._waiting: dict[str, asyncio.Future[int]] = {}
        self._batches: dict[str, _Batch] = {}
        self._prefix = ""
        self._subscription: Subscription | None = None
        self._direct = all(
            hasattr(nc, name) for name in ("_send_command", "_flush_pending", "_flush_queue")
        )

    async def start(self) -> None:
        self._prefix = self.nc.new_inbox() + "."
        self._subscription = await self.nc.subscribe(self._prefix + ">", cb=self._reply)

    async def stop(self) -> None:
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
            self._subscription = None
        for future in self._waiting.values():
            future.cancel()
        self._waiting.clear()
        for batch in self._batches.values():
            if not batch.done.done():
                batch.done.cancel()
        self._batches.clear()

    def _writable(self) -> bool:
        """Whether publishes may go straight into the connection's buffer now (else nats-py
        buffers them for a reconnect, or refuses them, its own way)."""
        nc = self.nc
        return self._direct and nc.is_connected and not nc.is_draining_pubs

    async def _send(
        self,
        subject: str,
        payload: bytes,
        reply: str,
        headers: dict[str, str] | None,
        direct: bool | None = None,
    ) -> bool:
        """Put one publish into the connection's buffer (True), flushed by :meth:`_flush`; or
        send it through nats-py's ``publish`` (False). ``direct``: :meth:`_writable`, when the
        caller asked it for a whole batch."""
        if direct is None:
            direct = self._writable()
        frame = (
            _frame(subject, reply, payload, headers)
            if direct and len(payload) <= self.nc.max_payload
            else None
        )
        if frame is None:
            await self.nc.publish(subject, payload, reply=reply, headers=headers)
            return False
        nc = self.nc
        nc.stats["out_msgs"] += 1
        nc.stats["out_bytes"] += len(payload)
        await nc._send_command(frame)
        return True

    async def _flush(self) -> None:
        """Wake the connection's flusher, as nats-py's ``publish`` does after each message."""
        queue = self.nc._flush_queue
        if queue is not None and queue.empty():
            await self.nc._flush_pending()

    async def send(
        self, subject: str, payload: bytes, headers: dict[str, str] | None = None
    ) -> None:
        """Publish with no reply: JetStream stores it and confirms nothing."""
        if await self._send(subject, payload, "", headers):
            await self._flush()

    async def ack_all(self, msgs: Sequence[Msg]) -> None:
        """Acknowledge JetStream deliveries, as ``Msg.ack`` does for each, in one flush."""
        direct = self._direct and self.nc.is_connected and not self.nc.is_draining_pubs
        nc = self.nc
        written = False
        for msg in msgs:
            if msg._ackd:
                continue
            if direct and msg.reply:
                nc.stats["out_msgs"] += 1
                nc.stats["out_bytes"] += 4
                await nc._send_command(b"PUB " + msg.reply.encode() + _ACK_FRAME)
                msg._ackd = True
                written = True
            else:
                await msg.ack()
        if written:
            await self._flush()

    async def publish(
        self, subject: str, payload: bytes, headers: dict[str, str] | None = None
    ) -> asyncio.Future[int]:
        """Send one publish; the future ends with its stream sequence or :class:`PublishError`."""
        token = str(next(self._tokens))
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting[token] = future
        try:
            if await self._send(subject, payload, self._prefix + token, headers):
                await self._flush()
        except BaseException:
            self._waiting.pop(token, None)
            raise
        future.add_done_callback(lambda _: self._waiting.pop(token, None))
        return future

    async def confirm_all(self, publishes: Sequence[Publish]) -> list[int | BaseException]:
        """Publish every message, then wait for all their acks at once (``timeout_s`` at most);
        an ack not come by then reads as :class:`TimeoutError` (lost, as in a server restart)."""
        if not publishes:
            return []
        key = str(next(self._tokens))
        batch = _Batch(len(publishes), asyncio.get_running_loop().create_future())
        self._batches[key] = batch
        reply = f"{self._prefix}{key}."
        written = False
        direct = self._writable()
        try:
            for i, (subject, payload, headers) in enumerate(publishes):
                try:
                    sent = await self._send(subject, payload, reply + str(i), headers, direct)
                    written = sent or written
                except Exception as exc:
                    batch.settle(i, exc)
            if written:
                await self._flush()
            if batch.left > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.timeout_s):
                        await batch.done
        finally:
            self._batches.pop(key, None)
        late = TimeoutError("the publish was not confirmed in time")
        return [late if r is None else r for r in batch.results]

    async def wait(self, futures: Sequence[asyncio.Future[int]]) -> None:
        """Wait for the futures to end; those not ended in ``timeout_s`` are cancelled (their
        acks were lost, as in a server restart) and read as :class:`TimeoutError`."""
        pending = [f for f in futures if not f.done()]
        if pending:
            _, late = await asyncio.wait(pending, timeout=self.timeout_s)
            for future in late:
                future.cancel()

    async def _reply(self, msg: Msg) -> None:
        token = msg.subject[len(self._prefix) :]
        key, dot, index = token.partition(".")
        if dot:
            batch = self._batches.get(key)
            if batch is not None:
                with contextlib.suppress(ValueError, IndexError):
                    batch.settle(int(index), _result(msg))
            return
        future = self._waiting.pop(token, None)
        if future is None or future.done():
            return
        result = _result(msg)
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)


def _result(msg: Msg) -> int | BaseException:
    """The stream sequence a JetStream publish ack names, or why the publish was refused."""
    if msg.headers and msg.headers.get(_STATUS) == _NO_RESPONDERS:
        return PublishError(503, 0, "no stream takes this subject")
    try:
        ack = _ack_decoder.decode(msg.data)
    except msgspec.DecodeError as exc:
        return exc
    if ack.error is not None:
        error = ack.error
        return PublishError(error.code, error.err_code, error.description)
    return ack.seq
