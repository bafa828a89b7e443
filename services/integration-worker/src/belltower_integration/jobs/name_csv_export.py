"""``exports.name_csv``: the seeds' Name CSV Export.

Writes a CSV of the First Name, Last Name, Email Address and Cell Phone Number of every person
with a Student or Faculty status (primary or any other current one, from the status history)
to the batch folder, atomically: the file under its final name
is always complete, and a repeated run rewrites it whole.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from belltower.fences import BatchPath
from belltower.jobtypes import JobContext, JobType

from .. import batchfiles
from ..report import Tally

Status = Literal["student", "faculty", "staff", "prospect", "alumni"]

HEADER = ["First Name", "Last Name", "Email Address", "Cell Phone Number"]

SQL = """
SELECT p.sis_id, p.first_name, p.last_name,
       (SELECT address FROM sis.emails e WHERE e.person_id = p.id ORDER BY e.is_primary DESC, e.id LIMIT 1) AS email,
       (SELECT number FROM sis.phones f WHERE f.person_id = p.id AND f.kind = 'cell'
         ORDER BY f.is_primary DESC, f.id LIMIT 1) AS cell
  FROM sis.people p
 WHERE p.status = ANY($1::text[])
    OR EXISTS (SELECT 1 FROM sis.person_statuses s
                WHERE s.person_id = p.id AND s.status = ANY($1::text[])
                  AND s.starts_on <= current_date AND (s.ends_on IS NULL OR s.ends_on >= current_date))
 ORDER BY p.last_name, p.first_name, p.sis_id
"""


class NameCsvParams(msgspec.Struct, forbid_unknown_fields=True):
    statuses: Annotated[tuple[Status, ...], msgspec.Meta(min_length=1)] = ("student", "faculty")
    folder: Annotated[BatchPath, msgspec.Meta(description="Folder inside the batch folder")] = (
        "exports"
    )
    file_name: Annotated[str, msgspec.Meta(pattern=r"^[^/\\]+$")] = "NameExport.csv"


async def run(ctx: JobContext, params: NameCsvParams) -> None:
    base = Path(ctx.settings.batch_folder)
    target = batchfiles.inside(base, params.folder, "param.folder") / params.file_name
    pool = await ctx.db.pool()
    rows = await pool.fetch(SQL, list(params.statuses))
    tally = Tally("Name CSV export")
    out = []
    unreachable = 0
    for r in rows:
        unreachable += not r["email"] and not r["cell"]
        out.append([r["first_name"], r["last_name"], r["email"], r["cell"]])
        tally.ok()
    if unreachable:
        tally.fact(f"{unreachable} of them have neither an e-mail address nor a cell phone")
    size = await asyncio.to_thread(batchfiles.write_csv, target, HEADER, out)
    tally.fact(f"wrote {size} rows to {target.relative_to(base)}")
    tally.write(
        ctx,
        f"{params.folder}/{params.file_name}: {tally.processed} people, {tally.skipped} skipped",
    )


job_type = JobType(
    name="exports.name_csv",
    pool="integration",
    title="Name CSV Export",
    description=(
        "Creates a .csv file that contains the First Name, Last Name, Email Address, and Cell Phone "
        "Number of every user with a Student or Faculty status, in the batch folder."
    ),
    params=NameCsvParams,
    run=run,
)
