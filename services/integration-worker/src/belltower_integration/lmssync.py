"""What an LMS sync last made the LMS hold (``sis.lms_sync_records``), and the plan against it.

Each record is keyed by its SIS key within a kind (user, course, enrolment) and carries the
LMS's own id and a digest of the values sent. A run sends only what is new or changed since,
removes what is gone, and saves each record as soon as the LMS took it, so a run repeated after
a crash or a partial failure sends only what is still missing, and a repeated occurrence that
succeeded changes nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from belltower.errors import JobFailed
from belltower.jobtypes import JobContext

from . import lmsroster, safety
from .report import Tally

Stored = dict[str, dict[str, tuple[str | None, str]]]  # kind -> key -> (lms id, digest)


async def load(conn: Any, job_id: str) -> Stored:
    stored: Stored = {}
    rows = await conn.fetch(
        "SELECT kind, sis_key, lms_id, digest FROM sis.lms_sync_records WHERE job_id = $1", job_id
    )
    for r in rows:
        stored.setdefault(r["kind"], {})[r["sis_key"]] = (r["lms_id"], r["digest"])
    return stored


def change(stored: Stored, wanted: dict[str, dict[str, str]]) -> safety.Change:
    """Per kind, what is new, changed and gone: ``wanted`` is kind -> key -> digest."""
    return {
        kind: safety.diff(
            {k: d for k, (_, d) in stored.get(kind, {}).items()}, wanted.get(kind, {})
        )
        for kind in sorted(set(stored) | set(wanted))
    }


async def save(
    conn: Any, job_id: str, kind: str, rows: Iterable[tuple[str, str | None, str]]
) -> None:
    """Store records the LMS took: (SIS key, LMS id, digest)."""
    await conn.executemany(
        "INSERT INTO sis.lms_sync_records (job_id, kind, sis_key, lms_id, digest) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (job_id, kind, sis_key) DO UPDATE SET "
        "lms_id = EXCLUDED.lms_id, digest = EXCLUDED.digest, synced_at = now()",
        [(job_id, kind, key, lms_id, digest) for key, lms_id, digest in rows],
    )


async def forget(conn: Any, job_id: str, kind: str, keys: Iterable[str]) -> None:
    """Drop records the LMS no longer holds for this job."""
    await conn.execute(
        "DELETE FROM sis.lms_sync_records WHERE job_id = $1 AND kind = $2 AND sis_key = ANY($3::text[])",
        job_id,
        kind,
        list(keys),
    )


Wanted = dict[str, dict[str, dict[str, Any]]]
"""kind -> SIS key -> the values an LMS takes for that record."""


class Scope(Protocol):
    terms: list[str]
    upcoming_days: int
    safety: safety.SafetyParams


@dataclass
class Planned:
    stored: Stored
    wanted: Wanted
    change: safety.Change
    tally: Tally

    def of(self, kind: str) -> safety.KindChange:
        return self.change.get(kind, safety.KindChange())


async def prepare(
    ctx: JobContext, what: str, scope: Scope, shape: Callable[[lmsroster.Roster], Wanted]
) -> Planned | None:
    """Read the roster, compare with what the LMS got last, and let the safety hold judge it.
    None when nothing changed (the run's output then says so)."""
    pool = await ctx.db.pool()
    async with pool.acquire() as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            roster = await lmsroster.read(
                conn, scope.terms, scope.upcoming_days, ctx.scheduled_for.date()
            )
        stored = await load(conn, ctx.job_id)
    wanted = shape(roster)
    digests = {k: {key: safety.digest(v) for key, v in rows.items()} for k, rows in wanted.items()}
    planned = Planned(stored, wanted, change(stored, digests), Tally(what))
    for kind, c in planned.change.items():
        planned.tally.fact(
            f"{kind}s: {len(c.added)} new, {len(c.changed)} changed, {len(c.deleted)} gone"
        )
    released = await safety.guard(ctx, scope.safety, planned.change)
    if released:
        planned.tally.fact(released)
    if not any(c.added or c.changed or c.deleted for c in planned.change.values()):
        planned.tally.write(ctx, f"{what}: nothing changed since the last run; nothing sent")
        return None
    return planned


def finish(ctx: JobContext, tally: Tally, summary: str, vendor: str) -> None:
    """Write the run's output; a run with refused records fails after sending the rest."""
    tally.write(ctx, summary)
    if tally.failed:
        raise JobFailed(
            f"{vendor} refused {tally.failed} record(s) (see the output); the rest was sent, and "
            "the next run sends only what is still missing"
        )
