"""Housekeeping job types from the seeds: Daily Temp Table Cleanup, Reconcile Course Section
Seats and Purge Old Files."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from belltower.jobtypes import JobContext, JobType

from .. import batchfiles
from ..report import Tally

# -- Daily Temp Table Cleanup ---------------------------------------------------------------


class TempTableParams(msgspec.Struct, forbid_unknown_fields=True):
    keep_hours: Annotated[
        int, msgspec.Meta(ge=0, description="Keep entries younger than this; 0 empties the log")
    ] = 0
    batch_size: Annotated[int, msgspec.Meta(ge=100)] = 10_000


async def temp_table_cleanup(ctx: JobContext, params: TempTableParams) -> None:
    pool = await ctx.db.pool()
    cutoff = datetime.now(ctx.scheduled_for.tzinfo) - timedelta(hours=params.keep_hours)
    total = await pool.fetchval(
        "SELECT count(*) FROM sis.temp_table_log WHERE logged_at <= $1", cutoff
    )
    deleted = 0
    # Small batches keep locks short on a table the SIS writes to while the job runs.
    while True:
        done = await pool.fetchval(
            """WITH gone AS (DELETE FROM sis.temp_table_log WHERE id IN (
                   SELECT id FROM sis.temp_table_log WHERE logged_at <= $1 LIMIT $2)
                 RETURNING 1) SELECT count(*) FROM gone""",
            cutoff, params.batch_size,
        )  # fmt: skip
        deleted += done
        if done < params.batch_size:
            break
        await ctx.progress(deleted, total, f"deleted {deleted} of {total} temp table log entries")
    left = await pool.fetchval("SELECT count(*) FROM sis.temp_table_log")
    tally = Tally("Daily temp table cleanup", processed=deleted)
    tally.fact(f"{left} newer entries kept" if left else "the temp table log is empty")
    tally.write(ctx, f"deleted {deleted} temp table log entries, {left} kept")


temp_table_cleanup_type = JobType(
    name="housekeeping.temp_table_cleanup",
    pool="integration",
    title="Daily Temp Table Cleanup",
    description=(
        "Deletes the data from the table that tracks the SIS's temporary tables, which otherwise "
        "grows very large and takes up memory. Run it daily."
    ),
    params=TempTableParams,
    run=temp_table_cleanup,
)

# -- Reconcile Course Section Seats ---------------------------------------------------------

SEAT_STATUSES = ("enrolled", "completed")


class ReconcileParams(msgspec.Struct, forbid_unknown_fields=True):
    terms: Annotated[
        list[str], msgspec.Meta(description="Term codes; empty: terms not yet ended")
    ] = []
    dry_run: bool = False


async def reconcile_seats(ctx: JobContext, params: ReconcileParams) -> None:
    pool = await ctx.db.pool()
    tally = Tally("Reconcile course section seats")
    async with pool.acquire() as conn, conn.transaction():
        drift = await conn.fetch(
            f"""SELECT s.id, c.code || '-' || s.section_code || ' ' || t.code AS label, s.enrolled AS shown,
                       (SELECT count(*) FROM sis.enrollments e WHERE e.section_id = s.id
                           AND e.status = ANY($3::text[]))::int AS actual,
                       s.capacity
                  FROM sis.sections s JOIN sis.courses c ON c.id = s.course_id JOIN sis.terms t ON t.id = s.term_id
                 WHERE CASE WHEN cardinality($1::text[]) > 0 THEN t.code = ANY($1) ELSE t.ends_on >= $2 END
                 ORDER BY label {"" if params.dry_run else "FOR UPDATE OF s"}""",
            params.terms, ctx.scheduled_for.date(), list(SEAT_STATUSES),
        )  # fmt: skip
        for row in drift:
            if row["shown"] == row["actual"]:
                tally.ok()
                continue
            note = f"showed {row['shown']} enrolled, enrollments say {row['actual']} (capacity {row['capacity']})"
            if params.dry_run:
                tally.skip(row["label"], note + "; dry run, not fixed")
                continue
            await conn.execute(
                "UPDATE sis.sections SET enrolled = $2 WHERE id = $1", row["id"], row["actual"]
            )
            tally.ok(row["label"], note + "; fixed")
    drifted = len(tally.notes)
    if params.dry_run:
        summary = f"{len(drift)} sections checked, {drifted} drifted (dry run: not fixed)"
    else:
        summary = f"{len(drift)} sections checked, {drifted} seat counts fixed"
    tally.write(ctx, summary)


reconcile_seats_type = JobType(
    name="housekeeping.reconcile_seats",
    pool="integration",
    title="Reconcile Course Section Seats",
    description=(
        "Brings the number of enrolled seats shown for each course section up to date with the "
        "actual enrollments, reporting every section that had drifted. Run it hourly during "
        "registration."
    ),
    params=ReconcileParams,
    run=reconcile_seats,
)

# -- Purge Old Files ------------------------------------------------------------------------


class PurgeParams(msgspec.Struct, forbid_unknown_fields=True):
    retention_days: Annotated[int, msgspec.Meta(ge=1, description="Keep files this many days")] = (
        5 * 365
    )
    retain_by: Annotated[
        Literal["upload_date", "withdraw_date"],
        msgspec.Meta(
            description="Count retention from the upload, or from the student's withdrawal"
        ),
    ] = "upload_date"
    categories: tuple[Literal["A", "B"], ...] = ("B",)
    dry_run: bool = False


PURGE_SQL = """
SELECT d.id, d.file_path, d.uploaded_at, p.sis_id, h.person_id IS NOT NULL AS held,
       (SELECT max(e.withdrawn_on) FROM sis.enrollments e WHERE e.person_id = d.person_id) AS withdrawn_on,
       EXISTS (SELECT 1 FROM sis.enrollments e WHERE e.person_id = d.person_id AND e.status = 'enrolled') AS active
  FROM sis.documents d
  JOIN sis.people p ON p.id = d.person_id
  LEFT JOIN sis.document_holds h ON h.person_id = d.person_id
 WHERE d.category = ANY($1::text[])
 ORDER BY d.uploaded_at, d.id
"""


def _remove(path: Path) -> bool:
    """Delete a file; False when it was already gone."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


async def purge_old_files(ctx: JobContext, params: PurgeParams) -> None:
    base = Path(ctx.settings.batch_folder)
    pool = await ctx.db.pool()
    today = ctx.scheduled_for.date()
    cutoff = today - timedelta(days=params.retention_days)
    tally = Tally("Purge old files")
    rows = await pool.fetch(PURGE_SQL, list(params.categories))
    due = []
    for row in rows:
        if params.retain_by == "upload_date":
            old = row["uploaded_at"].date() < cutoff
        else:
            old = (
                row["withdrawn_on"] is not None
                and not row["active"]
                and row["withdrawn_on"] < cutoff
            )
        if not old:
            continue
        if row["held"]:
            tally.skip(row["file_path"], f"document hold on {row['sis_id']}; kept")
            continue
        due.append(row)
    for index, row in enumerate(due, 1):
        try:
            path = batchfiles.inside(base, row["file_path"], "sis.documents.file_path")
        except Exception as exc:
            tally.fail(row["file_path"], str(exc))
            continue
        if params.dry_run:
            tally.ok(row["file_path"], f"{row['sis_id']}: would be purged")
            continue
        try:
            existed = await asyncio.to_thread(_remove, path)
        except OSError as exc:
            tally.fail(row["file_path"], f"not deleted: {exc}")
            continue
        # The row goes once the file is gone, so a run repeated after a crash finishes the job.
        await pool.execute("DELETE FROM sis.documents WHERE id = $1", row["id"])
        tally.ok(
            row["file_path"],
            f"{row['sis_id']}: purged" + ("" if existed else " (file was already gone)"),
        )
        if index % 200 == 0:
            await ctx.progress(index, len(due), f"purged {index} of {len(due)} files")
    tally.fact(
        f"retention {params.retention_days} days by {params.retain_by.replace('_', ' ')} "
        f"(before {cutoff}), categories {', '.join(params.categories)}"
    )
    verb = "would purge" if params.dry_run else "purged"
    tally.write(
        ctx,
        f"{verb} {tally.processed} files, {tally.skipped} kept on document hold, {tally.failed} failed",
    )


purge_old_files_type = JobType(
    name="files.purge_old_files",
    pool="integration",
    title="Purge Old Files",
    description=(
        "Deletes uploaded student files of the chosen categories (Category B by default) once the "
        "retention period has passed, counted from the upload date or the withdrawal date. Files "
        "of students with a Document Hold are never purged."
    ),
    params=PurgeParams,
    run=purge_old_files,
)
