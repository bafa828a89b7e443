"""``rostering.edfi_sync``: the Focus seed's Ed-Fi Data Sync, to an Ed-Fi ODS/API v7.

"This job transfers data by sending all endpoints in order to successfully integrate with
Ed-Fi." The order is the server's: each run reads ``/metadata/data/v3/dependencies`` and sends
sessions, courses, course offerings, sections, grading periods, students, student school and
section associations, school and section attendance events and grades in it. Every record is
POSTed (the Ed-Fi upsert by natural key) only when it is new or changed since the server last
took it (``sis.edfi_sync_records``), so a repeat of a run sends nothing. A record the server
refuses goes to ``sis.edfi_retries`` and is sent again, first of its resource, by the next run;
one whose student failed is refused too (409, unresolved reference) and is retried after it.
The run's output has one row per resource: sent, created, updated, failed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Annotated, Any

import msgspec

from belltower.errors import JobFailed, Unavailable
from belltower.fences import PublicUrl
from belltower.jobtypes import JobContext, JobType

from .. import edfi_records
from ..edfi import EdFiClient, EdFiRefused
from ..safety import digest
from ..secrets import SecretName, read_secret

Meta = msgspec.Meta
Code = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.,()'/-]{0,59}$")]
"""A descriptor code value as Ed-Fi spells them ("Unexcused Absence", "Ninth grade")."""
SchoolId = Annotated[int, Meta(ge=1, le=2_147_483_647, description="an Ed-Fi schoolId")]
SEND_CONCURRENCY = 8
SAVE_EVERY = 200


class EdFiSyncParams(msgspec.Struct, forbid_unknown_fields=True):
    base_url: Annotated[
        PublicUrl,
        Meta(
            description="ODS/API root (where /oauth/token and /data/v3 are), e.g. https://ods.example.org/api"
        ),
    ]
    school_id: SchoolId
    campus_school_ids: Annotated[
        dict[Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]{1,32}$")], SchoolId],
        Meta(max_length=200, description="Ed-Fi schoolId per campus code; others use school_id"),
    ] = {}
    key_secret: Annotated[SecretName, Meta(description="Secret holding the API key")] = "edfi-key"
    client_secret: Annotated[SecretName, Meta(description="Secret holding the API secret")] = (
        "edfi-secret"
    )
    terms: Annotated[
        list[Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]{1,32}$")]],
        Meta(
            max_length=50,
            description="Term codes to send; empty: terms in progress, starting soon or recently ended",
        ),
    ] = []
    ended_within_days: Annotated[
        int,
        Meta(
            ge=0,
            le=730,
            description="With no terms given: terms ended this many days ago still count",
        ),
    ] = 120
    namespace: Annotated[
        str,
        Meta(
            pattern=r"^uri://[A-Za-z0-9.-]{1,100}(/[A-Za-z0-9._-]{1,50}){0,3}$",
            description="Descriptor namespace of the district's Ed-Fi setup",
        ),
    ] = "uri://ed-fi.org"
    term_descriptor: Code = "Semester"
    grading_period_descriptor: Code = "End of Year"
    grade_type_descriptor: Code = "Final"
    default_grade_level: Annotated[
        Code, Meta(description="GradeLevelDescriptor code for students whose level is not mapped")
    ] = "Ungraded"
    grade_levels: Annotated[
        dict[Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]{1,32}$")], Code],
        Meta(max_length=50, description="GradeLevelDescriptor code per SIS level code"),
    ] = {}
    send_present: Annotated[
        bool, Meta(description="Also send 'In Attendance' events (else only absences and tardies)")
    ] = False
    dry_run: Annotated[
        bool, Meta(description="Read the server's order and count what would be sent; send nothing")
    ] = False


TERMS_SQL = """
SELECT t.id, t.code, t.starts_on, t.ends_on,
       greatest(1, (SELECT count(DISTINCT m.meets_on) FROM sis.section_meetings m
                      JOIN sis.sections s ON s.id = m.section_id WHERE s.term_id = t.id))::int AS days
  FROM sis.terms t
 WHERE CASE WHEN cardinality($1::text[]) > 0 THEN t.code = ANY($1::text[])
            ELSE t.starts_on <= $2::date + 30 AND t.ends_on >= $2::date - $3::int END
"""
SECTIONS_SQL = """
SELECT s.id, s.term_id, s.section_code, s.starts_on, c.code AS course_code, c.title AS course_title,
       c.credits, cp.code AS campus
  FROM sis.sections s JOIN sis.courses c ON c.id = s.course_id
  LEFT JOIN sis.campuses cp ON cp.id = s.campus_id
 WHERE s.term_id = ANY($1::bigint[])
"""
ENROLLMENTS_SQL = """
SELECT e.id, e.person_id, e.section_id, coalesce(e.withdrawn_on, e.dropped_at::date) AS ended_on
  FROM sis.enrollments e
 WHERE e.section_id = ANY($1::bigint[]) AND e.status IN ('enrolled', 'completed', 'audit', 'withdrawn')
"""
PEOPLE_SQL = """
SELECT p.id, p.sis_id, p.first_name, p.middle_name, p.last_name, p.birth_date,
       cp.code AS campus, l.code AS level
  FROM sis.people p LEFT JOIN sis.campuses cp ON cp.id = p.campus_id
  LEFT JOIN sis.levels l ON l.id = p.level_id
 WHERE p.id IN (SELECT person_id FROM sis.enrollments WHERE id = ANY($1::bigint[]))
"""
ATTENDANCE_SQL = """
SELECT a.section_id, a.person_id, a.meets_on, a.mark FROM sis.attendance a
  JOIN sis.enrollments e ON e.section_id = a.section_id AND e.person_id = a.person_id
 WHERE e.id = ANY($1::bigint[])
"""
DAYS_SQL = """
SELECT d.person_id, d.on_date, d.status, t.id AS term_id FROM sis.attendance_days d
  JOIN sis.terms t ON d.on_date BETWEEN t.starts_on AND t.ends_on AND t.id = ANY($2::bigint[])
 WHERE d.person_id IN (SELECT person_id FROM sis.enrollments WHERE id = ANY($1::bigint[]))
"""
GRADES_SQL = """
SELECT g.enrollment_id, g.grade FROM sis.grades g
 WHERE g.enrollment_id = ANY($1::bigint[]) AND g.grade IS NOT NULL AND g.grade <> ''
"""


async def read_sis(ctx: JobContext, params: EdFiSyncParams) -> dict[str, list[dict[str, Any]]]:
    """Everything the run sends, read in one snapshot."""
    today = ctx.scheduled_for.date()
    pool = await ctx.db.pool()
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        terms = [
            dict(r)
            for r in await conn.fetch(TERMS_SQL, params.terms, today, params.ended_within_days)
        ]
        term_ids = [t["id"] for t in terms]
        sections = [dict(r) for r in await conn.fetch(SECTIONS_SQL, term_ids)]
        enrollments = [
            dict(r) for r in await conn.fetch(ENROLLMENTS_SQL, [s["id"] for s in sections])
        ]
        ids = [e["id"] for e in enrollments]
        people = [dict(r) for r in await conn.fetch(PEOPLE_SQL, ids)]
        rows = {
            "terms": terms, "sections": sections, "enrollments": enrollments, "people": people,
            "attendance": [dict(r) for r in await conn.fetch(ATTENDANCE_SQL, ids)],
            "days": [dict(r) for r in await conn.fetch(DAYS_SQL, ids, term_ids)],
            "grades": [dict(r) for r in await conn.fetch(GRADES_SQL, ids)],
        }  # fmt: skip
    for p in people:
        p["grade_level"] = params.grade_levels.get(p.pop("level") or "")
    return rows


@dataclass
class Counts:
    resource: str
    order: int
    sent: int = 0
    created: int = 0
    updated: int = 0
    failed: int = 0
    unchanged: int = 0
    retried: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)


class _State:
    """What the server took (digests) and what it refused (retries), per resource."""

    def __init__(self, conn: Any, job_id: str) -> None:
        self.conn, self.job_id = conn, job_id
        self.digests: dict[str, dict[str, str]] = {}
        self.retries: dict[str, dict[str, int]] = {}

    async def load(self) -> None:
        for r in await self.conn.fetch(
            "SELECT resource, natural_key, digest FROM sis.edfi_sync_records WHERE job_id = $1",
            self.job_id,
        ):
            self.digests.setdefault(r["resource"], {})[r["natural_key"]] = r["digest"]
        for r in await self.conn.fetch(
            "SELECT resource, natural_key, attempts FROM sis.edfi_retries WHERE job_id = $1",
            self.job_id,
        ):
            self.retries.setdefault(r["resource"], {})[r["natural_key"]] = r["attempts"]

    async def save(self, resource: str, taken: Sequence[tuple[str, str]],
                   refused: Sequence[tuple[str, int | None, str]]) -> None:  # fmt: skip
        """One transaction per batch: the digests taken, their retries gone, the refusals kept."""
        async with self.conn.transaction():
            await self.conn.executemany(
                "INSERT INTO sis.edfi_sync_records (job_id, resource, natural_key, digest) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (job_id, resource, natural_key) DO UPDATE SET digest = EXCLUDED.digest, synced_at = now()",
                [(self.job_id, resource, k, d) for k, d in taken],
            )
            await self.conn.execute(
                "DELETE FROM sis.edfi_retries WHERE job_id = $1 AND resource = $2 AND natural_key = ANY($3::text[])",
                self.job_id, resource, [k for k, _ in taken],
            )  # fmt: skip
            await self.conn.executemany(
                "INSERT INTO sis.edfi_retries (job_id, resource, natural_key, last_status, last_error)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (job_id, resource, natural_key) DO UPDATE SET"
                " attempts = sis.edfi_retries.attempts + 1, last_status = EXCLUDED.last_status,"
                " last_error = EXCLUDED.last_error, last_failed_at = now()",
                [(self.job_id, resource, k, s, e[:500]) for k, s, e in refused],
            )

    async def forget_gone(self, resource: str, wanted: set[str]) -> None:
        """A refused record no longer in the SIS is not retried."""
        gone = [k for k in self.retries.get(resource, {}) if k not in wanted]
        if gone:
            await self.conn.execute(
                "DELETE FROM sis.edfi_retries WHERE job_id = $1 AND resource = $2 AND natural_key = ANY($3::text[])",
                self.job_id, resource, gone,
            )  # fmt: skip


async def _send(edfi: EdFiClient, state: _State, counts: Counts,
                records: list[tuple[str, dict[str, Any]]]) -> None:  # fmt: skip
    """POST each record (a few at once), saving what the server took every few hundred."""
    taken: list[tuple[str, str]] = []
    refused: list[tuple[str, int | None, str]] = []
    gate = asyncio.Semaphore(SEND_CONCURRENCY)

    async def one(key: str, body: dict[str, Any]) -> None:
        async with gate:
            try:
                outcome = await edfi.upsert(counts.resource, body)
            except EdFiRefused as exc:
                counts.failed += 1
                refused.append((key, exc.status, exc.problem))
                counts.failures.append((key, f"{exc.status}: {exc.problem}"))
                return
            counts.created += outcome == "created"
            counts.updated += outcome == "updated"
            taken.append((key, digest(body)))

    try:
        for start in range(0, len(records), SAVE_EVERY):
            batch = records[start : start + SAVE_EVERY]
            counts.sent += len(batch)
            try:  # a task group: when the server goes away, the records still in flight stop too
                async with asyncio.TaskGroup() as group:
                    for key, body in batch:
                        group.create_task(one(key, body))
            except BaseExceptionGroup as failed:
                raise failed.exceptions[0] from None
            await state.save(counts.resource, taken, refused)
            taken.clear()
            refused.clear()
    finally:  # a server that stopped answering: keep what it took before
        if taken or refused:
            await state.save(counts.resource, taken, refused)


def _pending(resource: str, wanted: dict[str, dict[str, Any]], state: _State,
             counts: Counts) -> list[tuple[str, dict[str, Any]]]:  # fmt: skip
    """Retries first, then what is new or changed; the rest is counted unchanged."""
    retry = state.retries.get(resource, {})
    stored = state.digests.get(resource, {})
    first = [(k, b) for k, b in wanted.items() if k in retry]
    then = [(k, b) for k, b in wanted.items() if k not in retry and stored.get(k) != digest(b)]
    counts.retried = len(first)
    counts.unchanged = len(wanted) - len(first) - len(then)
    return first + then


async def run(ctx: JobContext, params: EdFiSyncParams) -> None:
    rows = await read_sis(ctx, params)
    words = edfi_records.Vocabulary(
        params.namespace, params.term_descriptor, params.grading_period_descriptor,
        params.grade_type_descriptor, params.default_grade_level,
    )  # fmt: skip
    schools: dict[str | None, int] = {None: params.school_id}
    schools.update(params.campus_school_ids)
    shaped = edfi_records.shape(rows, schools, words, params.send_present)
    edfi = EdFiClient(
        params.base_url, read_secret(params.key_secret, "param.key_secret"),
        read_secret(params.client_secret, "param.client_secret"),
        secret_names=f"the secrets {params.key_secret!r} and {params.client_secret!r}",
        settings=ctx.settings,
    )  # fmt: skip
    pool = await ctx.db.pool()
    table: list[Counts] = []
    async with edfi, pool.acquire() as conn:
        dependencies = await edfi.dependencies()
        ranks = {d.resource.removeprefix("/ed-fi/"): d.order for d in dependencies}
        ordered, missing = edfi_records.order(
            [(d.resource, d.order) for d in dependencies if "Create" in d.operations],
            edfi_records.RESOURCES,
        )  # fmt: skip
        state = _State(conn, ctx.job_id)
        await state.load()
        try:
            for n, resource in enumerate(ordered, 1):
                counts = Counts(resource, ranks[resource])
                table.append(counts)
                wanted = shaped.records[resource]
                pending = _pending(resource, wanted, state, counts)
                await ctx.progress(n, len(ordered), f"{resource}: {len(pending)} to send")
                if params.dry_run:
                    counts.sent = len(pending)
                    continue
                await state.forget_gone(resource, set(wanted))
                await _send(edfi, state, counts, pending)
        except Unavailable:  # the server stopped answering: say how far the run got
            _write(ctx, params, table, missing, shaped.left_out, stopped=True)
            raise
    _write(ctx, params, table, missing, shaped.left_out)


def _write(ctx: JobContext, params: EdFiSyncParams, table: list[Counts], missing: list[str],
           left_out: list[tuple[str, str, str]], *, stopped: bool = False) -> None:  # fmt: skip
    """The per-resource result table, as text and HTML; fails the run when a record failed."""
    sent, failed = sum(c.sent for c in table), sum(c.failed for c in table)
    verb = "would send" if params.dry_run else "sent"
    summary = (
        f"Ed-Fi Data Sync to {params.base_url}: {verb} {sent} records in "
        f"{len(table)} resources, {failed} failed"
    )
    if stopped:
        summary += f"; the server stopped answering during {table[-1].resource if table else 'the first resource'}"
    out = ctx.output
    out.summary = summary[:300]
    out.line(summary)
    out.line(
        f"{'order':>5}  {'resource':<32} {'sent':>6} {'created':>8} {'updated':>8} {'failed':>7} {'unchanged':>10} {'retried':>8}"
    )
    for c in table:
        out.line(
            f"{c.order:>5}  {c.resource:<32} {c.sent:>6} {c.created:>8} {c.updated:>8} {c.failed:>7} {c.unchanged:>10} {c.retried:>8}"
        )
    for resource in missing:
        out.line(
            f"not sent: the server's dependency document has no /ed-fi/{resource} it can create"
        )
    notes = [(c.resource, k, why) for c in table for k, why in c.failures]
    for resource, key, why in notes[:100]:
        out.line(f"  failed  {resource} {key}  {why}")
    for resource, key, why in left_out[:50]:
        out.line(f"  left out  {resource} {key}  {why}")
    if len(left_out) > 50:
        out.line(f"  ... and {len(left_out) - 50} more left out")
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "Order",
            "Resource",
            "Sent",
            "Created",
            "Updated",
            "Failed",
            "Unchanged",
            "Retried",
        )
    )
    body = "".join(
        f"<tr><td>{c.order}</td><td>{escape(c.resource)}</td><td>{c.sent}</td><td>{c.created}</td>"
        f"<td>{c.updated}</td><td>{c.failed}</td><td>{c.unchanged}</td><td>{c.retried}</td></tr>"
        for c in table
    )
    fails = "".join(f"<li>{escape(r)} {escape(k)}: {escape(w)}</li>" for r, k, w in notes[:100])
    out.html(f"<p>{escape(summary)}</p><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
             + (f"<ul>{fails}</ul>" if fails else ""))  # fmt: skip
    if failed and not stopped:
        raise JobFailed(
            f"the Ed-Fi ODS/API refused {failed} record(s) (see the output); the rest was sent, "
            "and the next run sends the refused ones again first"
        )


job_type = JobType(
    name="rostering.edfi_sync",
    pool="integration",
    title="Ed-Fi Data Sync",
    description=(
        "Sends sessions, courses, course offerings, sections, grading periods, students, student "
        "school and section associations, attendance events and grades to an Ed-Fi ODS/API v7 "
        "(Data Standard 5, OAuth 2 client credentials) in the server's published dependency "
        "order, upserting by natural key and only what changed since the last run; refused "
        "records are retried by the next run. Best run in the evening, after peak hours."
    ),
    params=EdFiSyncParams,
    run=run,
    timeout_s=3 * 3600,
)
