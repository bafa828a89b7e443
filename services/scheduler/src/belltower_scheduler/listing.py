"""Pages of jobs sorted, searched and filtered in SQL (keyset pagination, :mod:`belltower.paging`).

Every sort ends in the job id, so the order is total; migration 0009 indexes each sort's
expressions so a page, the first or the thousandth, is one index range read.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import asyncpg

from belltower import paging
from belltower.api import JobsPageRequest
from belltower.errors import InvalidInput

from .store import JOB_COLUMNS, JobRow

_T = "lower(title)"
_INSTALLED = "$installed"
SORTS = (
    paging.SortKey("id", ("id",), ("uuid",)),
    paging.SortKey("title", (_T, "id"), ("text", "uuid")),
    paging.SortKey("type", ("type", _T, "id"), ("text", "text", "uuid")),
    paging.SortKey(
        "schedule",
        ("schedule -> 'rule' ->> 'kind'", "left((schedule -> 'rule')::text, 200)", "id"),
        ("text", "text", "uuid"),
    ),
    paging.SortKey(
        "next_run_at",
        ("COALESCE(next_run_at, 'infinity'::timestamptz)", _T, "id"),
        ("timestamptz", "text", "uuid"),
    ),
    paging.SortKey("priority", ("priority", _T, "id"), ("int", "text", "uuid")),
    # Paused after active, then jobs whose type no worker provides (bound to the installed types).
    paging.SortKey(
        "state",
        ("paused", f"NOT (type = ANY({_INSTALLED}::text[]))", _T, "id"),
        ("boolean", "boolean", "text", "uuid"),
    ),
)
STATES = ("active", "paused", "not_installed")


@dataclass
class JobsWindow:
    rows: list[JobRow]
    next: str | None
    prev: str | None
    total: int | None
    order: paging.Order
    scope: str
    keys: list[list[str | None]]


class _Args:
    """Query arguments numbered as they are added: ``$n`` of each."""

    def __init__(self) -> None:
        self.values: list[object] = []

    def add(self, value: object) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def _filters(request: JobsPageRequest, args: _Args, installed: list[str]) -> list[str]:
    where: list[str] = []
    q = paging.check_search(request.q)
    if q:
        n = args.add(paging.like_pattern(q))
        where.append(f"(title ILIKE {n} OR type ILIKE {n} OR id::text ILIKE {n})")
    if request.type:
        if len(request.type) > 200:
            raise InvalidInput("type", "is longer than 200 characters", "a job type's name")
        where.append(f"type = {args.add(request.type)}")
    if request.state == "paused":
        where.append("paused")
    elif request.state == "active":
        where.append("NOT paused")
    elif request.state == "not_installed":
        where.append(f"NOT (type = ANY({args.add(installed)}::text[]))")
    elif request.state:
        raise InvalidInput("state", f"{request.state[:40]!r} is not a state", ", ".join(STATES))
    return where


def _concrete(order: paging.Order, args: _Args, installed: list[str]) -> paging.Order:
    """The order with the installed types bound, for the sort that needs them."""
    if not any(_INSTALLED in e for e in order.key.exprs):
        return order
    n = args.add(installed)
    exprs = tuple(e.replace(_INSTALLED, n) for e in order.key.exprs)
    return paging.Order(replace(order.key, exprs=exprs), order.descending)


async def jobs_page(
    pool: asyncpg.Pool, request: JobsPageRequest, installed: list[str]
) -> JobsWindow:
    """The jobs of one page of ``request``, with its cursors and (when asked) the total."""
    order = paging.parse_sort(request.sort, SORTS)
    scope = paging.scope_of({"q": request.q.strip(), "type": request.type, "state": request.state})
    cursor = (
        paging.decode_cursor(request.cursor, order, scope) if request.cursor is not None else None
    )
    args = _Args()
    where = _filters(request, args, installed)
    total = None
    if request.total:
        count_sql = "SELECT count(*) FROM scheduler.jobs"
        if where:
            count_sql += " WHERE " + " AND ".join(where)
        total = await pool.fetchval(count_sql, *args.values)
    bound = _concrete(order, args, installed)
    plan = paging.keyset(bound, cursor, len(args.values) + 1)
    args.values.extend(plan.args)
    conditions = where + ([plan.where] if plan.where else [])
    sql = f"SELECT {JOB_COLUMNS}, {plan.select} FROM scheduler.jobs"
    if conditions:
        sql += " WHERE " + " AND ".join(conditions)
    sql += f" ORDER BY {plan.order_by} LIMIT {args.add(paging.fetch_size(request.limit))}"
    records, more = paging.page_rows(list(await pool.fetch(sql, *args.values)), request.limit, plan)
    keys = [paging.keys_of(r, bound) for r in records]
    first, last = (keys[0], keys[-1]) if keys else (None, None)
    nxt, prev = paging.cursors(first, last, order, scope, cursor, more)
    return JobsWindow(
        [JobRow.from_record(r) for r in records], nxt, prev, total, order, scope, keys
    )
