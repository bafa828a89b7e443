"""``exports.schoolmessenger``: the seeds' SchoolMessenger export.

Writes the SIS ID, Last Name, First Name, Email Address, Phone Number and Cell Phone Number of
every student, faculty member and staff member to a file in the batch folder (atomically), for
SchoolMessenger to pick up, and tells the selected group that the process has run.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from belltower.fences import BatchPath
from belltower.jobtypes import JobContext, JobType

from .. import batchfiles
from ..notify import recipients, send_results
from ..report import Tally

Status = Literal["student", "faculty", "staff", "prospect", "alumni"]

HEADER = ["SIS ID", "Last Name", "First Name", "Email Address", "Phone Number", "Cell Phone Number"]

SQL = """
SELECT p.sis_id, p.last_name, p.first_name, p.status,
       (SELECT address FROM sis.emails e WHERE e.person_id = p.id ORDER BY e.is_primary DESC, e.id LIMIT 1) AS email,
       (SELECT number FROM sis.phones f WHERE f.person_id = p.id AND f.kind IN ('home', 'work')
         ORDER BY f.kind = 'home' DESC, f.is_primary DESC, f.id LIMIT 1) AS phone,
       (SELECT number FROM sis.phones f WHERE f.person_id = p.id AND f.kind = 'cell'
         ORDER BY f.is_primary DESC, f.id LIMIT 1) AS cell
  FROM sis.people p
 WHERE p.status = ANY($1::text[])
    OR EXISTS (SELECT 1 FROM sis.person_statuses s
                WHERE s.person_id = p.id AND s.status = ANY($1::text[])
                  AND s.starts_on <= current_date AND (s.ends_on IS NULL OR s.ends_on >= current_date))
 ORDER BY p.sis_id
"""


class SchoolMessengerParams(msgspec.Struct, forbid_unknown_fields=True):
    statuses: Annotated[tuple[Status, ...], msgspec.Meta(min_length=1)] = (
        "student",
        "faculty",
        "staff",
    )
    folder: Annotated[BatchPath, msgspec.Meta(description="Folder inside the batch folder")] = (
        "exports"
    )
    file_name: Annotated[str, msgspec.Meta(pattern=r"^[^/\\]+$")] = "schoolmessenger.csv"
    group: Annotated[
        str | None, msgspec.Meta(description="Notification group told that the export ran")
    ] = None
    notify: list[str] = []


async def run(ctx: JobContext, params: SchoolMessengerParams) -> None:
    base = Path(ctx.settings.batch_folder)
    target = batchfiles.inside(base, params.folder, "param.folder") / params.file_name
    to = await recipients(ctx, params.group, params.notify)
    pool = await ctx.db.pool()
    rows = await pool.fetch(SQL, list(params.statuses))
    tally = Tally("SchoolMessenger export")
    by_status: dict[str, int] = {}
    out = []
    unreachable = 0
    for r in rows:
        unreachable += not (r["email"] or r["phone"] or r["cell"])
        out.append(
            [r["sis_id"], r["last_name"], r["first_name"], r["email"], r["phone"], r["cell"]]
        )
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
        tally.ok()
    await asyncio.to_thread(batchfiles.write_csv, target, HEADER, out)
    if unreachable:
        tally.fact(f"{unreachable} of them have no e-mail address and no phone number")
    tally.fact(
        f"wrote {target.relative_to(base)}: "
        + ", ".join(f"{n} {s}" for s, n in sorted(by_status.items()))
    )
    tally.write(
        ctx,
        f"{params.folder}/{params.file_name}: {tally.processed} people, {tally.skipped} skipped",
    )
    await send_results(ctx, to, f"SchoolMessenger export: {tally.processed} people written", tally)


job_type = JobType(
    name="exports.schoolmessenger",
    pool="integration",
    title="SchoolMessenger",
    description=(
        "Creates a file in the batch folder with the SIS ID, Last Name, First Name, Email Address, "
        "Phone Number, and Cell Phone Number of every student, faculty member, and staff member, "
        "to be sent to SchoolMessenger, and notifies the selected group that the process has run."
    ),
    params=SchoolMessengerParams,
    run=run,
)
