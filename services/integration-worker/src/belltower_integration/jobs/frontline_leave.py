"""``hr.frontline_leave``: the seeds' Frontline Leave import.

Imports leave requests and substitute fulfilments from Frontline Absence Management. With an SFTP
server configured, the job fetches ``/FromAesop/Frontline_Leave.csv`` and renames it on the server
at once to ``Leave_YYYYMMDDHHMMSS.csv``; the batch folder's ``FromAesop`` works as a local drop
too. The job acts only when ``Frontline_Leave.csv`` is there; once processed, the file is renamed
``Leave_YYYYMMDDHHMMSS.csv``, so later runs do nothing until Frontline drops a new one (rename it
back to process it again). Leave is keyed by Frontline's absence id: a re-run updates what it
imported before, never adds a second copy, and never changes leave that payroll has paid.
Rows for employees not in the SIS yet wait in ``frontline_retries.csv`` and are retried each run.
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
from ..secrets import read_secret
from ..sftp import SftpTarget, fetch_and_rename

COLUMNS = [
    "absence_id",
    "employee_id",
    "date",
    "leave_type",
    "hours",
    "reason",
    "substitute_id",
    "substitute_name",
]
REQUIRED = COLUMNS[:5]
RETRIES = "frontline_retries.csv"

UPSERT = """
INSERT INTO sis.leave_requests AS l
       (external_id, person_id, leave_on, leave_type, hours, reason, substitute_person_id, substitute_name)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (external_id) DO UPDATE
   SET person_id = excluded.person_id, leave_on = excluded.leave_on, leave_type = excluded.leave_type,
       hours = excluded.hours, reason = excluded.reason,
       substitute_person_id = CASE WHEN $9 THEN l.substitute_person_id ELSE excluded.substitute_person_id END,
       substitute_name = CASE WHEN $9 THEN l.substitute_name ELSE excluded.substitute_name END,
       updated_at = now()
 WHERE l.paid_at IS NULL
RETURNING (xmax = 0) AS inserted
"""


class FrontlineParams(msgspec.Struct, forbid_unknown_fields=True):
    folder: Annotated[
        BatchPath, msgspec.Meta(description="Drop folder inside the batch folder")
    ] = "FromAesop"
    file_name: Annotated[str, msgspec.Meta(pattern=r"^[^/\\]+$")] = "Frontline_Leave.csv"
    skip_substitutes: Annotated[
        bool, msgspec.Meta(description="Skip processing of substitutes")
    ] = False
    settle_s: Annotated[
        float,
        msgspec.Meta(ge=0, description="Leave a file modified this recently for the next run"),
    ] = 10.0
    group: str | None = None
    notify: list[str] = []
    sftp_host: Annotated[
        str | None,
        msgspec.Meta(
            description="Fetch the file from this SFTP server first (else the batch folder only)"
        ),
    ] = None
    sftp_port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 22
    sftp_username: str | None = None
    sftp_remote_dir: str = "/FromAesop"
    sftp_password_secret: str | None = None
    sftp_key_secret: str | None = None
    sftp_known_hosts_secret: str = "sftp-known-hosts"


def _sftp_target(params: FrontlineParams) -> SftpTarget:
    if not params.sftp_username:
        raise InvalidInput(
            "param.sftp_username", "is required with sftp_host", "the SFTP user name"
        )
    if not params.sftp_password_secret and not params.sftp_key_secret:
        raise InvalidInput(
            "param.sftp_password_secret", "neither a password nor a key secret is given",
            "sftp_password_secret or sftp_key_secret naming a secret",
        )  # fmt: skip
    assert params.sftp_host is not None
    return SftpTarget(
        host=params.sftp_host,
        port=params.sftp_port,
        username=params.sftp_username,
        remote_dir=params.sftp_remote_dir,
        known_hosts=read_secret(params.sftp_known_hosts_secret, "param.sftp_known_hosts_secret"),
        password=read_secret(params.sftp_password_secret, "param.sftp_password_secret")
        if params.sftp_password_secret
        else None,
        private_key=read_secret(params.sftp_key_secret, "param.sftp_key_secret")
        if params.sftp_key_secret
        else None,
    )


def _key(row: dict[str, str]) -> str:
    return f"{row.get('absence_id', '')}:{row.get('date', '')}"


def _parse(row: dict[str, str]) -> tuple[date, Decimal] | str:
    try:
        day = date.fromisoformat(row["date"])
    except ValueError:
        return f"date {row['date']!r} is not YYYY-MM-DD"
    try:
        hours = Decimal(row["hours"])
    except InvalidOperation:
        return f"hours {row['hours']!r} is not a number"
    if hours < 0 or not row["absence_id"] or not row["leave_type"]:
        return "absence_id, leave_type and non-negative hours are required"
    return day, hours


async def run(ctx: JobContext, params: FrontlineParams) -> None:
    base = Path(ctx.settings.batch_folder)
    folder = batchfiles.inside(base, params.folder, "param.folder")
    drop = batchfiles.within(base, folder / params.file_name, "param.file_name")
    retries = batchfiles.RetriesFile(folder / RETRIES, COLUMNS, _key)
    tally = Tally("Frontline leave import")
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    waiting = await asyncio.to_thread(retries.load)
    present = await asyncio.to_thread(drop.is_file)
    fetched = False
    if params.sftp_host and not present:
        # The seeds' flow: take the file from the server and rename it there at once, so the
        # next run finds nothing until Frontline drops a new one.
        renamed = f"Leave_{batchfiles.stamp()}.csv"
        fetched = present = await fetch_and_rename(
            _sftp_target(params), params.file_name, drop, renamed
        )
        if fetched:
            tally.fact(
                f"fetched {params.sftp_remote_dir}/{params.file_name} from {params.sftp_host}, renamed there to {renamed}"
            )
    if (
        present
        and not fetched
        and not await asyncio.to_thread(batchfiles.settled, drop, params.settle_s)
    ):
        tally.fact(
            f"{params.file_name} was modified less than {params.settle_s:g}s ago; left for the next run"
        )
        present = False
    rows: list[dict[str, str]] = []
    if present:
        rows = await asyncio.to_thread(batchfiles.read_csv, drop, REQUIRED)
        tally.fact(f"{params.file_name}: {len(rows)} rows")
    if waiting:
        tally.fact(f"{RETRIES}: {len(waiting)} rows from earlier runs retried")
    if not present and not waiting:
        busy = await asyncio.to_thread(drop.is_file)
        tally.write(
            ctx,
            f"{params.file_name} is still arriving; left for the next run"
            if busy
            else f"no {params.file_name} in {params.folder}; nothing to do",
        )
        return
    # Rows in the new file win over an older copy of the same absence waiting for a retry.
    merged = {_key(r): r for r in waiting} | {_key(r): r for r in rows}
    pool = await ctx.db.pool()
    still_waiting: list[dict[str, str]] = []
    async with pool.acquire() as conn, conn.transaction():
        people = await by_ein(
            conn,
            [r["employee_id"] for r in merged.values()]
            + [r.get("substitute_id", "") for r in merged.values()],
        )
        for index, (key, row) in enumerate(merged.items(), 1):
            await every(ctx, index, len(merged), "leave records")
            parsed = _parse(row)
            if isinstance(parsed, str):
                tally.fail(key, parsed)
                continue
            person = people.get(row["employee_id"])
            if person is None:
                tally.skip(
                    key, f"no employee with HR number {row['employee_id']!r} yet; kept for retry"
                )
                still_waiting.append(row)
                continue
            day, hours = parsed
            sub_id = None if params.skip_substitutes else people.get(row.get("substitute_id", ""))
            sub_name = None if params.skip_substitutes else (row.get("substitute_name") or None)
            inserted = await conn.fetchval(
                UPSERT, key, person, day, row["leave_type"], hours, row.get("reason", ""),
                sub_id, sub_name, params.skip_substitutes,
            )  # fmt: skip
            if inserted is None:
                tally.skip(key, "already paid by payroll; not changed")
            else:
                tally.ok(key, "added" if inserted else "updated")
    await asyncio.to_thread(retries.save, still_waiting)
    if present:
        moved = await asyncio.to_thread(
            batchfiles.archive, drop, folder, f"Leave_{batchfiles.stamp()}.csv"
        )
        tally.fact(f"renamed to {moved.name}")
    tally.write(ctx)
    await send_results(
        ctx, await recipients(ctx, params.group, params.notify), tally.summary, tally
    )


job_type = JobType(
    name="hr.frontline_leave",
    pool="integration",
    title="Frontline Leave",
    description=(
        "Imports leave requests and substitute fulfillments from Frontline Absence Management "
        "(from its SFTP server or the batch folder). Processes only when Frontline_Leave.csv is "
        "present, then renames it Leave_YYYYMMDDHHMMSS.csv; "
        "never creates leave that already exists and never changes leave already paid."
    ),
    params=FrontlineParams,
    run=run,
)
