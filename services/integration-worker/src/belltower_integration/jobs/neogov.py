"""``hr.neogov_new_hires`` and ``hr.neogov_user_data``: the seeds' NeoGov integration.

New hires: every file in the ``neogov`` folder (pipe separated, header
``ein|first_name|last_name|email|hire_date|position|department``) adds employees: a staff person
with the EIN as HR number. An EIN already in the SIS is never overwritten, so a re-run adds no one.

User data: every file in ``neogov/userdata`` (``ein|username|email``) updates the user name and
e-mail of existing employees, only with non-empty values, and never creates anyone. An EIN not in
the SIS yet goes to ``neogov/userdata/neogov_retries.csv`` and is retried on each run until the
new hire arrives; a record that succeeds leaves the retries file.

Processed files are copied to ``neogov/done`` as ``neogov_newhires_YYYYMMDDHHMMSS.csv`` /
``neogov_userdata_YYYYMMDDHHMMSS.csv`` and removed from the drop folder.
"""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path
from typing import Annotated

import asyncpg
import msgspec

from belltower.fences import BatchPath
from belltower.jobtypes import JobContext, JobType

from .. import batchfiles
from ..employees import HR_SYSTEM, by_ein
from ..notify import recipients, send_results
from ..report import Tally, every

RETRIES = "neogov_retries.csv"
HIRE_COLUMNS = ["ein", "first_name", "last_name", "email", "hire_date", "position", "department"]
USER_COLUMNS = ["ein", "username", "email"]


class NeoGovParams(msgspec.Struct, forbid_unknown_fields=True):
    folder: Annotated[
        BatchPath, msgspec.Meta(description="NeoGov folder inside the batch folder")
    ] = "neogov"
    settle_s: Annotated[
        float, msgspec.Meta(ge=0, description="Leave files modified this recently for the next run")
    ] = 10.0
    group: str | None = None
    notify: list[str] = []


def _drops(folder: Path, settle_s: float) -> tuple[list[Path], list[Path]]:
    """Files ready to process, and files still being written (left for the next run)."""
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        return [], []
    files = sorted(
        batchfiles.confined(
            folder,
            (
                p
                for p in folder.iterdir()
                if p.is_file() and p.name != RETRIES and not p.name.startswith(".")
            ),
        )
    )
    ready = [p for p in files if batchfiles.settled(p, settle_s)]
    return ready, [p for p in files if p not in ready]


def _archive_all(files: list[Path], done: Path, prefix: str) -> list[str]:
    stamp = batchfiles.stamp()
    return [batchfiles.archive(p, done, f"{prefix}_{stamp}.csv").name for p in files]


async def _read_all(files: list[Path], required: list[str]) -> list[tuple[str, dict[str, str]]]:
    out = []
    for path in files:
        for row in await asyncio.to_thread(batchfiles.read_csv, path, required, "|"):
            out.append((path.name, row))
    return out


async def new_hires(ctx: JobContext, params: NeoGovParams) -> None:
    base = Path(ctx.settings.batch_folder)
    folder = batchfiles.inside(base, params.folder, "param.folder")
    ready, busy = await asyncio.to_thread(_drops, folder, params.settle_s)
    tally = Tally("NeoGov new hires")
    for path in busy:
        tally.fact(f"{path.name} is still being written; left for the next run")
    if not ready:
        tally.write(ctx, f"no new-hire file in {params.folder}; nothing to do")
        return
    rows = await _read_all(ready, ["ein", "first_name", "last_name"])
    pool = await ctx.db.pool()
    async with pool.acquire() as conn, conn.transaction():
        existing = await by_ein(conn, [r["ein"] for _, r in rows])
        for index, (name, row) in enumerate(rows, 1):
            await every(ctx, index, len(rows), "new hires")
            ein = row["ein"]
            record = f"{name}: EIN {ein}"
            if not ein or not row["first_name"] or not row["last_name"]:
                tally.fail(record, "ein, first_name and last_name are required")
                continue
            if ein in existing:
                tally.skip(record, "already an employee; not overwritten")
                continue
            try:
                hired = date.fromisoformat(row["hire_date"]) if row.get("hire_date") else None
            except ValueError:
                tally.fail(record, f"hire_date {row['hire_date']!r} is not YYYY-MM-DD")
                continue
            person = await conn.fetchval(
                """INSERT INTO sis.people (sis_id, first_name, last_name, status)
                   VALUES ($1, $2, $3, 'staff') ON CONFLICT (sis_id) DO NOTHING RETURNING id""",
                f"HR{ein}", row["first_name"], row["last_name"],
            )  # fmt: skip
            if person is None:
                tally.fail(record, f"SIS id HR{ein} is taken by someone without this EIN")
                continue
            await conn.execute(
                "INSERT INTO sis.person_external_ids (person_id, system, value) VALUES ($1, $2, $3)",
                person, HR_SYSTEM, ein,
            )  # fmt: skip
            await conn.execute(
                "INSERT INTO sis.person_statuses (person_id, status, starts_on) VALUES ($1, 'staff', $2)",
                person, hired or ctx.scheduled_for.date(),
            )  # fmt: skip
            if row.get("email"):
                await conn.execute(
                    "INSERT INTO sis.emails (person_id, kind, address, is_primary) VALUES ($1, 'work', $2, true)",
                    person, row["email"],
                )  # fmt: skip
            await conn.execute(
                "INSERT INTO sis.employees (person_id, hire_date, position, department, source) "
                "VALUES ($1, $2, $3, $4, 'neogov')",
                person, hired, row.get("position", ""), row.get("department", ""),
            )  # fmt: skip
            existing[ein] = person
            tally.ok(record, f"added {row['first_name']} {row['last_name']}")
    names = await asyncio.to_thread(_archive_all, ready, folder / "done", "neogov_newhires")
    tally.fact("processed files moved to done/: " + ", ".join(names))
    tally.write(ctx)
    await send_results(
        ctx, await recipients(ctx, params.group, params.notify), tally.summary, tally
    )


async def _update_user(conn: asyncpg.Connection, person: int, row: dict[str, str]) -> str:
    changed = []
    if row.get("username"):
        taken = await conn.fetchval(
            "SELECT id FROM sis.people WHERE login_id = $1 AND id <> $2", row["username"], person
        )
        if taken is not None:
            raise ValueError(f"user name {row['username']!r} belongs to someone else")
        if await conn.fetchval(
            "UPDATE sis.people SET login_id = $2, updated_at = now() WHERE id = $1 "
            "AND login_id IS DISTINCT FROM $2 RETURNING id",
            person, row["username"],
        ):  # fmt: skip
            changed.append("user name")
    if row.get("email"):
        current = await conn.fetchrow(
            "SELECT id, address FROM sis.emails WHERE person_id = $1 AND is_primary", person
        )
        if current is None:
            await conn.execute(
                "INSERT INTO sis.emails (person_id, kind, address, is_primary) VALUES ($1, 'work', $2, true)",
                person, row["email"],
            )  # fmt: skip
            changed.append("e-mail")
        elif current["address"] != row["email"]:
            await conn.execute(
                "UPDATE sis.emails SET address = $2 WHERE id = $1", current["id"], row["email"]
            )
            changed.append("e-mail")
    return ("updated " + " and ".join(changed)) if changed else "already up to date"


async def user_data(ctx: JobContext, params: NeoGovParams) -> None:
    base = Path(ctx.settings.batch_folder)
    neogov = batchfiles.inside(base, params.folder, "param.folder")
    folder = neogov / "userdata"
    retries = batchfiles.RetriesFile(folder / RETRIES, USER_COLUMNS, "ein", "|")
    ready, busy = await asyncio.to_thread(_drops, folder, params.settle_s)
    waiting = await asyncio.to_thread(retries.load)
    tally = Tally("NeoGov user data")
    for path in busy:
        tally.fact(f"{path.name} is still being written; left for the next run")
    if not ready and not waiting:
        tally.write(ctx, f"no user-data file in {params.folder}/userdata; nothing to do")
        return
    rows = [(RETRIES, r) for r in waiting] + await _read_all(ready, USER_COLUMNS)
    if waiting:
        tally.fact(f"{len(waiting)} records retried from {RETRIES}")
    latest: dict[str, tuple[str, dict[str, str]]] = {}
    for name, row in rows:
        latest[row["ein"]] = (name, row)  # a newer file's record replaces a waiting one
    still_waiting = []
    pool = await ctx.db.pool()
    async with pool.acquire() as conn, conn.transaction():
        people = await by_ein(conn, list(latest))
        for index, (ein, (name, row)) in enumerate(latest.items(), 1):
            await every(ctx, index, len(latest), "user records")
            record = f"{name}: EIN {ein}"
            person = people.get(ein)
            if person is None:
                still_waiting.append(row)
                tally.skip(
                    record, f"no employee with EIN {ein} yet; kept in {RETRIES} for the next run"
                )
                continue
            try:
                async with conn.transaction():
                    tally.ok(record, await _update_user(conn, person, row))
            except (ValueError, asyncpg.UniqueViolationError) as exc:
                tally.fail(record, str(exc))
    await asyncio.to_thread(retries.save, still_waiting)
    if ready:
        names = await asyncio.to_thread(_archive_all, ready, neogov / "done", "neogov_userdata")
        tally.fact("processed files moved to done/: " + ", ".join(names))
    tally.write(ctx)
    await send_results(
        ctx, await recipients(ctx, params.group, params.notify), tally.summary, tally
    )


new_hires_type = JobType(
    name="hr.neogov_new_hires",
    pool="integration",
    title="NeoGov New Hires",
    description=(
        "Creates new employees from the NeoGov new-hire files (pipe separated) in the NeoGov folder. "
        "Existing employees are never overwritten, so running it again adds no one; processed files "
        "are copied to neogov/done with a timestamp."
    ),
    params=NeoGovParams,
    run=new_hires,
)

user_data_type = JobType(
    name="hr.neogov_user_data",
    pool="integration",
    title="NeoGov User Data",
    description=(
        "Updates the user name and e-mail of existing employees from the files in neogov/userdata "
        "(ein|username|email); only updates, never clears or creates. EINs not found yet are kept "
        "in neogov_retries.csv and retried on the next run."
    ),
    params=NeoGovParams,
    run=user_data,
)
