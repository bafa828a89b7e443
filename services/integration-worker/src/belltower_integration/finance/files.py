"""How the billing and aid jobs write and read partner files, and remember them.

Every file lands in ``sis.finance_files``: an export written by an occurrence is not written again
by a re-run of that occurrence (the file may already have been sent); an import is recorded by
its content's SHA-256 in the same transaction as its rows, so the same file dropped twice is
imported once; an export "since the last one" starts where the job's previous file ended.
Imports validate every row before writing any, and write one file in one transaction.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

from belltower.errors import JobFailed
from belltower.jobtypes import JobContext

from .. import batchfiles
from ..report import Tally
from .layout import Layout, LayoutError

MAX_FILE_BYTES = 50 * 1024 * 1024
PROBLEMS_SHOWN = 50


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def written_by_occurrence(
    conn: asyncpg.Connection | asyncpg.Pool, ctx: JobContext, kind: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT file_name, rows, status, created_at FROM sis.finance_files
            WHERE job_id = $1 AND occurrence_id = $2 AND kind = $3 AND direction = 'export'
            ORDER BY id DESC LIMIT 1""",
        ctx.job_id, ctx.occurrence_id, kind,
    )  # fmt: skip


async def last_window_end(pool: asyncpg.Pool, job_id: str, kind: str) -> datetime | None:
    """Where the job's latest export ended: the next one starts there."""
    return await pool.fetchval(
        """SELECT max(window_to) FROM sis.finance_files
            WHERE job_id = $1 AND kind = $2 AND direction = 'export'""",
        job_id, kind,
    )  # fmt: skip


async def record(
    conn: asyncpg.Connection | asyncpg.Pool,
    ctx: JobContext,
    layout: Layout,
    direction: str,
    file_name: str,
    sha256: str,
    rows: int,
    *,
    window: tuple[datetime | None, datetime | None] = (None, None),
    status: str = "done",
    detail: str = "",
) -> None:
    await conn.execute(
        """INSERT INTO sis.finance_files (job_id, occurrence_id, partner, kind, direction, file_name,
                                          sha256, rows, window_from, window_to, status, detail)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
           ON CONFLICT (job_id, occurrence_id, kind, file_name)
           DO UPDATE SET status = excluded.status, detail = excluded.detail""",
        ctx.job_id, ctx.occurrence_id, layout.partner, layout.kind, direction, file_name, sha256,
        rows, window[0], window[1], status, detail[:2000],
    )  # fmt: skip


@dataclass
class Export:
    """One export's result: where it went (None in a dry run or when already written)."""

    path: Path | None
    rows: int
    again: bool = False


async def export(
    ctx: JobContext,
    tally: Tally,
    layout: Layout,
    rows: list[dict[str, Any]],
    target: Path,
    *,
    dry_run: bool,
    fields: tuple[Any, ...] | None = None,
    window: tuple[datetime | None, datetime | None] = (None, None),
) -> Export:
    """Write ``rows`` to ``target`` in ``layout`` (atomically) and record it, once per occurrence."""
    base = Path(ctx.settings.batch_folder)
    pool = await ctx.db.pool()
    done = await written_by_occurrence(pool, ctx, layout.kind)
    if done is not None:
        tally.fact(
            f"this occurrence already wrote {done['file_name']} ({done['rows']} rows) at "
            f"{done['created_at']:%Y-%m-%d %H:%M:%S %Z}; nothing written again"
        )
        return Export(None, done["rows"], again=True)
    try:
        text = layout.render(rows, fields)
    except LayoutError as exc:
        raise JobFailed(f"{target.name}: {exc}; nothing written") from None
    for _ in rows:
        tally.ok()
    if dry_run:
        tally.fact(f"dry run: would write {len(rows)} rows to {target.relative_to(base)}")
        return Export(None, len(rows))
    data = text.encode("utf-8")
    await asyncio.to_thread(batchfiles.atomic_write, target, data)
    await record(pool, ctx, layout, "export", target.name, digest(data), len(rows), window=window)
    tally.fact(
        f"wrote {len(rows)} rows to {target.relative_to(base)} ({layout.title}, layout {layout.version})"
    )
    return Export(target, len(rows))


Apply = Callable[[asyncpg.Connection, list[dict[str, Any]], str, Tally], Awaitable[list[str]]]
"""Writes one parsed file's rows inside its transaction; returns the problems that refuse it
(rows naming an unknown student, ...), in which case the transaction is rolled back."""


def _drops(folder: Path, pattern: str) -> list[Path]:
    if not folder.is_dir():
        return []
    found = (p for p in folder.glob(pattern) if p.is_file() and not p.name.startswith("."))
    return sorted(batchfiles.confined(folder, found))


class _Rollback(Exception):
    pass


async def import_files(
    ctx: JobContext,
    tally: Tally,
    layout: Layout,
    folder: Path,
    pattern: str,
    apply: Apply,
    *,
    settle_s: float,
    dry_run: bool,
) -> list[str]:
    """Import every settled file matching ``pattern`` in ``folder``; returns the refused ones'
    problems. An imported file (or one imported before, by content) moves to ``imported/``
    with a timestamp; a refused one stays where it is, for the school to correct."""
    base = Path(ctx.settings.batch_folder)
    pool = await ctx.db.pool()
    problems: list[str] = []
    for path in await asyncio.to_thread(_drops, folder, pattern):
        shown = str(path.relative_to(base))
        if not await asyncio.to_thread(batchfiles.settled, path, settle_s):
            tally.skip(shown, "still being written; left for the next run")
            continue
        if (await asyncio.to_thread(path.stat)).st_size > MAX_FILE_BYTES:
            problems.append(f"{path.name}: larger than {MAX_FILE_BYTES // 2**20} MB")
            tally.fail(shown, problems[-1])
            continue
        data = await asyncio.to_thread(path.read_bytes)
        sha = digest(data)
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            problems.append(f"{path.name}: not UTF-8 text")
            tally.fail(shown, problems[-1])
            continue
        rows, refused = layout.parse(text, path.name)
        outcome = ""
        if not refused:
            try:
                async with pool.acquire() as conn, conn.transaction():
                    await conn.execute(
                        "SELECT pg_advisory_xact_lock(hashtext($1))",
                        f"finance:{layout.partner}:{layout.kind}",
                    )
                    before = await conn.fetchrow(
                        """SELECT file_name, created_at FROM sis.finance_files
                            WHERE partner = $1 AND kind = $2 AND sha256 = $3 AND direction = 'import'""",
                        layout.partner, layout.kind, sha,
                    )  # fmt: skip
                    if before is not None:
                        outcome = f"already imported as {before['file_name']} on {before['created_at']:%Y-%m-%d %H:%M}"
                    else:
                        refused = await apply(conn, rows, path.name, tally)
                        if refused:
                            raise _Rollback
                        await record(conn, ctx, layout, "import", path.name, sha, len(rows))
                        if dry_run:
                            raise _Rollback
            except _Rollback:
                pass
        if refused:
            tally.fail(shown, f"refused, nothing written: {len(refused)} problem(s)")
            for problem in refused[:PROBLEMS_SHOWN]:
                tally.fact(problem)
            problems.extend(refused)
            continue
        if dry_run:
            tally.fact(
                f"dry run: {path.name} would be imported ({len(rows)} rows); nothing written"
            )
            continue
        moved = await asyncio.to_thread(
            batchfiles.archive,
            path,
            folder / "imported",
            f"{path.stem}_{batchfiles.stamp()}{path.suffix}",
        )
        note = outcome or f"imported {len(rows)} rows"
        tally.fact(f"{shown}: {note}; moved to {moved.relative_to(base)}")
    return problems


def fail_if(problems: list[str], tally: Tally, ctx: JobContext, what: str) -> None:
    """End the run as failed when a file was refused, after the output says which and why."""
    if problems:
        tally.write(ctx, f"{what}: {len(problems)} problem(s); the refused files stay in place")
        raise JobFailed(
            f"{what}: {problems[0]}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
        )
