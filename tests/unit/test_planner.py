"""The scheduler's planning rules in memory, with no NATS or PostgreSQL: catch-up, overlap,
chaining and the schedule's own skips, as the ledger rows the planner hands to the pipeline.
(The integration tests of the same policies prove the wiring: written, published, released.)"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from belltower.api import After, RunPolicy
from belltower.events import RunFinishedData, chained_occurrence_id, occurrence_id, run_id_for
from belltower.schedule import Every, Schedule, Window
from belltower_scheduler import planner as planner_module
from belltower_scheduler.entry import Entry, compiled_for, job_spec
from belltower_scheduler.planner import Claims, Planned, Planner

T0 = datetime(2030, 1, 7, 8, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def job(
    job_id: str = "00000000-0000-0000-0000-000000000001",
    policy: RunPolicy = RunPolicy(),
    *,
    schedule: Schedule | None = None,
    next_due: datetime | None = T0,
    priority: int = 500,
    paused: bool = False,
) -> Entry:
    spec = job_spec("system.canary", "notifier", priority, None, policy, None, paused)
    compiled = compiled_for(schedule or Schedule(rule=Every(seconds=60)))
    return Entry(job_id, "job", b"{}", compiled, next_due, spec)


def plan(planner: Planner, entry: Entry, now: datetime) -> list[Planned]:
    out: list[Planned] = []
    planner.plan(entry, now, out)
    return sorted(out, key=lambda p: p.scheduled_for)


def states(out: list[Planned]) -> list[tuple[datetime, str, str | None]]:
    return [(p.scheduled_for, p.state, p.cause) for p in out]


def finished(upstream: Entry, at: datetime, status: str = "succeeded") -> RunFinishedData:
    occ = occurrence_id(upstream.id, at)
    return RunFinishedData(
        run_id=run_id_for(occ), occurrence_id=occ, job_id=upstream.id, job_type=upstream.type,
        job_title=upstream.title, pool=upstream.pool, status=status, priority=500,
        trigger="schedule", scheduled_for=at, dispatched_at=at, started_at=at,
        finished_at=at + timedelta(seconds=5), duration_ms=5000,
        error=None if status == "succeeded" else "boom",
    )  # fmt: skip


def tracking(**options: float) -> Planner:
    planner = Planner(**options)
    planner.tracking_runs = True
    return planner


# -- the usual case and the schedule's own skips --------------------------------------------------


def test_one_occurrence_due_on_time_is_pending_and_the_next_time_advances() -> None:
    entry = job()
    out = plan(Planner(), entry, T0 + timedelta(seconds=1))
    assert states(out) == [(T0, "pending", None)]
    assert out[0].id == occurrence_id(entry.id, T0)
    assert out[0].entry is entry
    assert entry.next_due == T0 + MINUTE


def test_occurrences_outside_the_window_are_skipped_with_their_cause() -> None:
    schedule = Schedule(rule=Every(seconds=3600), window=Window(start="09:00", end="17:00"))
    entry = job(schedule=schedule, next_due=T0 + timedelta(hours=1))  # 09:00 runs
    out = plan(Planner(), entry, T0 + timedelta(hours=1, seconds=1))
    assert states(out) == [(T0 + timedelta(hours=1), "pending", None)]
    # The 17:00 one is the last in the window; what falls outside is recorded on the way.
    entry.next_due = T0 + timedelta(hours=9)
    out = plan(Planner(), entry, T0 + timedelta(hours=9, seconds=1))
    assert states(out)[0] == (T0 + timedelta(hours=9), "pending", None)
    skipped = [p for p in out if p.state == "skipped"]
    assert skipped and {p.cause for p in skipped} == {"outside_window"}
    assert all("outside" in (p.reason or "") for p in skipped)
    assert entry.next_due == datetime(2030, 1, 8, 9, 0, tzinfo=UTC)


# -- catch-up -------------------------------------------------------------------------------------


def test_catch_up_latest_runs_the_latest_once_and_coalesces_the_rest() -> None:
    out = plan(Planner(misfire_grace_s=10), job(), T0 + 5 * MINUTE + timedelta(seconds=30))
    assert [s for _, s, _ in states(out)] == ["coalesced"] * 5 + ["pending"]
    assert all(p.cause == "catch_up" for p in out[:-1])
    assert f"coalesced into the occurrence of {(T0 + 5 * MINUTE).isoformat()}" in (
        out[0].reason or ""
    )


def test_catch_up_latest_runs_the_on_time_occurrence_rather_than_a_late_one() -> None:
    out = plan(Planner(misfire_grace_s=60), job(), T0 + 5 * MINUTE + timedelta(seconds=30))
    assert [s for _, s, _ in states(out)] == ["coalesced"] * 5 + ["pending"]
    assert out[-1].scheduled_for == T0 + 5 * MINUTE  # 30 s late: within the grace


def test_catch_up_all_runs_those_within_the_window_up_to_the_maximum() -> None:
    policy = RunPolicy(catch_up="all", catch_up_window_s=300, catch_up_max=3)
    now = T0 + 10 * MINUTE + timedelta(seconds=30)
    out = plan(Planner(misfire_grace_s=10), job(policy=policy), now)
    assert [s for _, s, _ in states(out)] == ["missed"] * 8 + ["pending"] * 3
    assert [p.scheduled_for for p in out if p.state == "pending"] == [
        T0 + 8 * MINUTE,
        T0 + 9 * MINUTE,
        T0 + 10 * MINUTE,
    ]
    assert "catch-up window (300s)" in (out[0].reason or "")
    assert "at most 3" in (out[7].reason or "")


def test_catch_up_all_with_no_maximum_runs_only_the_on_time_one() -> None:
    policy = RunPolicy(catch_up="all", catch_up_window_s=3600, catch_up_max=0)
    out = plan(Planner(misfire_grace_s=10), job(policy=policy), T0 + 3 * MINUTE)
    assert [s for _, s, _ in states(out)] == ["missed"] * 3 + ["pending"]


def test_catch_up_skip_records_every_missed_occurrence_and_runs_none() -> None:
    policy = RunPolicy(catch_up="skip")
    out = plan(
        Planner(misfire_grace_s=10), job(policy=policy), T0 + 5 * MINUTE + timedelta(seconds=30)
    )
    assert states(out) == [(T0 + i * MINUTE, "missed", "catch_up") for i in range(6)]
    assert "catch-up policy is skip" in (out[0].reason or "")


def test_occurrences_found_after_the_schedule_ended_are_skipped() -> None:
    schedule = Schedule(rule=Every(seconds=60), end=T0 + 3 * MINUTE)
    entry = job(schedule=schedule)
    out = plan(Planner(), entry, T0 + 10 * MINUTE)
    assert states(out) == [(T0 + i * MINUTE, "skipped", "end_passed") for i in range(4)]
    assert entry.next_due is None


def test_beyond_the_catch_up_limit_one_row_stands_for_the_rest(monkeypatch) -> None:
    monkeypatch.setattr(planner_module, "MAX_CATCH_UP", 5)
    now = T0 + 20 * MINUTE + timedelta(seconds=30)
    entry = job()
    out = plan(Planner(misfire_grace_s=10), entry, now)
    assert [s for _, s, _ in states(out)] == ["coalesced"] * 4 + ["pending", "missed"]
    beyond = out[-1]
    assert beyond.scheduled_for == T0 + 5 * MINUTE and beyond.cause == "catch_up"
    assert "more than 5 occurrences were due" in (beyond.reason or "")
    assert entry.next_due == T0 + 21 * MINUTE


# -- overlap --------------------------------------------------------------------------------------


def test_without_run_tracking_the_overlap_policy_holds_nothing_back() -> None:
    planner = Planner()
    entry = job()
    planner.in_flight[entry.id] = {"earlier": T0 - MINUTE}
    assert [s for _, s, _ in states(plan(planner, entry, T0))] == ["pending"]


def test_overlap_skip_skips_while_a_run_is_going_naming_it() -> None:
    planner = tracking()
    entry = job(policy=RunPolicy(overlap="skip"))
    planner.in_flight[entry.id] = {"going": T0 - MINUTE}
    out = plan(planner, entry, T0)
    assert states(out) == [(T0, "skipped", "overlap")]
    assert f"the run of {(T0 - MINUTE).isoformat(timespec='seconds')} was still going" in (
        out[0].reason or ""
    )
    assert "overlap: skip" in (out[0].reason or "")


def test_overlap_buffer_holds_the_latest_one_and_skips_the_others() -> None:
    planner = tracking(misfire_grace_s=600)
    entry = job(policy=RunPolicy(overlap="buffer"))
    planner.in_flight[entry.id] = {"going": T0 - MINUTE}
    out = plan(planner, entry, T0 + 2 * MINUTE)
    assert [s for _, s, _ in states(out)] == ["skipped", "skipped", "waiting"]
    assert "it runs when that run finishes" in (out[-1].reason or "")


def test_overlap_buffer_holds_only_one() -> None:
    planner = tracking()
    entry = job(policy=RunPolicy(overlap="buffer"))
    planner.in_flight[entry.id] = {"going": T0 - MINUTE}
    planner.waiting[entry.id] = "buffered already"
    out = plan(planner, entry, T0)
    assert states(out) == [(T0, "skipped", "overlap")]
    assert "buffer holds one, and one was waiting already" in (out[0].reason or "")


def test_overlap_allow_runs_regardless() -> None:
    planner = tracking()
    entry = job(policy=RunPolicy(overlap="allow"))
    planner.in_flight[entry.id] = {"going": T0 - MINUTE}
    assert [s for _, s, _ in states(plan(planner, entry, T0))] == ["pending"]


def test_a_run_in_flight_for_too_long_stops_holding_its_job_back() -> None:
    planner = tracking(stale_run_s=3600)
    entry = job(policy=RunPolicy(overlap="skip"))
    planner.in_flight[entry.id] = {"lost": T0 - 2 * timedelta(hours=1)}
    assert [s for _, s, _ in states(plan(planner, entry, T0))] == ["pending"]
    assert entry.id not in planner.in_flight


# -- chaining -------------------------------------------------------------------------------------


UPSTREAM = job("00000000-0000-0000-0000-0000000000aa")


def follower(on: str = "succeeded", delay_s: float = 0, **policy: object) -> Entry:
    after = After(job=UPSTREAM.id, on=on, delay_s=delay_s)  # type: ignore[arg-type]
    return job(policy=RunPolicy(after=after, **policy), next_due=None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("on", "status", "runs"),
    [
        ("succeeded", "succeeded", True),
        ("succeeded", "failed", False),
        ("failed", "failed", True),
        ("failed", "succeeded", False),
        ("finished", "failed", True),
        ("finished", "succeeded", True),
    ],
)
def test_a_chained_job_runs_on_the_outcome_it_follows(on: str, status: str, runs: bool) -> None:
    event = finished(UPSTREAM, T0, status)
    chained = Planner().chain(follower(on), event, T0 + MINUTE, Claims())
    assert (chained is not None) is runs
    if chained is not None:
        assert chained.id == chained_occurrence_id(chained.job_id, event.occurrence_id)
        assert (chained.state, chained.trigger, chained.chained_from) == (
            "pending",
            "chained",
            event.occurrence_id,
        )


def test_a_chained_occurrence_with_a_delay_waits_for_it() -> None:
    event = finished(UPSTREAM, T0)
    chained = Planner().chain(follower(delay_s=600), event, T0 + MINUTE, Claims())
    assert chained is not None
    assert chained.state == "delayed"
    assert chained.scheduled_for == event.finished_at + timedelta(seconds=600)


def test_a_chained_occurrence_of_a_paused_job_is_skipped() -> None:
    entry = follower()
    entry.spec = job_spec("system.canary", "notifier", 500, None, entry.policy, None, True)
    chained = Planner().chain(entry, finished(UPSTREAM, T0), T0 + MINUTE, Claims())
    assert chained is not None
    assert (chained.state, chained.cause) == ("skipped", "paused")


def test_a_chained_occurrence_is_skipped_while_the_jobs_run_is_going() -> None:
    planner = tracking()
    entry = follower(overlap="skip")
    planner.in_flight[entry.id] = {"going": T0}
    chained = planner.chain(entry, finished(UPSTREAM, T0), T0 + MINUTE, Claims())
    assert chained is not None
    assert (chained.state, chained.cause) == ("skipped", "overlap")
    assert "was still going" in (chained.reason or "")


def test_two_chained_occurrences_in_one_batch_buffer_one_and_skip_the_other() -> None:
    planner = tracking()
    entry = follower(on="finished", overlap="buffer")
    claims = Claims()
    now = T0 + 10 * MINUTE
    first = planner.chain(entry, finished(UPSTREAM, T0), now, claims)
    second = planner.chain(entry, finished(UPSTREAM, T0 + MINUTE), now, claims)
    third = planner.chain(entry, finished(UPSTREAM, T0 + 2 * MINUTE), now, claims)
    assert first is not None and second is not None and third is not None
    assert [first.state, second.state, third.state] == ["pending", "waiting", "skipped"]
    assert "chained run after" in (second.reason or "")


# -- chunks ---------------------------------------------------------------------------------------


def test_chunks_keep_stream_order_and_a_jobs_next_time_travels_with_its_last_occurrence() -> None:
    planner = Planner(misfire_grace_s=600)
    low = job("00000000-0000-0000-0000-000000000010", priority=1)
    high = job("00000000-0000-0000-0000-000000000020", priority=900)
    chunks = planner.plan_chunks([low, high], T0 + MINUTE, size=3)
    order = [(p.scheduled_for, p.priority) for c in chunks for p in c.occurrences]
    assert order == [(T0, 900), (T0, 1), (T0 + MINUTE, 900), (T0 + MINUTE, 1)]
    assert [len(c.occurrences) for c in chunks] == [3, 1]
    assert chunks[0].next_runs == [(high.id, T0 + 2 * MINUTE)]
    assert chunks[1].next_runs == [(low.id, T0 + 2 * MINUTE)]


def test_nothing_due_still_makes_one_chunk_with_the_next_times() -> None:
    entry = job(next_due=T0 + MINUTE)
    chunks = Planner().plan_chunks([entry], T0, size=10)
    assert len(chunks) == 1 and chunks[0].occurrences == []
    assert chunks[0].next_runs == [(entry.id, T0 + MINUTE)]


def test_sorting_in_stream_order_is_the_tuple_order_with_ties_kept() -> None:
    """Two stable sorts (priority, then instant) give what one sort by stream_order gives."""
    rng = random.Random(14)
    entries = [job(priority=p) for p in (0, 100, 500, 900)]
    base = datetime(2026, 9, 1, 7, 0, tzinfo=UTC)
    for _ in range(50):
        planned = []
        for i in range(rng.randint(0, 60)):
            entry = rng.choice(entries)
            at = base + timedelta(seconds=rng.randint(0, 4))
            planned.append(
                Planned(
                    id=str(i),
                    job_id=entry.id,
                    scheduled_for=at,
                    priority=entry.priority,
                    trigger="schedule",
                    state="pending",
                    entry=entry,
                )
            )
        expected = sorted(planned, key=planner_module.stream_order)
        planner_module.sort_in_stream_order(planned)
        assert [p.id for p in planned] == [p.id for p in expected]
