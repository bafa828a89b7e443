"""The dispatcher's due queue: jobs bucketed by instant, taken earliest first and by priority."""

from __future__ import annotations

import heapq
import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from belltower.api import RunPolicy
from belltower.schedule import Every, Schedule
from belltower_scheduler.due import DueQueue
from belltower_scheduler.entry import Entry, compiled_for, job_spec

T0 = datetime(2030, 1, 7, 7, 30, tzinfo=UTC)
SCHEDULE = compiled_for(Schedule(rule=Every(seconds=60)))


def entry(job_id: str, at: datetime | None, priority: int = 500, paused: bool = False) -> Entry:
    spec = job_spec("system.canary", "notifier", priority, None, RunPolicy(), None, paused)
    return Entry(job_id, f"job {job_id}", b"{}", SCHEDULE, at, spec)


def queue_of(*entries: Entry) -> tuple[DueQueue, dict[str, Entry]]:
    current: dict[str, Entry] = {}
    queue = DueQueue(current)
    for e in entries:
        current[e.id] = e
        queue.push(e)
    return queue, current


def ids(entries: list[Entry]) -> list[str]:
    return [e.id for e in entries]


def test_earlier_instants_first_then_higher_priority_then_queue_order() -> None:
    queue, _ = queue_of(
        entry("late", T0 + timedelta(minutes=1), priority=900),
        entry("low", T0, priority=100),
        entry("high-1", T0, priority=900),
        entry("mid", T0, priority=500),
        entry("high-2", T0, priority=900),
    )
    due = queue.take((T0 + timedelta(minutes=1)).timestamp(), 100)
    assert ids(due) == ["high-1", "high-2", "mid", "low", "late"]
    assert queue.first() is None


def test_only_what_is_due_is_taken() -> None:
    queue, _ = queue_of(entry("now", T0), entry("later", T0 + timedelta(seconds=1)))
    assert ids(queue.take(T0.timestamp(), 100)) == ["now"]
    assert queue.first() == (T0 + timedelta(seconds=1)).timestamp()
    assert queue.due_by(T0.timestamp()) is False


def test_a_limit_takes_the_highest_priorities_and_leaves_the_rest_in_order() -> None:
    queue, current = queue_of(*(entry(f"p{p}", T0, priority=p) for p in (1, 5, 3, 4, 2)))
    assert ids(queue.take(T0.timestamp(), 2)) == ["p5", "p4"]
    # Queued into the partly taken instant: it goes before the lower priorities left there.
    current["p9"] = entry("p9", T0, priority=9)
    queue.push(current["p9"])
    assert ids(queue.take(T0.timestamp(), 2)) == ["p9", "p3"]
    assert ids(queue.take(T0.timestamp(), 10)) == ["p2", "p1"]


def test_replaced_removed_and_paused_jobs_leave_only_stale_items() -> None:
    queue, current = queue_of(
        entry("replaced", T0), entry("removed", T0), entry("paused", T0), entry("kept", T0)
    )
    current["replaced"] = entry("replaced", T0 + timedelta(minutes=5))
    queue.push(current["replaced"])
    del current["removed"]
    current["paused"] = entry("paused", T0, paused=True)
    queue.push(current["paused"])
    assert ids(queue.take(T0.timestamp(), 100)) == ["kept"]
    assert ids(queue.take((T0 + timedelta(minutes=5)).timestamp(), 100)) == ["replaced"]
    assert queue.first() is None and len(queue) == 0


def test_a_job_is_queued_once_however_often_it_is_pushed() -> None:
    job = entry("a", T0)
    queue, _ = queue_of(job)
    queue.push(job)
    queue.push(job)
    assert len(queue) == 1
    job.next_due = T0 + timedelta(minutes=1)  # moved: the item at T0 is stale from now on
    queue.push(job)
    assert queue.take(T0.timestamp(), 100) == []
    assert ids(queue.take((T0 + timedelta(minutes=1)).timestamp(), 100)) == ["a"]


def test_a_taken_job_queued_again_is_taken_again() -> None:
    job = entry("a", T0)
    queue, _ = queue_of(job)
    assert queue.take(T0.timestamp(), 100) == [job]
    assert job.queued is None
    job.next_due = T0 + timedelta(minutes=1)
    queue.push(job)
    assert queue.take((T0 + timedelta(minutes=1)).timestamp(), 100) == [job]


def test_the_front_is_found_past_stale_items() -> None:
    queue, current = queue_of(entry("a", T0), entry("b", T0 + timedelta(minutes=1)))
    del current["a"]
    assert queue.first() == (T0 + timedelta(minutes=1)).timestamp()
    del current["b"]
    assert queue.first() is None


def test_jobs_due_at_the_same_instant_share_one_datetime() -> None:
    a, b = entry("a", datetime(2030, 1, 7, 7, 30, tzinfo=UTC)), entry("b", T0 + timedelta(0))
    assert a.next_due is not b.next_due
    queue_of(a, b)
    assert a.next_due is b.next_due and b.next_due == T0


def test_paused_and_unscheduled_jobs_are_not_queued() -> None:
    queue, _ = queue_of(entry("paused", T0, paused=True), entry("over", None))
    assert len(queue) == 0 and queue.first() is None


_OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("put"),
            st.integers(0, 7),  # job
            st.integers(0, 4),  # due, in seconds after T0
            st.sampled_from((100, 500, 900)),
            st.booleans(),  # paused
        ),
        st.tuples(st.just("remove"), st.integers(0, 7)),
        st.tuples(st.just("take"), st.integers(0, 4), st.integers(1, 4)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(_OPS)
def test_the_queue_takes_what_a_heap_of_every_push_would(ops: list[tuple]) -> None:
    """The previous design as the model: one heap item (instant, -priority, sequence, version)
    per push, stale when its version is no longer the job's or the job is paused or gone."""
    current: dict[str, Entry] = {}
    queue = DueQueue(current)
    model: list[tuple[float, int, int, int, str]] = []
    versions: dict[str, int] = {}
    seq = itertools.count()

    def model_push(e: Entry) -> None:
        if e.next_due is not None and not e.paused:
            item = (e.next_due.timestamp(), -e.priority, next(seq), versions[e.id], e.id)
            heapq.heappush(model, item)

    for op in ops:
        if op[0] == "put":
            _, job, due_s, priority, paused = op
            e = entry(f"j{job}", T0 + timedelta(seconds=due_s), priority, paused)
            versions[e.id] = versions.get(e.id, -1) + 1
            current[e.id] = e
            queue.push(e)
            model_push(e)
        elif op[0] == "remove":
            current.pop(f"j{op[1]}", None)
        else:
            _, now_s, limit = op
            now_ts = (T0 + timedelta(seconds=now_s)).timestamp()
            expected: list[str] = []
            while model and model[0][0] <= now_ts and len(expected) < limit:
                _, _, _, version, job_id = heapq.heappop(model)
                live = job_id in current and versions[job_id] == version
                if live and not current[job_id].paused:
                    expected.append(job_id)
            taken = queue.take(now_ts, limit)
            assert ids(taken) == expected
            for e in taken:  # the dispatcher queues a taken job again at its next time
                e.next_due = e.next_due + timedelta(seconds=3)
                versions[e.id] += 1
                queue.push(e)
                model_push(e)


def test_replace_keeps_the_entry_usable_after_a_take() -> None:
    job = entry("a", T0)
    queue, current = queue_of(job)
    queue.take(T0.timestamp(), 1)
    moved = replace(job, next_due=T0 + timedelta(minutes=2))
    current["a"] = moved
    queue.push(moved)
    queue.push(job)  # the old entry, queued again by a tick that took it: stale
    assert ids(queue.take((T0 + timedelta(minutes=2)).timestamp(), 10)) == ["a"]
    assert queue.first() is None
