"""``system.daily_maintenance``: the seeds' Daily Maintenance, deleting execution history past retention.

Each job keeps its history for its own number of days (``keep_history_days``; none = forever).
History of jobs that no longer exist is kept ``orphan_keep_days``. The scheduler's occurrence
ledger is trimmed too. The job asks the owners to delete: the scheduler for the retention of each
job and the ledger, history for the runs.
"""

from __future__ import annotations

import html
from typing import Annotated

import msgspec

from belltower import operations as ops
from belltower.api import LedgerPurgeRequest, PurgeRequest
from belltower.jobtypes import JobContext, JobType, counted
from belltower.rpc import all_jobs

Days = Annotated[int, msgspec.Meta(ge=1)]


class MaintenanceParams(msgspec.Struct, forbid_unknown_fields=True):
    orphan_keep_days: Days | None = 90
    ledger_keep_days: Days = 90
    dry_run: bool = False


async def run(ctx: JobContext, params: MaintenanceParams) -> None:
    jobs = await all_jobs(ctx.api)
    titles = {j.id: j.title for j in jobs}
    keep = {j.id: j.keep_history_days for j in jobs}
    await ctx.progress(1, 3, "deleting execution history past each job's retention")
    result = await ctx.api.call(
        ops.RUNS_PURGE,
        PurgeRequest(keep_days=keep, default_days=params.orphan_keep_days, dry_run=params.dry_run),
    )
    await ctx.progress(2, 3, "trimming the occurrence ledger")
    ledger = await ctx.api.call(
        ops.LEDGER_PURGE,
        LedgerPurgeRequest(older_than_days=params.ledger_keep_days, dry_run=params.dry_run),
    )
    verb = "would delete" if params.dry_run else "deleted"
    ctx.output.line(
        f"{verb} {counted(result.deleted, 'run')} past retention, "
        f"{counted(ledger.deleted, 'ledger entry', 'ledger entries')} older than {counted(params.ledger_keep_days, 'day')}"
    )
    rows = []
    for job_id, count in sorted(result.by_job.items(), key=lambda kv: -kv[1]):
        title = titles.get(job_id, "(deleted job)")
        days = keep.get(job_id, params.orphan_keep_days)
        kept = "forever" if days is None else f"{days} days"
        ctx.output.line(f"  {count:>7}  {title}  [{job_id}]  kept {kept}")
        rows.append(f"<tr><td>{html.escape(title)}</td><td>{count}</td><td>{kept}</td></tr>")
    ctx.output.html(
        f"<p>{verb.capitalize()} <strong>{result.deleted}</strong> {'run' if result.deleted == 1 else 'runs'} and "
        f"{counted(ledger.deleted, 'ledger entry', 'ledger entries')}.</p>"
        + (
            "<table><thead><tr><th>Job</th><th>Runs</th><th>Kept</th></tr></thead><tbody>"
            + "".join(rows)
            + "</tbody></table>"
            if rows
            else ""
        )
    )
    ctx.output.summary = (
        f"{verb} {counted(result.deleted, 'run')} of {counted(len(result.by_job), 'job')} and "
        f"{counted(ledger.deleted, 'ledger entry', 'ledger entries')}"
    )
    await ctx.progress(3, 3, "done")


job_type = JobType(
    name="system.daily_maintenance",
    pool="integration",
    title="Daily Maintenance",
    description="Deletes execution history older than each job's 'store execution history for' setting, and old ledger entries.",
    params=MaintenanceParams,
    run=run,
)
