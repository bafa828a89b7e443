"""Stateful test of the dispatcher: jobs are created, paused, resumed, edited, deleted, run now,
their runs finish and the scheduler restarts while a controllable clock moves on, all against
real PostgreSQL and JetStream. After every tick: no occurrence was published twice, and every
occurrence each job's schedule produced so far is in the ledger (run or not, with its reason)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
import nats
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)

from belltower import streams
from belltower.api import JobRef, PauseRequest, RunNowRequest, RunPolicy
from belltower.errors import Conflict
from belltower.events import RunFinishedData, run_id_for
from belltower.schedule import Every, Schedule
from belltower.settings import Settings
from belltower.subjects import DUE_STREAM
from belltower_scheduler.dispatcher import Dispatcher
from belltower_scheduler.entry import Entry
from belltower_scheduler.operations import Operations
from belltower_scheduler.publisher import BatchPublisher
from belltower_scheduler.store import JobRow, Store
from tests.helpers.scheduler import Clock


class CountingNats:
    """A real NATS connection; counts every publish by its ``Nats-Msg-Id``."""

    def __init__(self, nc) -> None:
        self.nc = nc
        self.published: Counter[str] = Counter()

    def __getattr__(self, name):
        return getattr(self.nc, name)

    async def publish(self, subject, payload=b"", reply="", headers=None):
        self.published[headers["Nats-Msg-Id"]] += 1
        await self.nc.publish(subject, payload, reply=reply, headers=headers)


def make_machine(nats_url: str, database_url: str) -> type[RuleBasedStateMachine]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    run = loop.run_until_complete

    class Scheduling(RuleBasedStateMachine):
        jobs = Bundle("jobs")

        def __init__(self) -> None:
            super().__init__()
            self.pool = run(asyncpg.create_pool(database_url, min_size=1, max_size=4))
            self.nc = run(nats.connect(nats_url))
            run(
                streams.ensure(
                    self.nc.jetstream(), Settings(nats_url=nats_url, database_url=database_url)
                )
            )
            run(
                self.pool.execute(
                    "TRUNCATE scheduler.jobs, scheduler.occurrences, scheduler.pauses"
                )
            )
            run(self.nc.jetstream().purge_stream(DUE_STREAM))
            self.store = Store(self.pool)
            self.clock = Clock()
            self.counting = CountingNats(self.nc)
            self.created: dict[str, datetime] = {}
            self.paused_at: dict[str, datetime] = {}
            self.manual: list[str] = []
            self.queued: list[str] = []
            """Run-now occurrences the overlap policy (buffer) queued behind a run going."""
            self.refused = 0
            self._start()

        def _start(self) -> None:
            self.dispatcher = Dispatcher(
                self.store,
                self.nc.jetstream(),
                clock=self.clock,
                misfire_grace_s=60,
                publisher=BatchPublisher(self.counting),
            )
            run(self.dispatcher.load())
            run(self.dispatcher.track_runs())
            self.ops = Operations(self.store, self.dispatcher, catalog=None)  # type: ignore[arg-type]

            async def view(row):
                return self.ops._to_api(row, True)

            self.ops._view = view  # type: ignore[method-assign]

        def teardown(self) -> None:
            run(self.nc.close())
            run(self.pool.close())

        @initialize(target=jobs)
        def first_job(self) -> str:
            return self._create(60, RunPolicy())

        @rule(
            target=jobs,
            every=st.sampled_from([30, 60, 90]),
            catch_up=st.sampled_from(["latest", "all", "skip"]),
            overlap=st.sampled_from(["skip", "buffer", "allow"]),
        )
        def create(self, every: int, catch_up: str, overlap: str) -> str:
            return self._create(
                every, RunPolicy(catch_up=catch_up, overlap=overlap, catch_up_max=3)
            )  # type: ignore[arg-type]

        def _create(self, every: int, policy: RunPolicy) -> str:
            schedule = Schedule(rule=Every(seconds=every))
            now = self.clock.now
            from belltower.schedule import compile_schedule

            row = JobRow(
                id=str(uuid.uuid4()), title="job", type="system.canary", pool="notifier", params={},
                schedule=schedule, priority=500, paused=False, keep_history_days=None, timeout_s=None,
                next_run_at=compile_schedule(schedule).next_after(now), created_at=now, updated_at=now,
                policy=policy,
            )  # fmt: skip
            run(self.store.insert_job(row))
            self.dispatcher.put(Entry.from_row(row))
            self.created[row.id] = now
            return row.id

        @rule(job=jobs)
        def pause(self, job: str) -> None:
            if job in self.created and job not in self.paused_at:
                run(self.ops.pause(PauseRequest(id=job, requested_by="t")))
                self.paused_at[job] = self.clock.now

        @rule(job=jobs)
        def resume(self, job: str) -> None:
            if job in self.paused_at:
                run(self.ops.resume(PauseRequest(id=job, requested_by="t")))
                del self.paused_at[job]

        @rule(job=jobs, priority=st.integers(0, 1000), overlap=st.sampled_from(["skip", "allow"]))
        def edit(self, job: str, priority: int, overlap: str) -> None:
            """What an edit of the job's non-schedule fields does: the row, then the dispatcher."""
            if job not in self.created:
                return
            row = run(self.store.get_job(job))
            assert row is not None
            policy = msgspec.structs.replace(row.policy, overlap=overlap)
            run(self.pool.execute(
                "UPDATE scheduler.jobs SET priority = $2, policy = $3::jsonb WHERE id = $1::uuid",
                job, priority, msgspec.json.encode(policy).decode(),
            ))  # fmt: skip
            row = run(self.store.get_job(job))
            self.dispatcher.put(Entry.from_row(row))

        @rule(job=consumes(jobs))
        def delete(self, job: str) -> None:
            if job in self.created:
                run(self.ops.delete(JobRef(id=job)))
                del self.created[job]
                self.paused_at.pop(job, None)

        @rule(job=jobs)
        def run_now(self, job: str) -> None:
            if job in self.created:
                try:
                    result = run(self.ops.run_now(RunNowRequest(id=job, requested_by="t")))
                except Conflict:  # overlap: a run of the job is going (skip, or buffer full)
                    self.refused += 1
                    return
                queued = result.state == "waiting"
                (self.queued if queued else self.manual).append(result.occurrence_id)

        @rule(seconds=st.integers(1, 400), tick=st.booleans())
        def advance(self, seconds: int, tick: bool) -> None:
            self.clock.now += timedelta(seconds=seconds)
            if tick:
                run(self.dispatcher.tick())
                self._check_ledger()

        @rule(data=st.data())
        def runs_finish(self, data: st.DataObject) -> None:
            going = [
                (j, o, t) for j, occs in self.dispatcher.in_flight.items() for o, t in occs.items()
            ]
            if not going:
                return
            chosen = data.draw(st.lists(st.sampled_from(going), max_size=len(going), unique=True))
            now = self.clock.now
            run(self.dispatcher.runs_finished([
                RunFinishedData(
                    run_id=run_id_for(o), occurrence_id=o, job_id=j, job_type="system.canary", job_title="job",
                    pool="notifier", status="succeeded", priority=500, trigger="schedule", scheduled_for=t,
                    dispatched_at=t, started_at=t, finished_at=now, duration_ms=1,
                )
                for j, o, t in chosen
            ]))  # fmt: skip

        @precondition(lambda self: True)
        @rule()
        def restart(self) -> None:
            """The scheduler process is replaced: a new dispatcher loads from the database."""
            self._start()

        @invariant()
        def nothing_published_twice(self) -> None:
            twice = [i for i, n in self.counting.published.items() if n > 1]
            assert twice == [], f"published more than once: {twice}"

        def _check_ledger(self) -> None:
            rows = run(self.pool.fetch(
                "SELECT job_id::text AS job_id, scheduled_for, state, trigger, id::text AS id, cause FROM scheduler.occurrences"
            ))  # fmt: skip
            by_job: dict[str, list[datetime]] = {}
            for r in rows:
                if r["trigger"] == "schedule":
                    by_job.setdefault(r["job_id"], []).append(r["scheduled_for"])
            dispatched = {r["id"] for r in rows if r["state"] == "dispatched"}
            assert dispatched <= set(self.counting.published), (
                "marked dispatched but never published"
            )
            assert set(self.manual) <= dispatched, "a run-now occurrence was not dispatched"
            state = {r["id"]: r["state"] for r in rows}
            lost = [
                q for q in self.queued if state.get(q) not in ("waiting", "pending", "dispatched")
            ]
            assert lost == [], "a queued run-now occurrence was lost"
            refused = [r for r in rows if r["trigger"] == "manual" and r["state"] == "skipped"]
            assert all(r["cause"] in ("overlap", "deleted") for r in refused)
            assert not {r["id"] for r in refused} & set(self.counting.published), (
                "refused but published"
            )
            assert len([r for r in refused if r["cause"] == "overlap"]) == self.refused
            for job, created in self.created.items():
                every = run(self.store.get_job(job)).schedule.rule.seconds  # type: ignore[union-attr]
                until = self.paused_at.get(job, self.clock.now)
                expected = []
                t = datetime.fromtimestamp((created.timestamp() // every + 1) * every, UTC)
                while t <= until:
                    expected.append(t)
                    t += timedelta(seconds=every)
                got = sorted(x for x in by_job.get(job, []) if x <= until)
                assert got == expected, f"job {job}: ledger {got} != schedule {expected}"

    Scheduling.TestCase.settings = settings(
        max_examples=30,
        stateful_step_count=15,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    return Scheduling


def test_pause_resume_edit_delete_while_dispatching(fresh_nats, database_url) -> None:
    machine = make_machine(fresh_nats.url, database_url)
    try:
        machine.TestCase().runTest()
    finally:
        asyncio.get_event_loop().close()
        asyncio.set_event_loop(None)
