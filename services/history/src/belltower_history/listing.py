"""Pages of runs sorted, searched and filtered in SQL (keyset pagination, :mod:`belltower.paging`).

Every sort ends in the occurrence id, so the order is total; migration 0006 indexes them, and
the job and status filters with the time order, so a page deep in a million runs is one index
range read like the first.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from belltower import paging
from belltower.api import RunRecord, RunsPageRequest

from .store import _SELECT

SORTS = (
    paging.SortKey("scheduled_for", ("scheduled_for", "occurrence_id"), ("timestamptz", "uuid")),
    paging.SortKey(
        "finished_at",
        ("COALESCE(finished_at, 'infinity'::timestamptz)", "occurrence_id"),
        ("timestamptz", "uuid"),
    ),
    paging.SortKey("duration_ms", ("COALESCE(duration_ms, -1)", "occurrence_id"), ("int", "uuid")),
)


@dataclass
class RunsWindow:
    runs: list[RunRecord]
    next: str | None
    prev: str | None
    order: paging.Order
    scope: str
    keys: list[list[str | None]]


def _filters(request: RunsPageRequest, args: list[object]) -> list[str]:
    where: list[str] = []
    for condition, value in (
        ("job_id = ${}::uuid", request.job_id),
        ("status = ${}", request.status),
        ("scheduled_for >= ${}", request.since),
        ("scheduled_for < ${}", request.until),
    ):
        if value is not None:
            args.append(value)
            where.append(condition.format(len(args)))
    q = paging.check_search(request.q)
    if q:
        args.append(paging.like_pattern(q))
        where.append(f"(job_title ILIKE ${len(args)} OR summary ILIKE ${len(args)})")
    return where


def scope_of(request: RunsPageRequest) -> str:
    return paging.scope_of(
        {
            "job_id": request.job_id,
            "status": request.status,
            "since": request.since.isoformat() if request.since else None,
            "until": request.until.isoformat() if request.until else None,
            "q": request.q.strip(),
        }
    )


async def runs_page(pool: asyncpg.Pool, request: RunsPageRequest) -> RunsWindow:
    order = paging.parse_sort(request.sort, SORTS)
    scope = scope_of(request)
    cursor = (
        paging.decode_cursor(request.cursor, order, scope) if request.cursor is not None else None
    )
    args: list[object] = []
    where = _filters(request, args)
    plan = paging.keyset(order, cursor, len(args) + 1)
    args.extend(plan.args)
    if plan.where:
        where.append(plan.where)
    output, html = ("output_text", "output_html") if request.include_output else ("''", "NULL")
    sql = _SELECT.format(output=output, html=html).replace(
        " FROM history.runs", f", {plan.select} FROM history.runs"
    )
    if where:
        sql += " WHERE " + " AND ".join(where)
    args.append(paging.fetch_size(request.limit))
    sql += f" ORDER BY {plan.order_by} LIMIT ${len(args)}"
    records, more = paging.page_rows(list(await pool.fetch(sql, *args)), request.limit, plan)
    keys = [paging.keys_of(r, order) for r in records]
    runs = [RunRecord(**{k: v for k, v in r.items() if not k.startswith("_k")}) for r in records]
    first, last = (keys[0], keys[-1]) if keys else (None, None)
    nxt, prev = paging.cursors(first, last, order, scope, cursor, more)
    return RunsWindow(runs, nxt, prev, order, scope, keys)


async def last_runs(pool: asyncpg.Pool, job_ids: list[str]) -> list[RunRecord]:
    """Each job's latest run, one index read per job (``runs_job_time_id`` backwards)."""
    select = _SELECT.format(output="''", html="NULL").replace(
        " FROM history.runs",
        " FROM unnest($1::uuid[]) AS j(id), LATERAL (SELECT * FROM history.runs",
    )
    sql = (
        select
        + " WHERE job_id = j.id ORDER BY scheduled_for DESC, occurrence_id DESC LIMIT 1) AS r"
    )
    return [RunRecord(**dict(r)) for r in await pool.fetch(sql, job_ids)]
