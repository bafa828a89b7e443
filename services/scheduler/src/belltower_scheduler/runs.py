"""The scheduler's view of runs: it follows the run events stream to apply overlap and chaining.

Two ordered consumers (started, finished) start at the oldest dispatch the ledger still holds
as in flight, so runs that finished while this scheduler was down or not leading are caught up
with, and no poll of history is needed. Events are gathered for a few milliseconds and handed to
the dispatcher in batches; handling them is idempotent, so the replay's overlap with what was
seen before a restart changes nothing.

Only a partition's leader follows its run events and writes what they say, under its lease's
fencing token (``Dispatcher.runs_finished``). A standby follows none and keeps no overlap or
chaining state: when it takes over, ``track_runs`` rebuilds runs in flight, buffered and delayed
occurrences from the ledger and the tracker replays the events since the oldest dispatch still
in flight. That takeover is correct because nobody but the token's holder writes those rows, and
it needs the ledger anyway for what the old leader dispatched; state kept on the side by a
standby could only drift from it.

A leader deposed without knowing it yet (stalled past its lease, then resumed) gets ``Deposed``
from its first fenced write, having written nothing. It then stops trusting its lease (the
dispatcher's loop stops, and the lease keeper's next round reports the loss, which stops this
tracker); the events it held are not lost: the consumers are ordered ones, which acknowledge
nothing, so every event stays in the stream, and the run it did not record is still in flight
in the ledger, so the new leader's replay delivers the event to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta

import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from belltower.events import RunFinished, RunFinishedData, RunStarted, run_event_decoder, utcnow
from belltower.subjects import RUNS_STREAM

from .dispatcher import Dispatcher
from .fencing import Deposed

log = logging.getLogger(__name__)

STARTED = "belltower.run.started.>"
FINISHED = "belltower.run.finished.>"
REPLAY_MARGIN = timedelta(seconds=5)


class _OccurrenceRef(msgspec.Struct):
    occurrence_id: str
    started_at: datetime


class _StartedRef(msgspec.Struct):
    """What the tracker reads of a run-started event: its type, occurrence and start time (the
    ledger keeps it for expected durations). The rest of the event is skipped, not decoded."""

    type: str
    data: _OccurrenceRef


_started_decoder = msgspec.json.Decoder(_StartedRef)
_STARTED_TYPE = RunStarted.__struct_config__.tag


class RunTracker:
    """Feeds run-started and run-finished events to a :class:`Dispatcher`."""

    def __init__(
        self, js: JetStreamContext, dispatcher: Dispatcher, *, linger_s: float = 0.05
    ) -> None:
        self.js = js
        self.dispatcher = dispatcher
        self.linger_s = linger_s
        self._finished: list[RunFinishedData] = []
        self._started: list[tuple[str, datetime]] = []
        self._ready = asyncio.Event()
        self._subs: list[object] = []
        self._task: asyncio.Task[None] | None = None
        self._busy = False

    async def start(self) -> None:
        """Load what the ledger holds in flight, then follow the events from before the oldest."""
        oldest = await self.dispatcher.track_runs()
        now = utcnow()
        since = min(oldest or now, now) - REPLAY_MARGIN
        for subject, cb in ((STARTED, self._on_started), (FINISHED, self._on_finished)):
            self._subs.append(
                await self.js.subscribe(
                    subject,
                    stream=RUNS_STREAM,
                    cb=cb,
                    ordered_consumer=True,
                    deliver_policy=DeliverPolicy.BY_START_TIME,
                    config=ConsumerConfig(opt_start_time=since),
                )
            )
        self._task = asyncio.create_task(self._flush_forever(), name="run-tracker")
        await self._caught_up()

    async def _caught_up(self, timeout: float = 10.0) -> None:
        """Wait until the replay is applied, so the first tick does not see runs in flight that
        finished while this scheduler was down (it would skip their successors as overlaps)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            try:
                pending = [
                    (await sub.consumer_info()).num_pending + sub.pending_msgs  # type: ignore[attr-defined]
                    for sub in self._subs
                ]
            except Exception:
                pending = [1]
            if not any(pending):
                await self.settle(timeout=max(0.0, deadline - loop.time()))
                return
            await asyncio.sleep(0.02)
        log.warning(
            "run events not fully replayed at start; overlap may hold back a job briefly",
            extra={"action": "runs.replay_slow"},
        )

    async def stop(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()  # type: ignore[attr-defined]
        self._subs.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _on_started(self, msg: Msg) -> None:
        try:
            event = _started_decoder.decode(msg.data)
        except msgspec.DecodeError:
            log.warning("undecodable run event ignored", extra={"action": "runs.bad_event"})
            return
        if event.type == _STARTED_TYPE:
            self._started.append((event.data.occurrence_id, event.data.started_at))
            self._ready.set()

    async def _on_finished(self, msg: Msg) -> None:
        event = self._decode(msg)
        if isinstance(event, RunFinished):
            self._finished.append(event.data)
            self._ready.set()

    @staticmethod
    def _decode(msg: Msg) -> object:
        try:
            return run_event_decoder.decode(msg.data)
        except msgspec.DecodeError:
            log.warning("undecodable run event ignored", extra={"action": "runs.bad_event"})
            return None

    async def _flush_forever(self) -> None:
        while True:
            await self._ready.wait()
            await asyncio.sleep(self.linger_s)
            self._ready.clear()
            self._busy = True
            started, self._started = self._started, []
            finished, self._finished = self._finished, []
            try:
                if started:
                    await self.dispatcher.runs_started(started)
                await self.dispatcher.runs_finished(finished)
            except Deposed as exc:
                # Nothing was written; the new leader replays these events (see above). They
                # stay queued only until this tracker is stopped, in case the lease is renewed.
                log.warning(
                    f"run events left to the partition's new leader: {exc}",
                    extra={"action": "runs.deposed"},
                )
                if self.dispatcher.lease is not None:
                    self.dispatcher.lease.depose()
                self._started[:0] = started
                self._finished[:0] = finished
                self._ready.set()
                await asyncio.sleep(1.0)
            except Exception:
                log.exception(
                    "run events not applied; retrying", extra={"action": "runs.apply_failed"}
                )
                self._started[:0] = started
                self._finished[:0] = finished
                self._ready.set()
                await asyncio.sleep(1.0)
            finally:
                self._busy = False

    async def settle(self, timeout: float = 5.0) -> None:
        """Wait until the events received so far are applied (for tests and shutdown)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while (self._busy or self._started or self._finished or self._ready.is_set()) and (
            asyncio.get_running_loop().time() < deadline
        ):
            await asyncio.sleep(0.01)
