"""Which scheduler replica dispatches which partition: leases in NATS KV, fenced in PostgreSQL.

Jobs are split into ``count`` partitions by their id (``fencing.partition_of``). Each partition has
one key in the ``belltower_leases`` bucket. A replica takes a partition by creating its key
(compare-and-set on "no such key") with a per-message TTL of the lease time, and keeps it by
rewriting it, again compare-and-set on the revision it last wrote, every ``renew_s``. When the
holder dies or stalls, the server expires the key and a standby's next ``create`` wins.

The KV revision of the winning ``create`` is the partition's **fencing token**. The holder
writes it to ``scheduler.leases`` before dispatching anything; a newer holder's token replaces
it, and every ledger transaction of the dispatcher checks, under a row lock, that the stored
token is still its own (:meth:`Store.plan`, and its other writes with a ``fence``: run statuses,
releases, marking dispatched). So a deposed replica that has not noticed yet (a
long GC pause, SIGSTOP, a network partition) cannot plan, hence cannot publish, an occurrence;
and locally the dispatcher stops as soon as the lease's validity, counted on the monotonic
clock from the last renewal sent, runs out (:meth:`Lease.check`). The occurrence id remains the
``Nats-Msg-Id`` end to end, so even a publish already under way when the lease was lost is
dropped by JetStream as a duplicate.

Replicas share the partitions out: each also keeps a ``replica.<id>`` key alive in the bucket,
counts the live ones, holds at most its fair share (partitions / replicas, rounded up) and
gives back one surplus lease per round, which another replica then takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import APIError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from belltower import streams
from belltower.settings import Settings
from belltower.subjects import LEASES_BUCKET

from .fencing import Deposed, lease_key
from .store import Store

log = logging.getLogger(__name__)

_WRONG_LAST_SEQUENCE = (10071, 10164)
_VALIDITY_SHARE = 0.9
"""A lease is trusted locally for this share of the lease time after a renewal was sent; the
server's expiry counts from when it received the renewal, later, so the holder always gives
up before anyone else can take over."""


_STANDBY_POLL_S = 0.5


class _Holder(msgspec.Struct, frozen=True):
    replica: str
    token: int


@dataclass
class Lease:
    """A partition held by this replica. ``token`` is the fencing token; ``revision`` the KV
    revision to renew against; ``valid_until`` a ``time.monotonic()`` instant."""

    partition: int
    count: int
    token: int
    revision: int
    valid_until: float
    replica: str

    @property
    def key(self) -> str:
        return lease_key(self.partition, self.count)

    @property
    def valid(self) -> bool:
        return time.monotonic() < self.valid_until

    def depose(self) -> None:
        """A fenced ledger write found a newer token in PostgreSQL: stop trusting this lease here
        at once (:meth:`check` fails); the keeper's next renewal finds the key taken and reports
        the loss, which stops the partition's dispatcher and run tracker."""
        self.valid_until = 0.0

    def check(self) -> None:
        """Raise :class:`Deposed` unless the lease is still valid here and now."""
        if not self.valid:
            raise Deposed(
                f"the lease on scheduler partition {self.partition} (token {self.token}) ran out; "
                "another replica may hold it now"
            )


class LeaseKeeper:
    """Takes, renews and releases this replica's partition leases.

    ``held`` maps each partition this replica holds to its :class:`Lease`: read it for
    readiness and for the ``belltower_scheduler_leader{partition}`` gauge. ``on_acquired`` is
    awaited once the token is fenced in PostgreSQL (it must start work, not wait for it);
    ``on_lost`` is called as soon as a lease is lost, and must stop dispatching at once.
    """

    def __init__(
        self,
        js: JetStreamContext,
        store: Store,
        settings: Settings,
        *,
        replica_id: str,
        partitions: int,
        lease_s: float,
        renew_s: float,
        on_acquired: Callable[[Lease], Awaitable[None]],
        on_lost: Callable[[Lease, str], None],
    ) -> None:
        self.js = js
        self.store = store
        self.settings = settings
        self.replica_id = replica_id
        self.partitions = partitions
        self.lease_s = lease_s
        self.renew_s = renew_s
        self.on_acquired = on_acquired
        self.on_lost = on_lost
        self.held: dict[int, Lease] = {}
        self._ttl = max(1, math.ceil(lease_s))
        self._kv: KeyValue | None = None
        self._stopping = False
        self.share = partitions
        """How many partitions this replica may hold: partitions / live replicas, rounded up."""
        self._presence_key = f"replica.{re.sub(r'[^-_a-zA-Z0-9]', '_', replica_id)}"

    async def start(self) -> None:
        await streams.ensure_bucket(
            self.js,
            LEASES_BUCKET,
            "Scheduler partition leases: which replica dispatches each partition",
            history=1,
            ttl=None,
            settings=self.settings,
        )
        self._kv = await self.js.key_value(LEASES_BUCKET)

    async def run_forever(self) -> None:
        """One loop per partition, so a slow acquisition never delays another's renewal."""
        await asyncio.gather(self._census(), *(self._keep(p) for p in range(self.partitions)))

    async def _census(self) -> None:
        while not self._stopping:
            started = time.monotonic()
            await self._count_replicas()
            await asyncio.sleep(max(0.0, self.renew_s - (time.monotonic() - started)))

    async def _count_replicas(self) -> None:
        """Say this replica is alive, and set ``share`` from how many are."""
        try:
            await asyncio.wait_for(
                self.js.publish(
                    f"$KV.{LEASES_BUCKET}.{self._presence_key}",
                    self._value(0),
                    msg_ttl=self._ttl,
                ),
                self.renew_s,
            )
            info = await asyncio.wait_for(
                self.js.stream_info(
                    f"KV_{LEASES_BUCKET}", subjects_filter=f"$KV.{LEASES_BUCKET}.replica.>"
                ),
                self.renew_s,
            )
        except Exception as exc:
            log.warning(
                f"counting scheduler replicas failed ({type(exc).__name__}: {exc}); keeping share {self.share}",
                extra={"action": "lease.census_error"},
            )
            return
        replicas = max(1, len(info.state.subjects or {}))
        share = math.ceil(self.partitions / replicas)
        if share != self.share:
            log.info(
                "scheduler replicas counted; partitions shared out again",
                extra={"action": "lease.share", "replicas": replicas, "share": share},
            )
        self.share = share

    async def _keep(self, partition: int) -> None:
        while not self._stopping:
            started = time.monotonic()
            await self._round(partition)
            # A standby asks more often than the holder renews: it takes over sooner, and a
            # failed ``create`` costs the server next to nothing.
            every = self.renew_s if partition in self.held else min(self.renew_s, _STANDBY_POLL_S)
            await asyncio.sleep(max(0.0, every - (time.monotonic() - started)))

    async def step(self) -> None:
        """One round for every partition: renew the leases held, try to take the others."""
        await self._count_replicas()
        await asyncio.gather(*(self._round(p) for p in range(self.partitions)))

    async def _round(self, partition: int) -> None:
        if self._stopping:
            return
        try:
            if partition in self.held:
                if len(self.held) > self.share and partition == max(self.held):
                    await self._release(self.held[partition], "it is another replica's share")
                else:
                    await self._renew(self.held[partition])
            elif len(self.held) < self.share:
                await self._acquire(partition)
        except Exception as exc:
            log.warning(
                f"lease round failed ({type(exc).__name__}: {exc}); retrying",
                extra={"action": "lease.error", "partition": partition},
            )
        lease = self.held.get(partition)
        if lease is not None and not lease.valid:
            self._lose(lease, "it could not be renewed in time")

    async def _acquire(self, partition: int) -> None:
        assert self._kv is not None
        key = lease_key(partition, self.partitions)
        sent_at = time.monotonic()
        try:
            revision = await asyncio.wait_for(
                self._kv.create(key, self._value(0), msg_ttl=self._ttl), self.renew_s
            )
        except KeyWrongLastSequenceError:
            return  # held by another replica
        lease = Lease(
            partition=partition,
            count=self.partitions,
            token=revision,
            revision=revision,
            valid_until=sent_at + self.lease_s * _VALIDITY_SHARE,
            replica=self.replica_id,
        )
        if not await self.store.fence(key, revision, self.replica_id):
            # PostgreSQL holds a newer token. Either another replica took the key since (then
            # renewing fails and we step back) or the bucket was recreated and revisions
            # restarted at 1 (then we do hold the key, and ours is the only live token).
            if not await self._renew(lease):
                return
            await self.store.fence(key, revision, self.replica_id, force=True)
            log.warning(
                "lease token was behind PostgreSQL's; the lease bucket was recreated",
                extra={"action": "lease.token_reset", "partition": partition, "token": revision},
            )
        lease.check()
        self.held[partition] = lease
        log.info(
            "scheduler partition lease acquired",
            extra={
                "action": "lease.acquired",
                "partition": partition,
                "partitions": self.partitions,
                "token": lease.token,
                "replica": self.replica_id,
            },
        )
        await self.on_acquired(lease)

    async def _renew(self, lease: Lease) -> bool:
        """Rewrite the key if it is still ours; False (and the lease lost) if it is not."""
        sent_at = time.monotonic()
        try:
            revision = await asyncio.wait_for(
                self.js.publish(
                    f"$KV.{LEASES_BUCKET}.{lease.key}",
                    self._value(lease.token),
                    headers={"Nats-Expected-Last-Subject-Sequence": str(lease.revision)},
                    msg_ttl=self._ttl,
                ),
                self.renew_s,
            )
        except APIError as exc:
            if exc.err_code in _WRONG_LAST_SEQUENCE:
                self._lose(lease, "another replica holds it now")
                return False
            raise
        lease.revision = revision.seq
        lease.valid_until = sent_at + self.lease_s * _VALIDITY_SHARE
        return True

    def _value(self, token: int) -> bytes:
        return msgspec.json.encode(_Holder(self.replica_id, token))

    def _lose(self, lease: Lease, why: str) -> None:
        lease.valid_until = 0.0
        if self.held.get(lease.partition) is not lease:
            return
        del self.held[lease.partition]
        log.warning(
            f"scheduler partition lease lost: {why}; dispatching stopped",
            extra={
                "action": "lease.lost",
                "partition": lease.partition,
                "token": lease.token,
                "replica": self.replica_id,
            },
        )
        self.on_lost(lease, why)

    async def release_all(self) -> None:
        """Give every lease back (on a clean shutdown) so a standby takes over at once."""
        self._stopping = True
        for lease in list(self.held.values()):
            await self._release(lease, "this replica is shutting down")
        with contextlib.suppress(Exception):  # gone from the census in a second
            await asyncio.wait_for(
                self.js.publish(
                    f"$KV.{LEASES_BUCKET}.{self._presence_key}", self._value(0), msg_ttl=1
                ),
                2.0,
            )

    async def _release(self, lease: Lease, why: str) -> None:
        """Stop dispatching the partition, then delete its key so another replica takes it."""
        assert self._kv is not None
        if self.held.get(lease.partition) is lease:
            del self.held[lease.partition]
        lease.valid_until = 0.0
        self.on_lost(lease, why)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._kv.delete(lease.key, last=lease.revision), 2.0)
        log.info(
            f"scheduler partition lease released: {why}",
            extra={
                "action": "lease.released",
                "partition": lease.partition,
                "token": lease.token,
                "replica": self.replica_id,
            },
        )
