"""Focus's schedule housekeeping: Remove Scheduled Students from Waitlist and Master Schedule
Snapshots."""

from __future__ import annotations

from typing import Annotated

import asyncpg
import msgspec

from belltower.errors import InvalidInput
from belltower.jobtypes import JobContext, JobType

from ..report import Tally

Terms = Annotated[
    list[Annotated[str, msgspec.Meta(min_length=1, max_length=50)]],
    msgspec.Meta(max_length=50, description="Term codes; empty: terms not yet ended"),
]
_TERMS = """SELECT id, code FROM sis.terms
             WHERE CASE WHEN cardinality($1::text[]) > 0 THEN code = ANY($1) ELSE ends_on >= $2 END
             ORDER BY starts_on"""
SCHEDULED = ("enrolled", "audit", "completed")


async def _terms(
    conn: asyncpg.Connection, wanted: list[str], ctx: JobContext
) -> list[tuple[int, str]]:
    """The (id, code) of the terms asked for, or of those not yet ended; an unknown code fails."""
    codes = [t.upper() for t in wanted]
    found = [
        (r["id"], r["code"]) for r in await conn.fetch(_TERMS, codes, ctx.scheduled_for.date())
    ]
    if missing := sorted(set(codes) - {code for _, code in found}):
        raise InvalidInput(
            "param.terms", f"unknown terms: {', '.join(missing)}", "term codes in sis.terms"
        )
    return found


class WaitlistParams(msgspec.Struct, forbid_unknown_fields=True):
    terms: Terms = []


async def remove_scheduled_from_waitlist(ctx: JobContext, params: WaitlistParams) -> None:
    pool = await ctx.db.pool()
    tally = Tally("Remove scheduled students from waitlist")
    async with pool.acquire() as conn, conn.transaction():
        terms = await _terms(conn, params.terms, ctx)
        removed = await conn.fetch(
            """UPDATE sis.waitlist w SET state = 'removed', resolved_at = now()
                 FROM sis.sections s, sis.courses c, sis.people p
                WHERE s.id = w.section_id AND c.id = s.course_id AND p.id = w.person_id
                  AND w.state = 'waiting' AND s.term_id = ANY($1::bigint[])
                  AND EXISTS (SELECT 1 FROM sis.enrollments e WHERE e.person_id = w.person_id
                                 AND e.section_id = w.section_id AND e.status = ANY($2::text[]))
            RETURNING p.sis_id, c.code || '-' || s.section_code AS section, w.position""",
            [t for t, _ in terms], list(SCHEDULED),
        )  # fmt: skip
        for row in sorted(removed, key=lambda r: (r["section"], r["position"])):
            tally.ok(f"{row['sis_id']} {row['section']}", f"was #{row['position']} on the waitlist")
    tally.fact("terms: " + (", ".join(code for _, code in terms) or "none"))
    tally.write(ctx, f"{len(removed)} scheduled students removed from waitlists")


remove_scheduled_type = JobType(
    name="housekeeping.remove_scheduled_from_waitlist",
    pool="integration",
    title="Remove Scheduled Students from Waitlist",
    description=(
        "Removes students from the waitlist when they are scheduled into the class they were "
        "waitlisted for (enrolled, auditing or completed), in the terms chosen."
    ),
    params=WaitlistParams,
    run=remove_scheduled_from_waitlist,
)

# -- Master Schedule Snapshots -------------------------------------------------------------------


class SnapshotParams(msgspec.Struct, forbid_unknown_fields=True):
    terms: Terms = []
    keep: Annotated[
        int, msgspec.Meta(ge=1, le=366, description="Snapshots this job keeps (the newest)")
    ] = 14


async def schedule_snapshot(ctx: JobContext, params: SnapshotParams) -> None:
    pool = await ctx.db.pool()
    tally = Tally("Master schedule snapshot")
    async with pool.acquire() as conn, conn.transaction():
        terms = await _terms(conn, params.terms, ctx)
        ids = [t for t, _ in terms]
        snapshot = await conn.fetchval(
            """INSERT INTO sis.schedule_snapshots (job_id, occurrence_id, terms, sections, enrollments)
               SELECT $1, $2, $3,
                      (SELECT count(*) FROM sis.sections WHERE term_id = ANY($4::bigint[])),
                      (SELECT count(*) FROM sis.enrollments e JOIN sis.sections s ON s.id = e.section_id
                        WHERE s.term_id = ANY($4::bigint[]))
               ON CONFLICT (occurrence_id) DO NOTHING RETURNING id""",
            ctx.job_id, ctx.occurrence_id, [code for _, code in terms], ids,
        )  # fmt: skip
        if snapshot is not None:
            await conn.execute(
                """INSERT INTO sis.schedule_snapshot_rows (snapshot_id, kind, record_id, record)
                   SELECT $1::bigint, 'section', s.id, to_jsonb(s) FROM sis.sections s WHERE s.term_id = ANY($2::bigint[])
                   UNION ALL
                   SELECT $1::bigint, 'enrollment', e.id, to_jsonb(e) FROM sis.enrollments e
                     JOIN sis.sections s ON s.id = e.section_id WHERE s.term_id = ANY($2::bigint[])""",
                snapshot, ids,
            )  # fmt: skip
        else:
            tally.fact("this occurrence took its snapshot before: not taken again")
        taken = await conn.fetchrow(
            "SELECT id, sections, enrollments, taken_at FROM sis.schedule_snapshots WHERE occurrence_id = $1",
            ctx.occurrence_id,
        )
        pruned = await conn.fetchval(
            """WITH old AS (DELETE FROM sis.schedule_snapshots WHERE job_id = $1 AND id NOT IN (
                   SELECT id FROM sis.schedule_snapshots WHERE job_id = $1 ORDER BY taken_at DESC, id DESC LIMIT $2)
                 RETURNING 1) SELECT count(*) FROM old""",
            ctx.job_id, params.keep,
        )  # fmt: skip
    tally.processed = taken["sections"] + taken["enrollments"]
    tally.fact(f"snapshot {taken['id']}: {taken['sections']} sections, {taken['enrollments']} enrollments "
               f"of {', '.join(code for _, code in terms) or 'no terms'}")  # fmt: skip
    tally.fact(f"{pruned} older snapshots removed (keeping {params.keep})")
    tally.write(
        ctx,
        f"snapshot {taken['id']}: {taken['sections']} sections, {taken['enrollments']} enrollments",
    )


schedule_snapshot_type = JobType(
    name="housekeeping.schedule_snapshot",
    pool="integration",
    title="Master Schedule Snapshots",
    description=(
        "Takes a backup of the master schedule (the sections) and the student schedules (their "
        "enrollments) of the terms chosen, from which they can be restored; keeps the newest "
        "snapshots and removes older ones."
    ),
    params=SnapshotParams,
    run=schedule_snapshot,
)
