"""The reconciler: what the broker lost is published again, and what cannot be is said so.

JetStream's acknowledgement is not the end of the story: a purged or recreated stream, a lost
volume or a server that had not synced its file loses messages it had confirmed. The ledger then
says ``dispatched``, no worker ever sees the occurrence, and without this module nothing would
tell. Each partition's holder runs a :class:`Reconciler` next to its dispatcher; every
``BELLTOWER_RECONCILE_INTERVAL_S`` it compares the ledger with the run events:

- An occurrence **dispatched longer ago than its start deadline with no run event** (the
  ledger's ``run_status`` is still empty) is published again under the same occurrence id (its
  message id is ``<occurrence id>.recovery.<n>``, so JetStream's de-duplication window does not
  drop it). The start deadline is ``BELLTOWER_ACK_WAIT_S`` times the job's most deliveries (by
  then JetStream has delivered it that often), or ``BELLTOWER_RECONCILE_START_DEADLINE_S``. The
  stream sequence of the copy is kept in the ledger: while that copy is still in the stream the
  occurrence is only queued behind a backlog (or its workers are down) and nothing more is
  done; once the copy is gone and still no run event came, it was lost again. After
  ``BELLTOWER_RECONCILE_ATTEMPTS`` copies lost that way it is recorded ``lost``, with the reason.
- A **run whose worker stopped heart-beating** (its claim's heartbeat is older than
  ``BELLTOWER_RECONCILE_ABANDON_S``) while the delivery it ran is gone from the stream (the
  worker writes that delivery's stream sequence into the claim), so that no redelivery is left
  to take it over, ends ``abandoned``; it never stays ``running`` for ever.

How the reconciler knows what history has: the partition's holder already follows the run
events (``runs.RunTracker``) and writes each one's status into the ledger (``run_status``), from
the same stream history stores them from, replayed from the oldest run in flight after a
takeover. So the comparison is two queries of the ledger per round, with no call to history and
no new subject; the only per-occurrence look-ups are of the candidates themselves. The queries
read the occurrences planned within ``BELLTOWER_STALE_RUN_S`` (no index is kept on the run
status: it would cost every dispatch and every run event an index update); with a million
occurrences a day that was about 0.2 s each on a small test server.

Why republishing cannot run an occurrence twice: the claims bucket decides. A worker claims the
occurrence's key before it runs it, so a copy arriving while the original is running waits, and
one arriving after it finished only publishes its finished event again (de-duplicated). The
verdicts go through the claim too: ``lost`` creates the key (failing if a worker claimed it
meanwhile) and ``abandoned`` replaces the stale running claim by compare-and-set (failing if
its worker heart-beat or another took it over), each with a finished event of that status, as
a worker's own would be. History records it, integrators hear it, the run tracker releases
what waited behind it, and a copy that turns up later finds the occurrence finished.

A claim that holds a finished event whose event never reached the ledger (the run events lost
it) has that event published again, so the ledger and history catch up.

Every ledger write is fenced by the partition's lease, like the dispatcher's, and each round
first checks the fencing token in PostgreSQL (copies and verdicts reach NATS before the ledger
is written, so a deposed replica must not get that far); the lease's local validity is checked
again before each hundred look-ups.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import msgspec
from asyncpg import Record
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from belltower import metrics, telemetry
from belltower.events import (
    DueOccurrence,
    RunFinished,
    RunFinishedData,
    due_encoder,
    event_headers,
    run_id_for,
    utcnow,
)
from belltower.subjects import (
    CLAIMS_BUCKET,
    DUE_STREAM,
    claim_key,
    due_subject,
    run_finished_subject,
)
from belltower.worker import Claim

from .dispatcher import Dispatcher
from .entry import Entry
from .fencing import FENCE_HEADER, Deposed
from .overdue import raise_overdue
from .requested import expire_decisions, pending_left
from .settings import SchedulerSettings

log = logging.getLogger(__name__)

ROUND_LIMIT = 10_000
"""Candidates looked at per query and round, oldest first; more wait for the next round."""

LOOKUPS_AT_ONCE = 100
"""Candidates looked at concurrently (each is a claim read and perhaps a stream read)."""

SOURCE = "belltower/scheduler"

_encoder = msgspec.json.Encoder()
_claim_decoder = msgspec.json.Decoder(Claim)


@dataclass
class RoundStats:
    """What one round did (and, summed, what the reconciler did since it started)."""

    recovered: int = 0
    """Copies published of occurrences no worker had started."""
    lost: int = 0
    abandoned: int = 0
    replayed: int = 0
    """Finished events published again from the claims (the run events had lost them)."""
    overdue: int = 0
    """Runs said overdue (longer than BELLTOWER_OVERDUE_FACTOR times their expected duration)."""
    ids: dict[str, list[str]] = field(default_factory=dict)

    def add(self, other: RoundStats) -> None:
        self.recovered += other.recovered
        self.lost += other.lost
        self.abandoned += other.abandoned
        self.replayed += other.replayed
        self.overdue += other.overdue

    def any(self) -> bool:
        return bool(self.recovered or self.lost or self.abandoned or self.replayed)


class Reconciler:
    """Finds the occurrences of one partition that the broker lost, and the abandoned runs."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        js: JetStreamContext,
        settings: SchedulerSettings,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.dispatcher = dispatcher
        self.js = js
        self.settings = settings
        self.clock = clock
        self.totals = RoundStats()
        self._claims: KeyValue | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._forever(), name="reconciler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reconcile_interval_s)
            try:
                self.totals.add(await self.round())
                await self.requested()
            except Deposed as exc:
                log.warning(str(exc), extra={"action": "reconcile.deposed"})
                if self.dispatcher.lease is not None:
                    self.dispatcher.lease.depose()
                return
            except Exception:
                log.exception(
                    "reconciling the ledger failed; trying again next round",
                    extra={"action": "reconcile.failed"},
                )

    async def requested(self) -> None:
        """What people asked for: expire unanswered catch-up decisions, and publish pending
        occurrences a backfill or decision wrote whose wake-up notice never came."""
        d = self.dispatcher
        await expire_decisions(
            d.store, d.partition, d._fence(), self.settings.scheduler_decision_ttl_s
        )
        if await pending_left(d.store, d.partition):
            d.pending_written()

    # -- one round ------------------------------------------------------------------------

    async def round(self) -> RoundStats:
        """Look at every candidate once: returns what was done."""
        d = self.dispatcher
        if d.lease is not None:
            d.lease.check()
        # Copies and verdicts go to NATS before the ledger hears of them: a replica another one
        # has deposed must find out first, not from its first ledger write.
        await d.store.check_fence(d._fence())
        now = self.clock()
        since = now - timedelta(seconds=self.settings.stale_run_s)
        shortest = self.settings.start_deadline_s(1)
        stats = RoundStats()
        unstarted = await d.store.unstarted(
            since, now - timedelta(seconds=shortest), d.partition, ROUND_LIMIT
        )
        running = await d.store.still_running(
            since, now - timedelta(seconds=self.settings.abandon_s), d.partition, ROUND_LIMIT
        )
        lost: list[tuple[str, str]] = []
        abandoned: list[tuple[str, str]] = []
        copies: list[tuple[str, int]] = []
        ran: list[RunFinishedData] = []
        candidates = [(r, False) for r in unstarted] + [(r, True) for r in running]
        verdicts: list[tuple[Record, tuple[str, Any] | None]] = []
        for at in range(0, len(candidates), LOOKUPS_AT_ONCE):
            if d.lease is not None:
                d.lease.check()
            chunk = candidates[at : at + LOOKUPS_AT_ONCE]
            found = await asyncio.gather(*(self._look_at(r, s, now, stats) for r, s in chunk))
            verdicts += zip((r for r, _ in chunk), found, strict=True)
        for row, verdict in verdicts:
            if verdict is None:
                continue
            kind, value = verdict
            if kind == "copy":
                copies.append((row["id"], int(value)))
            elif kind == "lost":
                lost.append((row["id"], str(value)))
            elif kind == "ran":
                ran.append(value)
            else:
                abandoned.append((row["id"], str(value)))
        fence = d._fence()
        await d.store.mark_recovered(copies, now, fence=fence)
        stats.lost = len(await d.store.mark_lost(lost, now, fence=fence))
        await d.record_finished(
            [(i, "abandoned", why, now) for i, why in abandoned]
            + [(r.occurrence_id, r.status, r.error, r.finished_at, r.started_at) for r in ran]
        )
        stats.abandoned = len(abandoned)
        stats.overdue = len(await raise_overdue(d, self.settings, now))
        stats.ids = {
            "recovered": [c[0] for c in copies],
            "lost": [i for i, _ in lost],
            "abandoned": [i for i, _ in abandoned],
        }
        if stats.any():
            log.warning(
                "reconciled the ledger with the run events",
                extra={
                    "action": "reconcile.round",
                    "recovered": stats.recovered,
                    "lost": stats.lost,
                    "abandoned": stats.abandoned,
                    "replayed": stats.replayed,
                    "partition": d.partition[0] if d.partition else None,
                },
            )
        return stats

    async def _look_at(
        self, row: Record, started: bool, now: datetime, stats: RoundStats
    ) -> tuple[str, Any] | None:
        """What to do about one candidate: ``("copy", seq)`` (published again), ``("lost" |
        "abandoned", reason)``, ``("ran", finished data)`` (its claim holds a finished event the
        ledger never heard of), or None (nothing, this round)."""
        entry = self.dispatcher.entries.get(row["job_id"])
        deadline = self.settings.start_deadline_s(entry.policy.deliveries if entry else 1)
        if not started and row["dispatched_at"] > now - timedelta(seconds=deadline):
            return None
        claims = await self._bucket()
        key = claim_key(row["id"])
        try:
            claim_entry = await claims.get(key)
        except KeyNotFoundError:
            claim_entry = None
        if claim_entry is not None:
            return await self._claimed(row, entry, claim_entry, now, stats)
        if started and entry is not None:
            # Its worker gave it back for a retry (the claim is released during the backoff).
            backoff = entry.policy.retry_backoff.max_s
            if row["dispatched_at"] > now - timedelta(seconds=deadline + backoff):
                return None
        if await self._copy_queued(row, now):
            return None
        if entry is not None and row["recovery_attempts"] < self.settings.reconcile_attempts:
            seq = await self._publish_copy(row, entry)
            if seq is None:
                return None
            if row["recovery_attempts"] == 0:
                stats.recovered += 1
                metrics.OCCURRENCES_RECOVERED.labels(entry.pool).inc()
            return "copy", seq
        return await self._give_up(row, entry, started, now, claims)

    async def _copy_queued(self, row: Record, now: datetime) -> bool:
        """Whether the latest copy published is still to be looked at: published within the
        last interval (its run events may be on their way), or still in the stream (queued)."""
        seq = row["recovery_seq"]
        if seq is None:
            return False
        interval = timedelta(seconds=self.settings.reconcile_interval_s)
        if row["recovered_at"] is not None and row["recovered_at"] > now - interval:
            return True
        return await self._in_stream(seq)

    async def _in_stream(self, seq: int) -> bool:
        try:
            await self.js.get_msg(DUE_STREAM, seq)
        except NotFoundError:
            return False  # the message, or the whole stream, is gone
        return True

    async def _claimed(
        self, row: Record, entry: Entry | None, claim_entry: Any, now: datetime, stats: RoundStats
    ) -> tuple[str, Any] | None:
        claim = _claim_decoder.decode(claim_entry.value or b"{}")
        if claim.state == "finished":
            # It ran (or was given up on) but its finished event never reached the ledger.
            event = msgspec.json.decode(claim.event, type=RunFinished)
            await self._publish_event(event.data.status, event.data.job_type, event.id, claim.event)
            stats.replayed += 1
            if event.data.status in ("lost", "abandoned"):
                # A verdict of an earlier round whose ledger write did not happen: write it now.
                return event.data.status, event.data.error or event.data.status
            return "ran", event.data  # the ledger records it now, the run tracker when it comes
        if time.time() - claim.heartbeat_at < self.settings.abandon_s:
            return None  # its worker is alive; the started event may have been lost
        if claim.seq and await self._in_stream(claim.seq):
            return None  # a redelivery is left: the next worker takes the claim over
        reason = (
            f"its worker {claim.worker} stopped heart-beating "
            f"{time.time() - claim.heartbeat_at:.0f}s ago during attempt {claim.attempt}, and no "
            "delivery of the occurrence was left in BELLTOWER_DUE to take it over"
        )
        if entry is not None:
            event = self._finished(row, entry, "abandoned", reason, now, claim.attempt)
            payload = _encoder.encode(event)
            verdict = Claim(
                state="finished",
                worker=SOURCE,
                attempt=claim.attempt,
                heartbeat_at=time.time(),
                event=msgspec.Raw(payload),
            )
            try:
                await (await self._bucket()).update(
                    claim_key(row["id"]), _encoder.encode(verdict), last=claim_entry.revision
                )
            except KeyWrongLastSequenceError:
                return None  # it heart-beat, or another worker took it over, meanwhile
            await self._publish_event("abandoned", entry.type, event.id, payload)
            metrics.RUNS_ABANDONED.labels(entry.pool).inc()
        return "abandoned", reason

    async def _give_up(
        self,
        row: Record,
        entry: Entry | None,
        started: bool,
        now: datetime,
        claims: KeyValue,
    ) -> tuple[str, Any] | None:
        """No worker ran it and no copy is left to try: record it lost (or abandoned, when a run
        had started), first in its claim so that a copy turning up later is not run."""
        status = "abandoned" if started else "lost"
        if entry is None:
            reason = f"{status}: the job was deleted before the occurrence could be published again"
        else:
            reason = (
                f"{status}: no worker started it within {self.settings.start_deadline_s(entry.policy.deliveries):g}s "
                f"of its dispatch, and the {row['recovery_attempts']} copies published again "
                "vanished from BELLTOWER_DUE unstarted (the broker lost them)"
                if not started
                else "its run stopped and its occurrence vanished from BELLTOWER_DUE, also after "
                f"{row['recovery_attempts']} copies published again"
            )
            event = self._finished(row, entry, status, reason, now, 0)
            payload = _encoder.encode(event)
            verdict = Claim(
                state="finished",
                worker=SOURCE,
                attempt=0,
                heartbeat_at=time.time(),
                event=msgspec.Raw(payload),
            )
            try:
                await claims.create(claim_key(row["id"]), _encoder.encode(verdict))
            except KeyWrongLastSequenceError:
                return None  # a worker claimed it meanwhile: not lost
            await self._publish_event(status, entry.type, event.id, payload)
            counter = metrics.RUNS_ABANDONED if started else metrics.OCCURRENCES_LOST
            counter.labels(entry.pool).inc()
        log.error(
            f"occurrence {status}",
            extra={"action": f"reconcile.{status}", "occurrence_id": row["id"], "reason": reason},
        )
        return status, reason

    # -- publishing -------------------------------------------------------------------------

    async def _bucket(self) -> KeyValue:
        if self._claims is None:
            self._claims = await self.js.key_value(CLAIMS_BUCKET)
        return self._claims

    async def _publish_copy(self, row: Record, entry: Entry) -> int | None:
        """Publish the occurrence again; the copy's stream sequence, or None if refused."""
        message = due_message(row, entry)
        subject = due_subject(entry.pool, entry.type)
        headers = telemetry.producer_headers(
            subject, f"{row['id']}.recovery.{row['recovery_attempts'] + 1}"
        )
        lease = self.dispatcher.lease
        if lease is not None:
            headers[FENCE_HEADER] = str(lease.token)
        try:
            ack = await self.js.publish(
                subject,
                due_encoder.encode(message),
                timeout=self.settings.request_timeout_s,
                headers=headers,
            )
        except (NatsError, TimeoutError) as exc:
            log.warning(
                "an occurrence could not be published again; trying next round",
                extra={
                    "action": "reconcile.publish_failed",
                    "occurrence_id": row["id"],
                    "error": repr(exc),
                },
            )
            return None
        log.warning(
            "occurrence published again: dispatched and never started",
            extra={
                "action": "reconcile.recovered",
                "occurrence_id": row["id"],
                "attempt": row["recovery_attempts"] + 1,
                "seq": ack.seq,
            },
        )
        return int(ack.seq)

    async def _publish_event(
        self, status: str, job_type: str, event_id: str, payload: bytes
    ) -> None:
        await self.js.publish(
            run_finished_subject(status, job_type),
            payload,
            timeout=self.settings.request_timeout_s,
            headers=event_headers(event_id),
        )

    def _finished(
        self, row: Record, entry: Entry, status: str, reason: str, now: datetime, attempt: int
    ) -> RunFinished:
        occurrence_id = row["id"]
        return RunFinished(
            id=run_id_for(occurrence_id),
            source=SOURCE,
            subject=entry.id,
            time=now,
            data=RunFinishedData(
                run_id=run_id_for(occurrence_id),
                occurrence_id=occurrence_id,
                job_id=entry.id,
                job_type=entry.type,
                job_title=entry.title,
                pool=entry.pool,
                status=status,  # type: ignore[arg-type]
                priority=row["priority"],
                trigger=row["trigger"],
                requested_by=row["requested_by"],
                requested_from=row["requested_from"],
                scheduled_for=row["scheduled_for"],
                dispatched_at=row["dispatched_at"],
                started_at=now,
                finished_at=now,
                duration_ms=0,
                attempt=attempt,
                worker=SOURCE,
                summary=reason[:300],
                output_text=reason + "\n",
                error=reason,
                result_mail=entry.result_mail,
            ),
        )


def due_message(row: Record, entry: Entry) -> DueOccurrence:
    """The due message of a ledger row, as the dispatcher published it (``Pipeline._send``,
    which builds it from its planned occurrence on the hot path instead)."""
    policy = entry.policy
    b = policy.retry_backoff
    return DueOccurrence(
        occurrence_id=row["id"],
        run_id=run_id_for(row["id"]),
        job_id=entry.id,
        job_type=entry.type,
        job_title=entry.title,
        pool=entry.pool,
        params=msgspec.Raw(entry.params_json),  # type: ignore[arg-type]
        priority=row["priority"],
        trigger=row["trigger"],
        requested_by=row["requested_by"],
        scheduled_for=row["scheduled_for"],
        dispatched_at=row["dispatched_at"],
        timeout_s=entry.timeout_s,
        result_mail=entry.result_mail,
        requested_from=row["requested_from"],
        retries=policy.retries,
        backoff_s=(b.initial_s, b.factor, b.max_s),
        max_deliveries=policy.deliveries,
    )
