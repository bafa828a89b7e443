"""The fault matrix's bookkeeping: what became of every occurrence of a test's jobs, as counts.

Each case of ``tests/e2e/test_fault_matrix.py`` ends with :func:`tally`, which waits until
history has caught up with the ledger and counts, for the given jobs:

- ``occurrences``: rows in the scheduler's ledger (every scheduled instant, whatever its fate);
- ``dispatched``: those published and confirmed by JetStream;
- ``recorded``: finished runs history holds for them;
- ``lost``: dispatched (or still pending) with no finished run in history;
- ``duplicated``: instants planned twice in the ledger, plus finished events JetStream kept more
  than once for one occurrence (each is a completion someone downstream would see twice).

The figures are printed on one line starting ``fault-matrix`` (``make chaos`` greps them), and
the chaos sizes come from ``BELLTOWER_CHAOS_SCALE`` (see :func:`size`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
import nats
from nats.errors import TimeoutError as NatsTimeout

from belltower.api import RunPolicy
from belltower.schedule import Every, Schedule, schedule_encoder
from belltower.subjects import RUNS_STREAM
from tests.helpers.faults import query, wait_until


def size(suite: int, chaos: int) -> int:
    """``suite`` in the test suite; ``chaos`` under ``make chaos`` (``BELLTOWER_CHAOS_SCALE=1``),
    or that scaled by the variable's value."""
    scale = float(os.environ.get("BELLTOWER_CHAOS_SCALE", "0") or 0)
    return max(suite, int(chaos * scale)) if scale > 0 else suite


class _Occurrence(msgspec.Struct):
    occurrence_id: str


class _Finished(msgspec.Struct):
    data: _Occurrence


@dataclass(frozen=True)
class Tally:
    case: str
    occurrences: int
    dispatched: int
    recorded: int
    lost: int
    duplicated: int
    not_run: dict[str, int]
    """Occurrences the ledger holds that were not dispatched, by ``state/cause``."""
    extra: str = ""

    def assert_each_ran_once(self, jobs: int = 1) -> None:
        """Nothing lost or doubled, and every occurrence dispatched and recorded but the last of
        each job, which the pause that ends a test may skip when it fell due just then."""
        assert (self.lost, self.duplicated) == (0, 0), self.line()
        assert self.recorded == self.dispatched, self.line()
        assert set(self.not_run) <= {"skipped/paused"}, self.line()
        assert self.occurrences - self.dispatched <= jobs, self.line()

    def line(self) -> str:
        return (
            f"fault-matrix {self.case}: {self.occurrences} occurrences, {self.dispatched} "
            f"dispatched, {self.recorded} recorded, {self.lost} lost, {self.duplicated} duplicated"
            + "".join(f", {n} {what}" for what, n in sorted(self.not_run.items()))
            + (f"; {self.extra}" if self.extra else "")
        )


async def _finished_per_occurrence(nats_url: str) -> Counter[str]:
    """How many finished events the runs stream holds for each occurrence."""
    nc = await nats.connect(nats_url)
    counts: Counter[str] = Counter()
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe("belltower.run.finished.>", stream=RUNS_STREAM)
        while True:
            try:
                messages = await sub.fetch(1000, timeout=1.0)
            except (NatsTimeout, TimeoutError):
                break
            for m in messages:
                counts[msgspec.json.decode(m.data, type=_Finished).data.occurrence_id] += 1
            if (await sub.consumer_info()).num_pending == 0:
                break
        await sub.unsubscribe()
    finally:
        await nc.close()
    return counts


def tally(
    case: str,
    database_url: str,
    nats_url: str,
    job_ids: list[str],
    *,
    extra: str = "",
    timeout: float = 60,
) -> Tally:
    """Wait for history to record what the ledger dispatched, then count (see the module)."""
    ids = [uuid.UUID(j) for j in job_ids]

    def counts() -> tuple[int, int, int]:
        [row] = query(
            database_url,
            "SELECT count(*) FILTER (WHERE o.state = 'dispatched') AS dispatched,"
            " count(*) FILTER (WHERE o.state = 'pending') AS pending,"
            " count(r.occurrence_id) FILTER (WHERE r.finished_at IS NOT NULL) AS recorded"
            " FROM scheduler.occurrences o"
            " LEFT JOIN history.runs r ON r.occurrence_id = o.id"
            " WHERE o.job_id = ANY($1)",
            ids,
        )
        return row["dispatched"], row["pending"], row["recorded"]

    def caught_up() -> bool:
        dispatched, pending, recorded = counts()
        return pending == 0 and recorded >= dispatched

    with contextlib.suppress(AssertionError):  # what never arrives is counted as lost below
        wait_until(caught_up, timeout, f"{case}: history to record every dispatched occurrence")
    dispatched, pending, recorded = counts()
    [ledger] = query(
        database_url,
        "SELECT count(*) AS n, count(DISTINCT (job_id, scheduled_for)) AS distinct_instants"
        " FROM scheduler.occurrences WHERE job_id = ANY($1) AND trigger = 'schedule'",
        ids,
    )
    occurrence_ids = {
        r["id"]
        for r in query(
            database_url,
            "SELECT id::text AS id FROM scheduler.occurrences WHERE job_id = ANY($1)",
            ids,
        )
    }
    not_run = {
        f"{r['state']}/{r['cause']}": r["n"]
        for r in query(
            database_url,
            "SELECT state, cause, count(*) AS n FROM scheduler.occurrences"
            " WHERE job_id = ANY($1) AND state <> 'dispatched' GROUP BY 1, 2",
            ids,
        )
    }
    finished = asyncio.run(_finished_per_occurrence(nats_url))
    twice = sum(n - 1 for occ, n in finished.items() if occ in occurrence_ids and n > 1)
    result = Tally(
        case=case,
        occurrences=ledger["n"],
        dispatched=dispatched,
        recorded=recorded,
        lost=max(0, dispatched + pending - recorded),
        duplicated=ledger["n"] - ledger["distinct_instants"] + twice,
        not_run=not_run,
        extra=extra,
    )
    print(result.line())
    return result


def pending(database_url: str) -> int:
    return query(
        database_url, "SELECT count(*) AS n FROM scheduler.occurrences WHERE state = 'pending'"
    )[0]["n"]


def every_second(cli, title: str) -> str:
    """A canary due every second that runs whatever is still going (overlap allow): every
    instant is an occurrence to publish, none is skipped behind a run held up by the fault."""
    job = cli.json(
        "jobs", "create", "--type", "system.canary", "--title", title, "--every", "1s",
        "--overlap", "allow",
    )  # fmt: skip
    return job["id"]


def stop_and_settle(cli, database_url: str, job_ids: list[str]) -> None:
    for job_id in job_ids:
        cli.run("jobs", "pause", job_id)
    wait_until(lambda: pending(database_url) == 0, 60, "pending occurrences to go out")


JOB_COLUMNS = (
    "id", "title", "type", "pool", "params", "schedule", "priority", "paused",
    "keep_history_days", "timeout_s", "next_run_at", "created_at", "updated_at", "policy",
)  # fmt: skip


def insert_canaries(
    database_url: str, n: int, due: datetime, params: dict[str, Any], policy: RunPolicy
) -> list[str]:
    """``n`` daily canary jobs whose next occurrence is ``due``, written straight to
    ``scheduler.jobs`` as ``jobs create`` stores them (creating thousands through the API would
    take minutes); a scheduler loads them when it starts. Returns their ids."""
    schedule = schedule_encoder.encode(Schedule(rule=Every(seconds=86_400), start=due)).decode()
    now = datetime.now(UTC)
    encoded = msgspec.json.encode(params).decode()
    policy_json = msgspec.json.encode(policy).decode()
    ids = [uuid.uuid4() for _ in range(n)]
    rows = [
        (job_id, f"Chaos canary {i:05d}", "system.canary", "notifier", encoded, schedule, 500,
         False, None, None, due, now, now, policy_json)
        for i, job_id in enumerate(ids)
    ]  # fmt: skip

    async def go() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.copy_records_to_table(
                "jobs", schema_name="scheduler", columns=list(JOB_COLUMNS), records=rows
            )
        finally:
            await conn.close()

    asyncio.run(go())
    return [str(i) for i in ids]


def finished_runs(database_url: str, job_ids: list[str]) -> int:
    return query(
        database_url,
        "SELECT count(*) AS n FROM history.runs WHERE job_id = ANY($1) AND finished_at IS NOT NULL",
        [uuid.UUID(j) for j in job_ids],
    )[0]["n"]
