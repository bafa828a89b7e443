"""``hr.metlife_incoming``: the seeds' MetLife Incoming import.

Applies MetLife billing files to employee deductions under the chosen deduction code (MetLife
Supplemental Life). Running it once without a file creates the folders. The job acts only when
``MetLife.csv`` is in the ``metlife`` folder; once done without error the file is moved to
``metlife/received`` as ``MetLife-YYYYMMDDHHMMSS.csv``, and the results, with every record not
imported and why, are mailed to the given addresses. Amounts are set, not added, so a re-run of
the same file changes nothing.
"""

from __future__ import annotations

import asyncio
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated

import msgspec

from belltower.errors import InvalidInput
from belltower.fences import BatchPath
from belltower.jobtypes import JobContext, JobType

from .. import batchfiles
from ..employees import by_ein
from ..notify import recipients, send_results
from ..report import Tally, every

REQUIRED = ["employee_id", "premium"]

UPSERT = """
INSERT INTO sis.deductions AS d (person_id, code, amount, coverage, effective_on, source)
VALUES ($1, $2, $3, $4, $5, 'metlife')
ON CONFLICT (person_id, code) DO UPDATE
   SET amount = excluded.amount, coverage = excluded.coverage, effective_on = excluded.effective_on,
       source = excluded.source, updated_at = now()
 WHERE (d.amount, d.coverage, d.effective_on) IS DISTINCT FROM (excluded.amount, excluded.coverage, excluded.effective_on)
RETURNING (xmax = 0) AS inserted
"""


class MetLifeParams(msgspec.Struct, forbid_unknown_fields=True):
    deduction_code: Annotated[
        str, msgspec.Meta(description="Deduction code that identifies MetLife Supplemental Life")
    ] = "METLIFE_SUPP_LIFE"
    folder: Annotated[BatchPath, msgspec.Meta(description="Folder inside the batch folder")] = (
        "metlife"
    )
    file_name: Annotated[str, msgspec.Meta(pattern=r"^[^/\\]+$")] = "MetLife.csv"
    settle_s: Annotated[float, msgspec.Meta(ge=0)] = 10.0
    group: str | None = None
    notify: list[str] = []


def _money(text: str, column: str) -> Decimal | str:
    try:
        value = Decimal(text.replace("$", "").replace(",", "")) if text else None
    except InvalidOperation:
        return f"{column} {text!r} is not an amount"
    if value is None or value < 0:
        return f"{column} is missing or negative"
    return value


async def run(ctx: JobContext, params: MetLifeParams) -> None:
    base = Path(ctx.settings.batch_folder)
    folder = batchfiles.inside(base, params.folder, "param.folder")
    drop = batchfiles.within(base, folder / params.file_name, "param.file_name")
    await asyncio.to_thread((folder / "received").mkdir, parents=True, exist_ok=True)
    tally = Tally("MetLife incoming")
    if not await asyncio.to_thread(drop.is_file):
        tally.write(ctx, f"no {params.file_name} in {params.folder}; nothing to do")
        return
    if not await asyncio.to_thread(batchfiles.settled, drop, params.settle_s):
        tally.write(ctx, f"{params.file_name} is still being written; left for the next run")
        return
    pool = await ctx.db.pool()
    if not await pool.fetchval(
        "SELECT 1 FROM sis.deduction_codes WHERE code = $1", params.deduction_code
    ):
        known = [
            r["code"]
            for r in await pool.fetch("SELECT code FROM sis.deduction_codes ORDER BY code")
        ]
        raise InvalidInput("param.deduction_code", f"no deduction code {params.deduction_code!r}",
                           "one of " + ", ".join(known))  # fmt: skip
    rows = await asyncio.to_thread(batchfiles.read_csv, drop, REQUIRED)
    tally.fact(f"{params.file_name}: {len(rows)} rows, deduction code {params.deduction_code}")
    effective = ctx.scheduled_for.date()
    async with pool.acquire() as conn, conn.transaction():
        people = await by_ein(conn, [r["employee_id"] for r in rows])
        for line, row in enumerate(rows, 2):
            await every(ctx, line - 1, len(rows), "billing records")
            name = " ".join(filter(None, [row.get("first_name"), row.get("last_name")]))
            record = f"line {line}: {row['employee_id'] or '(no id)'} {name}".rstrip()
            premium = _money(row["premium"], "premium")
            coverage = _money(row.get("coverage", ""), "coverage") if row.get("coverage") else None
            if isinstance(premium, str) or isinstance(coverage, str):
                tally.fail(record, premium if isinstance(premium, str) else str(coverage))
                continue
            person = people.get(row["employee_id"])
            if person is None:
                reason = "no employee with this id in the SIS" if row["employee_id"] else "Unknown"
                tally.fail(record, reason)
                continue
            try:
                on = (
                    date.fromisoformat(row["effective_date"])
                    if row.get("effective_date")
                    else effective
                )
            except ValueError:
                tally.fail(record, f"effective_date {row['effective_date']!r} is not YYYY-MM-DD")
                continue
            changed = await conn.fetchval(
                UPSERT, person, params.deduction_code, premium, coverage, on
            )
            if changed is None:
                tally.skip(record, "deduction already at this amount")
            else:
                tally.ok(record, "deduction added" if changed else f"deduction set to {premium}")
    moved = await asyncio.to_thread(
        batchfiles.archive, drop, folder / "received", f"MetLife-{batchfiles.stamp()}.csv"
    )
    tally.fact(f"moved to received/{moved.name}")
    tally.write(ctx)
    await send_results(
        ctx, await recipients(ctx, params.group, params.notify), tally.summary, tally
    )


job_type = JobType(
    name="hr.metlife_incoming",
    pool="integration",
    title="MetLife Incoming",
    description=(
        "Imports billing files from MetLife and applies changes to employee deductions under the "
        "selected deduction code. Expects MetLife.csv in the metlife folder and ends without action "
        "if it is absent; once done it moves the file to metlife/received as MetLife-<timestamp>.csv "
        "and mails the results, listing records not imported and why."
    ),
    params=MetLifeParams,
    run=run,
)
