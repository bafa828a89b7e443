"""History's SQL: idempotent writes of run events, queries, and retention."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime
from operator import attrgetter
from typing import Any, NamedTuple

import asyncpg
import msgspec

from belltower.api import RunQuery, RunRecord
from belltower.events import (
    JobFailing,
    JobRecovered,
    RunEvent,
    RunFinished,
    RunFinishedData,
    RunProgress,
    RunProgressData,
    RunStarted,
    RunStartedData,
)

from .alertmail import compose_alert
from .resultmail import OutboxMail, ResultMailComposer

_encode = msgspec.json.Encoder().encode

# (column, SQL type) of a run row. The fields a started event has come first, so its row is
# their values and then NULLs for the rest (see _run_row).
_COLUMNS = (
    ("occurrence_id", "uuid"), ("run_id", "uuid"), ("job_id", "uuid"), ("job_type", "text"),
    ("job_title", "text"), ("pool", "text"), ("trigger", "text"), ("requested_by", "text"),
    ("priority", "int"), ("scheduled_for", "timestamptz"), ("dispatched_at", "timestamptz"),
    ("started_at", "timestamptz"), ("attempt", "int"), ("worker", "text"), ("trace_id", "text"),
    ("requested_from", "text"),
    # Only in finished events:
    ("status", "text"), ("finished_at", "timestamptz"), ("duration_ms", "int"), ("summary", "text"),
    ("output_text", "text"), ("output_html", "text"), ("error", "text"),
)  # fmt: skip
_RUN_FIELDS = tuple(f for f, _ in _COLUMNS)
_SQL_TYPES = tuple(t for _, t in _COLUMNS)
_STARTED_FIELDS = _RUN_FIELDS[: _RUN_FIELDS.index("status")]
assert set(_STARTED_FIELDS) <= set(RunStartedData.__struct_fields__)
assert not set(_RUN_FIELDS[len(_STARTED_FIELDS) :]) & set(RunStartedData.__struct_fields__)
assert set(_RUN_FIELDS) <= set(RunFinishedData.__struct_fields__)
_finished_row = attrgetter(*_RUN_FIELDS)
_started_values = attrgetter(*_STARTED_FIELDS)
_STARTED_PAD = (None,) * (len(_RUN_FIELDS) - len(_STARTED_FIELDS))


def _run_row(data: RunStartedData | RunFinishedData) -> tuple[Any, ...]:
    """A run's row in ``_RUN_FIELDS`` order (an attrgetter: a generator of ``getattr`` per
    field cost history more than decoding the event)."""
    if type(data) is RunFinishedData:
        return _finished_row(data)
    return _started_values(data) + _STARTED_PAD


# What a started event, which has none of these fields, leaves in a running run's row.
_STARTED_DEFAULTS = {"status": "'running'", "summary": "''", "output_text": "''"}
_SELECTED = ", ".join(
    f"COALESCE({f}, {_STARTED_DEFAULTS[f]})" if f in _STARTED_DEFAULTS else f for f in _RUN_FIELDS
)
_RECORD_TYPE = ", ".join(f"{f} {t}" for f, t in zip(_RUN_FIELDS, _SQL_TYPES, strict=True))

# A batch's runs are copied into this session's staging table, then upserted from it: COPY
# costs PostgreSQL a third less CPU than unpacking the same rows from JSON.
_STAGING = "runs_in"
_CREATE_STAGING = (
    f"CREATE TEMP TABLE IF NOT EXISTS {_STAGING} ({_RECORD_TYPE}) ON COMMIT DELETE ROWS"
)

# Rows are inserted in key order so concurrent writers (replicas) lock them in the same order.
_UPSERT = (
    f"INSERT INTO history.runs ({', '.join(_RUN_FIELDS)}) "
    f"SELECT {_SELECTED} FROM {_STAGING} "
    "ORDER BY occurrence_id "
    "ON CONFLICT (occurrence_id) DO UPDATE SET "
    + ", ".join(f"{f} = EXCLUDED.{f}" for f in _RUN_FIELDS if f not in ("occurrence_id", "run_id"))
    + " WHERE history.runs.finished_at IS NULL"
    " AND (EXCLUDED.finished_at IS NOT NULL OR EXCLUDED.attempt >= history.runs.attempt)"
)

_PROGRESS = (
    "UPDATE history.runs r SET progress_done = p.done, progress_total = p.total, progress_message = p.message "
    "FROM json_to_recordset($1::json) AS p(occurrence_id uuid, done int, total int, message text) "
    "WHERE r.occurrence_id = p.occurrence_id AND r.finished_at IS NULL"
)

_OUTBOX = (
    "INSERT INTO history.mail_outbox (occurrence_id, run_id, recipients, subject, body_text, body_html, kind) "
    "SELECT occurrence_id, run_id, recipients, subject, body_text, body_html, kind FROM json_populate_recordset("
    "NULL::history.mail_outbox, $1::json) m WHERE m.kind = 'result' OR EXISTS ("
    "SELECT 1 FROM history.runs r WHERE r.occurrence_id = m.occurrence_id) "
    "ORDER BY occurrence_id, kind ON CONFLICT (occurrence_id, kind) DO NOTHING"
)
"""Result mails, and alert mails of runs history has (``alertmail.py``)."""

_SELECT = (
    "SELECT occurrence_id::text, run_id::text, job_id::text, job_type, job_title, status, trigger, requested_by, "
    "priority, scheduled_for, dispatched_at, started_at, finished_at, duration_ms, attempt, worker, summary, "
    "{output} AS output_text, {html} AS output_html, error, trace_id, progress_done, progress_total, progress_message, requested_from "
    "FROM history.runs"
)


class Prepared(NamedTuple):
    """A batch ready for :meth:`Store.write`: its run count, run rows and JSON rows."""

    runs: int
    run_rows: list[tuple[Any, ...]]
    progress_json: str | None
    mail_json: str | None = None


class Store:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def record(
        self,
        events: Sequence[RunEvent],
        mail: ResultMailComposer | None = None,
    ) -> int:
        """Write a batch of run events in one transaction; re-delivered events change nothing.

        A finished event wins over a started one, the first finished event wins over later ones,
        and progress only touches runs that have not finished.

        The runs go to PostgreSQL with COPY into a staging table and one upsert from it (a
        third less CPU for PostgreSQL than ``json_to_recordset`` over a JSON array); progress
        and outbox rows go as one JSON array each, encoded by msgspec from the validated events.
        A started event has no status, finished_at or output, so those are NULL in its row
        and the INSERT fills in what a running run has. COPY's binary format carries each
        timestamp as an instant, so the session's TimeZone plays no part (asyncpg reads a naive
        datetime, which only an event without an offset gives, in the history process's local
        zone: UTC unless TZ is set).
        """
        return await self.write(self.prepare(events, mail))

    @staticmethod
    def prepare(
        events: Sequence[RunEvent],
        mail: ResultMailComposer | None = None,
    ) -> Prepared:
        """The CPU half of :meth:`record`: pick each run's winning event and encode the rows.

        With ``mail``, finished runs whose job asks for a result e-mail also get an outbox row,
        written in the same transaction (see :mod:`.resultmail`).
        """
        runs: dict[str, RunStartedData | RunFinishedData] = {}
        progress: dict[str, RunProgressData] = {}
        mails: list[OutboxMail] = []
        for event in events:
            if isinstance(event, JobFailing | JobRecovered):
                alert = compose_alert(event, mail.console_url) if mail is not None else None
                if alert is not None:
                    mails.append(alert)
                continue
            if not isinstance(event, RunStarted | RunProgress | RunFinished):
                continue  # an overdue alert: integrators' and the metrics', nothing to store
            data = event.data
            if isinstance(data, RunProgressData):
                progress[data.occurrence_id] = data
                continue
            held = runs.get(data.occurrence_id)
            if held is None or (type(event) is RunFinished and type(held) is not RunFinishedData):
                runs[data.occurrence_id] = data
        if mail is not None:
            for data in runs.values():
                if type(data) is RunFinishedData and data.result_mail is not None:
                    composed = mail.compose(data)
                    if composed is not None:
                        mails.append(composed)
        return Prepared(
            len(runs),
            [_run_row(data) for data in runs.values()],
            _encode(list(progress.values())).decode() if progress else None,
            _encode(mails).decode() if mails else None,
        )

    async def write(self, prepared: Prepared) -> int:
        """The database half of :meth:`record`: one transaction in as few round trips as
        asyncpg allows: ``BEGIN`` with the staging table's ``CREATE``, the COPY, and the upsert
        with ``COMMIT`` when no progress or outbox rows follow (statements sent as one simple
        query share a round trip, and a failed one skips the rest)."""
        rows = prepared.run_rows
        progress_json, mail_json = prepared.progress_json, prepared.mail_json
        async with self.pool.acquire() as conn:
            try:
                if rows:
                    await conn.execute(f"BEGIN; {_CREATE_STAGING}")
                    await conn.copy_records_to_table(_STAGING, records=rows, columns=_RUN_FIELDS)
                    if progress_json is None and mail_json is None:
                        await conn.execute(f"{_UPSERT}; COMMIT")
                        return prepared.runs
                    await conn.execute(_UPSERT)
                else:
                    await conn.execute("BEGIN")
                if progress_json is not None:
                    await conn.execute(_PROGRESS, progress_json)
                if mail_json is not None:
                    await conn.execute(_OUTBOX, mail_json)
                await conn.execute("COMMIT")
            except Exception:  # when cancelled, the pool's release rolls back
                if not conn.is_closed() and conn.is_in_transaction():
                    with contextlib.suppress(Exception):
                        await conn.execute("ROLLBACK")
                raise
        return prepared.runs

    async def query(self, q: RunQuery) -> list[RunRecord]:
        where: list[str] = []
        args: list[object] = []
        for column, op, value in (
            ("job_id", "= $%d::uuid", q.job_id),
            ("status", "= $%d", q.status),
            ("scheduled_for", ">= $%d", q.since),
            ("scheduled_for", "< $%d", q.until),
        ):
            if value is not None:
                args.append(value)
                where.append(f"{column} {op % len(args)}")
        args.extend((q.limit, q.offset))
        output, html = ("output_text", "output_html") if q.include_output else ("''", "NULL")
        sql = _SELECT.format(output=output, html=html)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY scheduled_for DESC, occurrence_id DESC LIMIT ${len(args) - 1} OFFSET ${len(args)}"
        return [RunRecord(**dict(r)) for r in await self.pool.fetch(sql, *args)]

    async def get(self, run_or_occurrence_id: str) -> RunRecord | None:
        sql = (
            _SELECT.format(output="output_text", html="output_html")
            + " WHERE run_id = $1::uuid OR occurrence_id = $1::uuid"
        )
        row = await self.pool.fetchrow(sql, run_or_occurrence_id)
        return RunRecord(**dict(row)) if row else None

    async def failing_jobs(self, last: int = 3) -> int:
        """How many jobs have ``last`` finished runs, all of them not succeeded.

        One index walk per job (``runs_job_time_id``), newest first, reading at most ``last`` rows each.
        """
        return await self.pool.fetchval(
            "SELECT count(*) FROM (SELECT DISTINCT job_id FROM history.runs) j, LATERAL ("
            " SELECT count(*) AS n, bool_and(status <> 'succeeded') AS bad FROM ("
            "  SELECT status FROM history.runs r WHERE r.job_id = j.job_id AND r.finished_at IS NOT NULL"
            "  ORDER BY r.scheduled_for DESC LIMIT $1) recent) l "
            "WHERE l.n = $1 AND l.bad",
            last,
        )

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
