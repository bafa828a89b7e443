"""``people.import_names``: the seeds' Import Names.

Creates new name records from a CSV dropped in the batch folder (``import_names/names.csv``:
first_name, last_name, email, and optionally sis_id, status, birth_date, phone), then renames
the file with a timestamp into ``import_names/done`` and tells the chosen group the results.
A person already in the SIS (same SIS id, or same e-mail address) is skipped, so importing the
same file twice creates no duplicates.
"""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from belltower import sis
from belltower.fences import BatchPath
from belltower.jobtypes import JobContext, JobType

from .. import batchfiles
from ..importing import generated_sis_id
from ..notify import recipients, send_results
from ..report import Tally, every

Status = Literal["student", "faculty", "staff", "prospect", "alumni"]
REQUIRED = ["first_name", "last_name", "email"]


class ImportNamesParams(msgspec.Struct, forbid_unknown_fields=True):
    folder: Annotated[BatchPath, msgspec.Meta(description="Folder inside the batch folder")] = (
        "import_names"
    )
    file_name: Annotated[str, msgspec.Meta(pattern=r"^[^/\\]+$")] = "names.csv"
    default_status: Status = "prospect"
    settle_s: Annotated[float, msgspec.Meta(ge=0)] = 10.0
    group: str | None = None
    notify: list[str] = []


async def run(ctx: JobContext, params: ImportNamesParams) -> None:
    base = Path(ctx.settings.batch_folder)
    folder = batchfiles.inside(base, params.folder, "param.folder")
    drop = batchfiles.within(base, folder / params.file_name, "param.file_name")
    tally = Tally("Import names")
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    if not await asyncio.to_thread(drop.is_file):
        tally.write(ctx, f"no {params.file_name} in {params.folder}; nothing to do")
        return
    if not await asyncio.to_thread(batchfiles.settled, drop, params.settle_s):
        tally.write(ctx, f"{params.file_name} is still being written; left for the next run")
        return
    rows = await asyncio.to_thread(batchfiles.read_csv, drop, REQUIRED)
    pool = await ctx.db.pool()
    async with pool.acquire() as conn, conn.transaction():
        for line, row in enumerate(rows, 2):
            await every(ctx, line - 1, len(rows), "names")
            email = row["email"].strip()
            record = f"line {line}: {row['first_name']} {row['last_name']} <{email}>"
            if not row["first_name"] or not row["last_name"] or "@" not in email:
                tally.fail(record, "first_name, last_name and a valid email are required")
                continue
            status = row.get("status") or params.default_status
            if status not in sis.PERSON_STATUSES:
                tally.fail(
                    record, f"status {status!r} is not one of {', '.join(sis.PERSON_STATUSES)}"
                )
                continue
            try:
                born = date.fromisoformat(row["birth_date"]) if row.get("birth_date") else None
            except ValueError:
                tally.fail(record, f"birth_date {row['birth_date']!r} is not YYYY-MM-DD")
                continue
            sis_id = row.get("sis_id") or generated_sis_id(email)
            existing = await sis.existing_person(conn, sis_id, email)
            if existing is not None:
                tally.skip(record, f"already in the SIS as {existing}")
                continue
            await sis.add_person(
                conn, sis_id, row["first_name"], row["last_name"], status=status, email=email,
                starts_on=ctx.scheduled_for.date(), birth_date=born, phone=row.get("phone") or "",
            )  # fmt: skip
            tally.ok(record, f"created {sis_id} ({status})")
    moved = await asyncio.to_thread(
        batchfiles.archive, drop, folder / "done", f"{drop.stem}_{batchfiles.stamp()}{drop.suffix}"
    )
    tally.fact(f"moved to done/{moved.name}")
    tally.write(ctx)
    await send_results(
        ctx, await recipients(ctx, params.group, params.notify), tally.summary, tally
    )


job_type = JobType(
    name="people.import_names",
    pool="integration",
    title="Import Names",
    description=(
        "Brings outside user data into the SIS and creates new name records from a CSV file in the "
        "batch folder, then renames the file with a timestamp and notifies the selected group of "
        "the results. People already in the SIS are skipped, so a re-run creates no duplicates."
    ),
    params=ImportNamesParams,
    run=run,
)
