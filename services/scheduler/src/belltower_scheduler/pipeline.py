"""The dispatcher's way out: write planned occurrences to the ledger, publish them to JetStream,
confirm the acks and mark them ``dispatched``, and publish again what a crash or an outage
left ``pending``. Chunk k+1 is written while chunk k is published; a chunk is only ever
published after its own transaction committed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

import msgspec

from belltower import metrics, telemetry
from belltower.api import RunPolicy
from belltower.events import DueOccurrence, ResultMail, due_encoder, run_id_for
from belltower.subjects import due_subject

from .entry import Entry, EntrySpec
from .fencing import FENCE_HEADER, Fence, Partition
from .jobstate import paused_copy
from .lease import Lease
from .limits import CAUSE as LIMITED
from .limits import Hold
from .planner import Chunk, Planned
from .publisher import CONFIRMED, Batch, BatchPublisher
from .slots import Slots
from .store import RunLimits, Store

log = logging.getLogger(__name__)

_due_subject = lru_cache(maxsize=1_024)(due_subject)
"""One subject string per (pool, type) instead of one formatted per message."""


@lru_cache(maxsize=4_096)
def _retry_wire(policy: RunPolicy) -> tuple[int, tuple[float, float, float], int]:
    """What a due message carries of a policy: retries, backoff, most deliveries."""
    b = policy.retry_backoff
    return policy.retries, (b.initial_s, b.factor, b.max_s), policy.deliveries


_Wire = tuple[str, str, str, float | None, ResultMail | None, int, tuple[float, float, float], int]


def _wire(spec: EntrySpec) -> _Wire:
    """What a due message carries of a job's spec: subject, type, pool, timeout, result mail,
    retries, backoff and most deliveries."""
    retries, backoff, deliveries = _retry_wire(spec.policy)
    return (
        _due_subject(spec.pool, spec.type),
        spec.type,
        spec.pool,
        spec.timeout_s,
        spec.result_mail,
        retries,
        backoff,
        deliveries,
    )


@dataclass(slots=True)
class Sent:
    """A published batch whose acknowledgements are still to be looked at."""

    batch: list[Planned]
    acks: Batch
    dispatched_at: datetime


@dataclass
class DispatchStats:
    """Counters for the metrics: ``skipped`` by cause, ``missed`` by catch-up policy (coalesced
    occurrences count as missed under ``latest``)."""

    dispatched: int = 0
    coalesced: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    missed: dict[str, int] = field(default_factory=dict)
    publish_failures: int = 0
    last_tick_at: datetime | None = None
    lateness_ms: list[float] = field(default_factory=list)


class Pipeline(Slots):
    """Commit, send, confirm and settle what the planner planned (the dispatcher's second room)."""

    store: Store
    publisher: BatchPublisher
    publish_timeout_s: float
    lease: Lease | None
    partition: Partition | None
    clock: Callable[[], datetime]
    entries: dict[str, Entry]
    stats: DispatchStats
    _retry_pending: bool
    _sent: list[Sent]

    def put(self, entry: Entry) -> None:
        raise NotImplementedError

    def _fence(self) -> Fence | None:
        """What every ledger write of this dispatcher is fenced by: its lease's key and token
        (:class:`Deposed`, writing nothing, once another replica holds the partition), or None
        without a lease (a lone scheduler, or run-now for a partition held elsewhere)."""
        return None if self.lease is None else (self.lease.key, self.lease.token)

    async def _commit_and_send(self, chunks: list[Chunk]) -> None:
        """Write chunk k+1 to the ledger while chunk k is published.

        An occurrence is published only once the transaction holding its ``pending`` row has
        committed, and only if that transaction inserted it. What was published goes to
        ``self._sent``, for ``_settle``. On failure the write in flight is waited for, not cancelled: its
        rows are either committed (and republished as pending) or rolled back.
        """
        commit = asyncio.create_task(self._commit(chunks[0]))
        try:
            for following in [*chunks[1:], None]:
                to_send = await commit
                if following is not None:
                    commit = asyncio.create_task(self._commit(following))
                await self._send(to_send, self._sent)
        finally:
            # Whatever happened, the last write started has finished before we return.
            await asyncio.gather(commit, return_exceptions=True)

    async def _commit(self, chunk: Chunk) -> list[Planned]:
        """Write one chunk; returns its occurrences to publish: new in the ledger and pending."""
        limits = {
            p.job_id: m
            for p in chunk.occurrences
            if (m := p.entry.spec.policy.max_runs) is not None and p.trigger == "schedule"
        }
        fence = None if self.lease is None else (self.lease.key, self.lease.token)
        hold = self._hold(chunk.occurrences)
        if limits:
            new_ids = await self._commit_limited(chunk, limits, fence, hold)
        elif fence is None and hold is None:
            new_ids = await self.store.plan(chunk.occurrences, chunk.next_runs)
        else:
            new_ids = await self.store.plan(
                chunk.occurrences, chunk.next_runs, fence=fence, hold=hold
            )
        if hold is not None:
            self._held(chunk.occurrences, hold)
        to_send = []
        tracking = self.tracking_runs
        for p in chunk.occurrences:
            if p.id in new_ids:
                if p.state == "pending":
                    to_send.append(p)
                    if tracking:
                        self.in_flight.setdefault(p.job_id, {})[p.id] = p.scheduled_for
                elif p.state == "coalesced":
                    self.stats.coalesced += 1
                    self._count(self.stats.missed, "latest")
                    metrics.OCCURRENCES_MISSED.labels("latest").inc()
                elif p.state == "missed":
                    self._count(self.stats.missed, p.entry.policy.catch_up)
                    metrics.OCCURRENCES_MISSED.labels(p.entry.policy.catch_up).inc()
                elif p.state == "skipped":
                    self._count(self.stats.skipped, p.cause or "other")
                    metrics.OCCURRENCES_SKIPPED.labels(p.cause or "other").inc()
                elif p.state == "waiting" and p.cause != LIMITED:
                    self.waiting[p.job_id] = p.id
                elif p.state == "awaiting":
                    self._count(self.stats.missed, "ask")
                    metrics.OCCURRENCES_MISSED.labels("ask").inc()
        return to_send

    async def _commit_limited(
        self, chunk: Chunk, limits: dict[str, int], fence: Fence | None, hold: Hold | None
    ) -> set[str]:
        """Write a chunk holding jobs with ``max_runs``: the ledger skips what is beyond each
        one's limit and pauses the jobs that reached it (``RunLimits``)."""
        applied = RunLimits(limits, self.clock())
        new_ids = await self.store.plan(
            chunk.occurrences, chunk.next_runs, fence=fence, limits=applied, hold=hold
        )
        for p in chunk.occurrences:
            if p.id in applied.cut:
                p.state, p.cause = "skipped", "max_runs"
                new_ids.add(p.id)  # new, and counted as skipped below
        for job_id in applied.paused:
            entry = self.entries.get(job_id)
            if entry is not None and not entry.paused:
                self.put(paused_copy(entry))
            log.info(
                "job paused: max runs reached",
                extra={"action": "dispatch.max_runs", "job_id": job_id},
            )
        return new_ids

    @staticmethod
    def _count(counter: dict[str, int], key: str) -> None:
        counter[key] = counter.get(key, 0) + 1

    async def _send(self, batch: list[Planned], sent: list[Sent]) -> None:
        """Publish ``batch`` in order without waiting for acks; what was published is added to
        ``sent``, for ``_confirm`` to wait for its acks and mark it ``dispatched``.

        It is added even when publishing fails part-way, so the acks already requested are
        waited for (or given up, which frees their place in the publisher's window).
        """
        if not batch:
            return
        headers = {}
        if self.lease is not None:
            self.lease.check()
            headers[FENCE_HEADER] = str(self.lease.token)
        dispatched_at = self.clock()
        publisher = self.publisher
        publish = publisher.publish
        encode = due_encoder.encode
        # What a message takes from its job's shared spec, looked up once per spec and batch
        # (the specs outlive the batch: its entries hold them).
        wires: dict[int, _Wire] = {}
        acks = publisher.batch()
        try:
            for p in batch:
                entry = p.entry
                wire = wires.get(id(entry.spec))
                if wire is None:
                    wire = wires[id(entry.spec)] = _wire(entry.spec)
                subject, job_type, pool, timeout_s, result_mail, retries, backoff, deliveries = wire
                message = DueOccurrence(
                    occurrence_id=p.id,
                    run_id=run_id_for(p.id),
                    job_id=entry.id,
                    job_type=job_type,
                    job_title=entry.title,
                    pool=pool,
                    # Already-encoded JSON, written into the message as is (see _params_json).
                    params=msgspec.Raw(entry.params_json),  # type: ignore[arg-type]
                    priority=p.priority,
                    trigger=p.trigger,  # type: ignore[arg-type]
                    requested_by=p.requested_by,
                    scheduled_for=p.scheduled_for,
                    dispatched_at=dispatched_at,
                    timeout_s=timeout_s,
                    result_mail=result_mail,
                    requested_from=p.requested_from,
                    retries=retries,
                    backoff_s=backoff,
                    max_deliveries=deliveries,
                )
                await publish(
                    acks,
                    subject,
                    encode(message),
                    {**headers, **telemetry.producer_headers(subject, p.id)},
                )
        finally:
            if acks.outcome:
                sent.append(Sent(batch[: len(acks.outcome)], acks, dispatched_at))
            else:
                publisher.forget(acks)

    async def _confirm(self, sent: Sent) -> int:
        """Wait for JetStream's acks, then mark what was confirmed ``dispatched``.

        What is not confirmed in time stays ``pending`` and is published again by
        ``republish_pending``; JetStream drops the copy it already has.
        """
        batch, acks, dispatched_at = sent.batch, sent.acks, sent.dispatched_at
        try:
            await acks.wait(self.publish_timeout_s)
        finally:
            self.publisher.forget(acks)  # what is unacknowledged now stays pending
        outcome = acks.outcome
        confirmed = [p.id for p, o in zip(batch, outcome, strict=True) if o == CONFIRMED]
        failed = len(batch) - len(confirmed)
        if failed:
            self.stats.publish_failures += failed
            self._retry_pending = True
            log.warning(
                "some occurrences were not confirmed by JetStream; they stay pending and are retried",
                extra={
                    "action": "dispatch.unconfirmed",
                    "count": failed,
                    "refused": acks.refused,
                    "first_error": acks.errors[0] if acks.errors else None,
                },
            )
        await self.store.mark_dispatched(confirmed, dispatched_at, fence=self._fence())
        self.stats.dispatched += len(confirmed)
        metrics.record_dispatched(batch, outcome, dispatched_at)
        self.stats.lateness_ms = [
            (dispatched_at - p.scheduled_for).total_seconds() * 1000 for p in batch[-1000:]
        ]
        log.info(
            "occurrences dispatched",
            extra={"action": "dispatch.published", "count": len(confirmed), "unconfirmed": failed},
        )
        return len(confirmed)

    async def _settle(self, quiet: bool = False) -> int:
        """Confirm and mark every batch published this tick; returns how many were confirmed.

        Raises the first failure (a ``mark dispatched`` that did not reach the database: those
        occurrences stay pending and are republished), unless ``quiet``, when another failure is
        already on its way out and these are only logged.
        """
        sent, self._sent = self._sent, []
        results = await asyncio.gather(*map(self._confirm, sent), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            self._retry_pending = True
            if not quiet:
                raise errors[0]
            for error in errors:
                if not isinstance(error, asyncio.CancelledError):
                    log.warning(
                        "marking occurrences dispatched failed; they stay pending and are retried",
                        exc_info=error,
                        extra={"action": "dispatch.mark_failed"},
                    )
        return sum(r for r in results if isinstance(r, int))

    def _abandon_sent(self) -> None:
        """Stop waiting for the acks of this tick's batches (shutting down): the client's
        pending-publish slots are freed, and the rows stay ``pending`` for the next start."""
        sent, self._sent = self._sent, []
        for batch in sent:
            self.publisher.forget(batch.acks)

    async def _publish(self, batch: list[Planned]) -> int:
        """Publish ``batch`` and wait until it is confirmed and marked; returns the confirmed."""
        sent: list[Sent] = []
        try:
            await self._send(batch, sent)
        finally:
            results = await asyncio.gather(*map(self._confirm, sent))
        return sum(results)

    async def republish_pending(self) -> int:
        """Publish again what a crash or a broker outage left ``pending``."""
        total = 0
        incomplete = False
        while True:
            rows = await self.store.pending(partition=self.partition)
            if not rows:
                break
            # A job in the table that this dispatcher has not loaded yet (created on another
            # replica a moment ago, its change notice on the way) is not deleted: its pending
            # occurrences wait, and the reconciler's round publishes them once it is loaded.
            orphans = [r["id"] for r in rows if not r["job_exists"]]
            await self.store.mark_skipped(
                orphans,
                "the job was deleted before this occurrence was dispatched",
                fence=self._fence(),
            )
            metrics.OCCURRENCES_SKIPPED.labels("job_deleted").inc(len(orphans))
            rows = await self._held_pending(rows)
            batch = []
            for r in rows:
                entry = self.entries.get(r["job_id"])
                if entry is None or not r["job_exists"]:
                    continue
                batch.append(
                    Planned(
                        id=r["id"],
                        job_id=r["job_id"],
                        scheduled_for=r["scheduled_for"],
                        priority=r["priority"],
                        trigger=r["trigger"],
                        state="pending",
                        requested_by=r["requested_by"],
                        requested_from=r["requested_from"],
                        chained_from=r["chained_from"],
                        entry=entry,
                    )
                )
                # Published before a crash and already run (the replay of run events said so):
                # JetStream drops the copy, and its run holds nothing back.
                if self.tracking_runs and r["run_status"] in (None, "running"):
                    self.in_flight.setdefault(r["job_id"], {})[r["id"]] = r["scheduled_for"]
            sent = await self._publish(batch)
            total += sent
            if sent < len(batch):
                incomplete = True
                break
            if len(rows) < 10_000 or not batch:  # a page only of jobs not loaded yet: later
                break
        self._retry_pending = incomplete
        if total:
            log.info(
                "pending occurrences published again",
                extra={"action": "dispatch.recovered", "count": total},
            )
        return total
