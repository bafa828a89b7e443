"""What the calculation jobs share: their base parameters, one transaction per school, the report.

A school is a division (``people.division_id``; Focus's schools, SONIS's divisions). Each job's
``work`` runs once per school in its own transaction, under a transaction-level advisory lock on
(job type, school) so two overlapping runs of the same calculation queue up instead of
interleaving, and with nested-loop joins off for that transaction (see ``each_school``). With ``dry_run`` the transaction is rolled back after the work, so the counts are
what a real run would change and nothing is written.
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
import msgspec

from belltower import sis
from belltower.errors import InvalidInput
from belltower.jobtypes import JobContext

Meta = msgspec.Meta
# (?!\n): a regex's $ also matches before a final newline, which a code must not end with.
Code = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]{1,32}(?!\n)$", description="a code")]
Codes = Annotated[
    list[Code], Meta(max_length=200, description="codes to limit to; empty: no limit")
]
SEED_000 = "the SONIS Timed Task Scheduler (seed 000)"
SEED_001 = "the Focus Scheduled Jobs catalog (seed 001)"


class CalcParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Parameters every calculation job takes."""

    divisions: Annotated[
        Codes, Meta(description="schools (division codes) to calculate; empty: every one")
    ] = []
    levels: Annotated[
        Codes, Meta(description="only students of these level codes; empty: all")
    ] = []
    as_of: Annotated[
        date | None,
        Meta(description="the day the run counts as today; default: the day it is scheduled for"),
    ] = None
    dry_run: Annotated[
        bool, Meta(description="calculate and report what would change, write nothing")
    ] = False


@dataclass(frozen=True, slots=True)
class Scope:
    """One school's turn: its connection (inside the school's transaction) and the run's facts."""

    conn: asyncpg.Connection
    division_id: int
    code: str
    today: date
    levels: list[str]
    job_id: str
    occurrence_id: str

    def students(self, args: list[Any], person: str = "p") -> str:
        """SQL conditions: the people row ``person`` is a student of this school and levels."""
        args.append(self.division_id)
        where = f"{person}.status = 'student' AND {person}.division_id = ${len(args)}"
        if self.levels:
            args.append(self.levels)
            where += (
                f" AND {person}.level_id IN "
                f"(SELECT id FROM sis.levels WHERE code = ANY(${len(args)}::text[]))"
            )
        return where


Counts = dict[str, int]
Work = Callable[[Scope], Awaitable[Counts]]


@dataclass
class Report:
    title: str
    dry_run: bool
    schools: list[tuple[str, str, Counts]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def totals(self) -> Counts:
        out: Counts = {}
        for _, _, counts in self.schools:
            for k, v in counts.items():
                out[k] = out.get(k, 0) + v
        return out

    def write(self, ctx: JobContext) -> None:
        totals = self.totals()
        said = ", ".join(f"{v} {k}" for k, v in totals.items()) or "nothing to do"
        tail = " (dry run: nothing written)" if self.dry_run else ""
        n = len(self.schools)
        ctx.output.summary = (f"{self.title}: {said} in {n} school{'s' if n != 1 else ''}{tail}")[
            :300
        ]
        out = ctx.output
        out.line(ctx.output.summary)
        for note in self.notes:
            out.line(note)
        for code, name, counts in self.schools:
            out.line(f"  {code} ({name}): " + (", ".join(f"{v} {k}" for k, v in counts.items())))
        heads = list(totals)
        rows = "".join(
            f"<tr><td>{html.escape(code)}</td><td>{html.escape(name)}</td>"
            + "".join(f"<td>{counts.get(h, 0)}</td>" for h in heads)
            + "</tr>"
            for code, name, counts in self.schools
        )
        out.html(
            f"<p><strong>{html.escape(self.title)}</strong>{html.escape(tail)}</p>"
            + "".join(f"<p>{html.escape(n)}</p>" for n in self.notes)
            + "<table><thead><tr><th>School</th><th>Name</th>"
            + "".join(f"<th>{html.escape(h)}</th>" for h in heads)
            + f"</tr></thead><tbody>{rows}</tbody></table>"
        )


async def school_today(pool: asyncpg.Pool, ctx: JobContext, as_of: date | None) -> date:
    """``as_of``, or the day the run was scheduled for in the school's time zone."""
    if as_of is not None:
        return as_of
    zone_name = await pool.fetchval(
        "SELECT value FROM sis.school_preferences WHERE key = 'time_zone'"
    )
    try:
        zone = ZoneInfo(zone_name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return ctx.scheduled_for.astimezone(zone).date()


async def preference(pool: asyncpg.Pool | asyncpg.Connection, key: str, default: str) -> str:
    value = await pool.fetchval("SELECT value FROM sis.school_preferences WHERE key = $1", key)
    return value if value is not None else default


async def each_school(ctx: JobContext, params: CalcParams, title: str, work: Work) -> Report:
    """Run ``work`` for every school in its own transaction; report the counts per school."""
    pool = await ctx.db.pool()
    await sis.check_demographics(
        pool, sis.Demographics(divisions=params.divisions, levels=params.levels)
    )
    today = await school_today(pool, ctx, params.as_of)
    schools = await pool.fetch(
        "SELECT id, code, name FROM sis.divisions "
        "WHERE cardinality($1::text[]) = 0 OR code = ANY($1::text[]) ORDER BY code",
        [d.upper() for d in params.divisions],
    )
    report = Report(title, params.dry_run)
    levels = [lv.upper() for lv in params.levels]
    for index, school in enumerate(schools, 1):
        async with pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            try:
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext($1))", f"{ctx.job_type}:{school['code']}"
                )
                # A calculation reads the whole school: hash joins, even when the statistics
                # are missing or stale (a freshly loaded or mapped SIS), not a nested loop that
                # rescans the attendance table once per student.
                await conn.execute("SET LOCAL enable_nestloop = off")
                scope = Scope(
                    conn, school["id"], school["code"], today, levels, ctx.job_id, ctx.occurrence_id
                )
                counts = await work(scope)
            except BaseException:
                await tx.rollback()
                raise
            if params.dry_run:
                await tx.rollback()
            else:
                await tx.commit()
        report.schools.append((school["code"], school["name"], counts))
        await ctx.progress(index, len(schools), f"{school['code']} done")
    return report


async def terms_of(scope: Scope, codes: list[str]) -> list[Any]:
    """The terms named by ``codes`` (empty: those in progress on the run's day) that have begun,
    with ``through_on``: the run's day or the term's end, whichever is first."""
    ids = await codes_to_ids(scope.conn, "terms", "terms", codes)
    return await scope.conn.fetch(
        """SELECT id, code, name, starts_on, least(ends_on, $2) AS through_on FROM sis.terms
            WHERE CASE WHEN cardinality($1::bigint[]) = 0 THEN ends_on >= $2 ELSE id = ANY($1::bigint[]) END
              AND starts_on <= $2
            ORDER BY starts_on""",
        ids, scope.today,
    )  # fmt: skip


async def codes_to_ids(
    conn: asyncpg.Connection, table: str, field_name: str, codes: list[str]
) -> list[int]:
    """Ids of ``codes`` in ``sis.<table>``; an unknown code is refused naming the parameter."""
    if not codes:
        return []
    rows = await conn.fetch(f"SELECT id, code FROM sis.{table} ORDER BY code")
    known = {r["code"].upper(): r["id"] for r in rows}
    wanted = [c.upper() for c in codes]
    if unknown := sorted(set(wanted) - set(known)):
        raise InvalidInput(
            f"param.{field_name}",
            f"unknown {table} codes: {', '.join(unknown)}",
            ", ".join(sorted(known)) or "(none)",
        )
    return [known[c] for c in wanted]


Key = tuple[Any, ...]


async def sync_rows(
    conn: asyncpg.Connection,
    table: str,
    keys: tuple[str, ...],
    columns: tuple[str, ...],
    computed: dict[Key, tuple[Any, ...]],
    stored: dict[Key, tuple[Any, ...]],
    *,
    stamp: dict[str, Any] | None = None,
) -> Counts:
    """Make ``sis.<table>`` hold ``computed`` where it held ``stored`` (both keyed by ``keys``,
    valued by ``columns``): insert what is new, update what differs, delete what is no longer
    computed, leave equal rows alone (so a re-run changes nothing). ``stamp`` columns (e.g. the
    occurrence id) are written with every inserted or updated row, and ``calculated_at`` = now()."""
    stamp = stamp or {}
    changed = [(k, v) for k, v in computed.items() if stored.get(k) != v]
    stale = sorted(set(stored) - set(computed))
    if changed:
        # COPY into a scratch table, then one INSERT ... ON CONFLICT: row-by-row statements
        # cost a round trip each (36,000 attendance days took 36 s that way, under 1 s so).
        names = (*keys, *columns, *stamp)
        scratch = f"calc_{table}"
        await conn.execute(
            f"DROP TABLE IF EXISTS {scratch}; "
            f"CREATE TEMP TABLE {scratch} (LIKE sis.{table} INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        await conn.copy_records_to_table(
            scratch, columns=list(names), records=[(*k, *v, *stamp.values()) for k, v in changed]
        )
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in (*columns, *stamp))
        listed = ", ".join(names)
        await conn.execute(
            f"INSERT INTO sis.{table} ({listed}) SELECT {listed} FROM {scratch} "
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}, calculated_at = now()"
        )
    if stale:
        match = " AND ".join(f"{c} = ${i}" for i, c in enumerate(keys, 1))
        await conn.executemany(f"DELETE FROM sis.{table} WHERE {match}", stale)
    added = sum(1 for k, _ in changed if k not in stored)
    return {
        "added": added,
        "updated": len(changed) - added,
        "unchanged": len(computed) - len(changed),
        "removed": len(stale),
    }
