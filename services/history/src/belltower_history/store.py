"""History's SQL: idempotent writes of run events, queries, and retention."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from belltower.api import RunQuery, RunRecord
from belltower.events import RunFinished, RunProgress, RunStarted

_RUN_FIELDS = (
    "occurrence_id", "run_id", "job_id", "job_type", "job_title", "pool", "status", "trigger", "requested_by",
    "priority", "scheduled_for", "dispatched_at", "started_at", "finished_at", "duration_ms", "attempt", "worker",
    "summary", "output_text", "output_html", "error", "trace_id",
)  # fmt: skip
_SQL_TYPES = (
    "uuid", "uuid", "uuid", "text", "text", "text", "text", "text", "text",
    "int", "timestamptz", "timestamptz", "timestamptz", "timestamptz", "int", "int", "text",
    "text", "text", "text", "text", "text",
)  # fmt: skip

_UPSERT = (
    f"INSERT INTO history.runs ({', '.join(_RUN_FIELDS)}) "
    f"SELECT * FROM unnest({', '.join(f'${i + 1}::{t}[]' for i, t in enumerate(_SQL_TYPES))}) "
    "ON CONFLICT (occurrence_id) DO UPDATE SET "
    + ", ".join(f"{f} = EXCLUDED.{f}" for f in _RUN_FIELDS if f not in ("occurrence_id", "run_id"))
    + " WHERE history.runs.finished_at IS NULL"
    " AND (EXCLUDED.finished_at IS NOT NULL OR EXCLUDED.attempt >= history.runs.attempt)"
)

_PROGRESS = (
    "UPDATE history.runs r SET progress_done = p.done, progress_total = p.total, progress_message = p.message "
    "FROM unnest($1::uuid[], $2::int[], $3::int[], $4::text[]) AS p(occurrence_id, done, total, message) "
    "WHERE r.occurrence_id = p.occurrence_id AND r.finished_at IS NULL"
)

_SELECT = (
    "SELECT occurrence_id::text, run_id::text, job_id::text, job_type, job_title, status, trigger, requested_by, "
    "priority, scheduled_for, dispatched_at, started_at, finished_at, duration_ms, attempt, worker, summary, "
    "{output} AS output_text, {html} AS output_html, error, trace_id, progress_done, progress_total, progress_message "
    "FROM history.runs"
)


def _row(event: RunStarted | RunFinished) -> tuple[object, ...]:
    d = event.data
    if isinstance(event, RunFinished):
        f = event.data
        return (
            d.occurrence_id, d.run_id, d.job_id, d.job_type, d.job_title, d.pool, f.status, d.trigger,
            d.requested_by, d.priority, d.scheduled_for, d.dispatched_at, d.started_at, f.finished_at,
            f.duration_ms, d.attempt, d.worker, f.summary, f.output_text, f.output_html, f.error, d.trace_id,
        )  # fmt: skip
    return (
        d.occurrence_id, d.run_id, d.job_id, d.job_type, d.job_title, d.pool, "running", d.trigger,
        d.requested_by, d.priority, d.scheduled_for, d.dispatched_at, d.started_at, None,
        None, d.attempt, d.worker, "", "", None, None, d.trace_id,
    )  # fmt: skip


class Store:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def record(self, events: Sequence[RunStarted | RunProgress | RunFinished]) -> int:
        """Write a batch of run events in one transaction; re-delivered events change nothing.

        A finished event wins over a started one, the first finished event wins over later ones,
        and progress only touches runs that have not finished.
        """
        runs: dict[str, RunStarted | RunFinished] = {}
        progress: dict[str, RunProgress] = {}
        for event in events:
            if isinstance(event, RunProgress):
                progress[event.data.occurrence_id] = event
                continue
            key = event.data.occurrence_id
            held = runs.get(key)
            if held is None or (
                isinstance(event, RunFinished) and not isinstance(held, RunFinished)
            ):
                runs[key] = event
        rows = [_row(e) for e in runs.values()]
        async with self.pool.acquire() as conn, conn.transaction():
            if rows:
                await conn.execute(_UPSERT, *[list(col) for col in zip(*rows, strict=True)])
            if progress:
                values = list(progress.values())
                await conn.execute(
                    _PROGRESS,
                    [p.data.occurrence_id for p in values],
                    [p.data.done for p in values],
                    [p.data.total for p in values],
                    [p.data.message for p in values],
                )
        return len(rows)

    async def query(self, q: RunQuery) -> list[RunRecord]:
        where, args = [], []
        for column, op, value in (
            ("job_id", "= $%d::uuid", q.job_id),
            ("status", "= $%d", q.status),
            ("scheduled_for", ">= $%d", q.since),
            ("scheduled_for", "< $%d", q.until),
        ):
            if value is not None:
                args.append(value)
                where.append(f"{column} {op % len(args)}")
        args.append(q.limit)
        output, html = ("output_text", "output_html") if q.include_output else ("''", "NULL")
        sql = _SELECT.format(output=output, html=html)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY scheduled_for DESC, occurrence_id LIMIT ${len(args)}"
        return [RunRecord(**dict(r)) for r in await self.pool.fetch(sql, *args)]

    async def get(self, run_or_occurrence_id: str) -> RunRecord | None:
        sql = (
            _SELECT.format(output="output_text", html="output_html")
            + " WHERE run_id = $1::uuid OR occurrence_id = $1::uuid"
        )
        row = await self.pool.fetchrow(sql, run_or_occurrence_id)
        return RunRecord(**dict(row)) if row else None

    async def purge(
        self,
        keep_days: dict[str, int | None],
        default_days: int | None,
        now: datetime,
        dry_run: bool,
    ) -> dict[str, int]:
        """Delete finished runs older than their job's retention; jobs not listed use ``default_days``.

        A job listed with ``None`` keeps its history forever; so do unlisted jobs when
        ``default_days`` is None.
        """
        listed = [(job, days) for job, days in keep_days.items() if days is not None]
        forever = [job for job, days in keep_days.items() if days is None]
        cte = (
            "WITH keep(job_id, days) AS (SELECT * FROM unnest($1::uuid[], $2::int[])), "
            "doomed AS (SELECT r.occurrence_id, r.job_id FROM history.runs r LEFT JOIN keep k ON k.job_id = r.job_id "
            "WHERE r.finished_at IS NOT NULL AND NOT (r.job_id = ANY($3::uuid[])) "
            "AND r.finished_at < $4::timestamptz - make_interval(days => COALESCE(k.days, $5::int)) "
            "AND (k.days IS NOT NULL OR $5::int IS NOT NULL)) "
        )
        if dry_run:
            sql = cte + "SELECT job_id::text AS job_id, count(*) AS n FROM doomed GROUP BY job_id"
        else:
            sql = (
                cte
                + ", gone AS (DELETE FROM history.runs r USING doomed d WHERE r.occurrence_id = d.occurrence_id "
                "RETURNING r.job_id) SELECT job_id::text AS job_id, count(*) AS n FROM gone GROUP BY job_id"
            )
        rows = await self.pool.fetch(
            sql, [j for j, _ in listed], [d for _, d in listed], forever, now, default_days
        )
        return {r["job_id"]: r["n"] for r in rows}
