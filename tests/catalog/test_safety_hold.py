"""The roster syncs' safety hold against the demo school: a OneRoster delta that would delete
too much ends held and writes nothing, history records a release once, and a released hold is
claimed by one run only."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, date, datetime
from datetime import time as clock
from pathlib import Path

import pytest

from belltower.errors import Conflict, InvalidInput, RunHeld
from belltower.holds import Release, ReleaseRequest, ReleasesQuery
from belltower.jobtypes import Database, JobContext, Output
from belltower_history import releases
from belltower_integration import safety
from belltower_integration.jobs import oneroster_export
from belltower_scheduler.catalog import validate_params
from tests.catalog.conftest import JobRunner

JOB = oneroster_export.job_type.name


def at(day: date, hour: int) -> datetime:
    return datetime.combine(day, clock(hour), tzinfo=UTC)


async def test_a_delta_deleting_too_many_enrollments_is_held_and_writes_nothing(
    run_job: JobRunner, tmp_batch_folder: Path, sis_today: date
) -> None:
    first = await run_job(
        JOB, {"mode": "delta"}, scheduled_for=at(sis_today, 6), occurrence_id="occ-a"
    )
    assert first.status == "succeeded", first.error
    pool = await run_job.db.pool()
    total = await pool.fetchval("SELECT count(*) FROM sis.enrollments")
    await pool.execute(
        "DELETE FROM sis.enrollments WHERE id IN (SELECT id FROM sis.enrollments ORDER BY id LIMIT $1)",
        total // 4,
    )
    snapshots = await pool.fetchval("SELECT count(*) FROM sis.oneroster_snapshots")
    held = await run_job(
        JOB, {"mode": "delta"}, scheduled_for=at(sis_today, 7), occurrence_id="occ-b"
    )
    assert held.status == "held", held.error
    assert (
        held.error is not None
        and "enrollments: " in held.error
        and "would be deleted" in held.error
    )
    assert "belltower runs release occ-b" in held.error
    assert "sample: deleted enrollments " in held.text
    assert list((tmp_batch_folder / "oneroster").glob("oneroster_delta_*")) == []
    assert await pool.fetchval("SELECT count(*) FROM sis.oneroster_snapshots") == snapshots
    row = await pool.fetchrow(
        "SELECT counts, applied_by_run FROM sis.roster_holds WHERE run_id = 'occ-b'"
    )
    assert row["applied_by_run"] is None and '"deleted": ' in row["counts"]

    # Raising the threshold for this job lets the same change through: the next run decides.
    lenient = {"mode": "delta", "safety": {"max_deleted_pct": 50}}
    sent = await run_job(JOB, lenient, scheduled_for=at(sis_today, 8), occurrence_id="occ-c")
    assert sent.status == "succeeded", sent.error
    assert len(list((tmp_batch_folder / "oneroster").glob("oneroster_delta_*"))) == 1


def context(db: Database, settings, run_id: str, job_id: str) -> JobContext:
    async def progress(done: int | None, total: int | None, message: str) -> None:
        return None

    return JobContext(
        run_id=run_id, occurrence_id=run_id, job_id=job_id, job_title="roster", job_type=JOB,
        trigger="manual", requested_by=None, scheduled_for=datetime.now(UTC), attempt=1,
        deadline=time.monotonic() + 30, log=logging.LoggerAdapter(logging.getLogger("t"), {}),
        output=Output(), settings=settings, db=db, mailer=None, api=None,  # type: ignore[arg-type]
        _progress=progress,
    )  # fmt: skip


async def test_a_release_is_recorded_once_and_its_change_is_claimed_by_one_run(
    run_job: JobRunner,
) -> None:
    pool = await run_job.db.pool()
    job_id, held_run = str(uuid.uuid4()), str(uuid.uuid4())
    change = {"users": safety.KindChange(existing=10, deleted=["U1", "U2", "U3"])}
    params = safety.SafetyParams()
    with pytest.raises(RunHeld, match=r"users: 3 of 10 would be deleted \(30.0% > 10%\)"):
        await safety.guard(
            context(run_job.db, run_job.settings, held_run, job_id), params, change, []
        )
    ok_run = str(uuid.uuid4())
    for run, status in ((held_run, "held"), (ok_run, "succeeded")):
        await pool.execute(
            "INSERT INTO history.runs (occurrence_id, run_id, job_id, job_type, job_title, pool, status,"
            " trigger, priority, scheduled_for, dispatched_at, started_at, finished_at)"
            " VALUES ($1, $1, $2, $3, 'roster', 'integration', $4, 'schedule', 500, now(), now(), now(), now())",
            uuid.UUID(run), uuid.UUID(job_id), JOB, status,
        )  # fmt: skip
    request = ReleaseRequest(run_id=held_run, released_by="ed")
    first = await releases.release(pool, request)
    again = await releases.release(pool, ReleaseRequest(run_id=held_run, released_by="other"))
    assert (first.first, again.first, again.released_by) == (True, False, "ed")
    with pytest.raises(Conflict, match="is succeeded, not held"):
        await releases.release(pool, ReleaseRequest(run_id=ok_run))
    assert [r.run_id for r in await releases.of_job(pool, ReleasesQuery(job_id=job_id))] == [
        held_run
    ]

    released: list[Release] = [first]
    applier = context(run_job.db, run_job.settings, "run-apply", job_id)
    note = await safety.guard(applier, params, change, released)
    assert note == f"safety hold of run {held_run} released: sending the held change once"
    # The same run retried claims it again; any other run finds it applied and holds.
    assert await safety.guard(applier, params, change, released) == note
    with pytest.raises(RunHeld):
        await safety.guard(
            context(run_job.db, run_job.settings, "run-later", job_id), params, change, released
        )
    # A different change set is judged afresh even while a release is there.
    other = {"users": safety.KindChange(existing=10, deleted=["U4", "U5"])}
    with pytest.raises(RunHeld):
        await safety.guard(
            context(run_job.db, run_job.settings, "run-x", job_id), params, other, released
        )


@pytest.mark.parametrize(
    ("safety_params", "field"),
    [({"max_deleted_pct": 101}, "param.safety.max_deleted_pct"),
     ({"max_changed_pct": -1}, "param.safety.max_changed_pct"),
     ({"max_deleted": 5}, "param.safety")],
)  # fmt: skip
def test_thresholds_are_checked_when_the_job_is_saved(safety_params: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_params(oneroster_export.job_type.info(), {"safety": safety_params})
    assert caught.value.field.startswith(field)
