"""``lms.canvas_export``: the seeds' Canvas LMS Export.

Sends faculty, student and course records to Canvas through its SIS Import API: the chosen terms'
courses and sections, the students enrolled in them and their lead faculty, as a zip of SIS CSV
files; then follows the import until Canvas reports it done. Canvas keys every row by its SIS id,
so a run repeated after a crash posts the same rows and changes nothing twice.
"""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import msgspec

from belltower.errors import InvalidInput, JobFailed
from belltower.fences import PublicUrl
from belltower.jobtypes import JobContext, JobType

from .. import batchfiles, lmssync, safety
from ..canvas import SUCCESS_STATES, CanvasClient, CsvFile, bundle
from ..report import Tally
from ..secrets import read_secret


class CanvasExportParams(msgspec.Struct, forbid_unknown_fields=True):
    base_url: Annotated[
        PublicUrl,
        msgspec.Meta(
            description="Canvas address, e.g. https://school.instructure.com",
        ),
    ]
    account_id: Annotated[str, msgspec.Meta(description="Canvas account id, or 'self'")] = "self"
    token_secret: Annotated[
        str, msgspec.Meta(description="Name of the secret holding the Canvas API token")
    ] = "canvas-token"
    terms: Annotated[
        list[str], msgspec.Meta(description="Term codes to export; empty: current and upcoming")
    ] = []
    upcoming_days: Annotated[int, msgspec.Meta(ge=0)] = 30
    batch_mode: Annotated[
        bool, msgspec.Meta(description="Full batch: Canvas deletes what the bundle leaves out")
    ] = False
    poll_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 1800.0
    keep_copy: Annotated[
        bool, msgspec.Meta(description="Keep the bundle sent in the batch folder under canvas/")
    ] = True
    safety: safety.SafetyParams = msgspec.field(default_factory=safety.SafetyParams)


ENROLLMENT_STATUS = {
    "enrolled": "active",
    "audit": "active",
    "completed": "completed",
    "dropped": "deleted",
    "withdrawn": "deleted",
}

TERMS_SQL = """
SELECT id, code, name, starts_on, ends_on FROM sis.terms
 WHERE CASE WHEN cardinality($1::text[]) > 0 THEN code = ANY($1)
            ELSE ends_on >= $2 AND starts_on <= $2 + $3::int END
 ORDER BY starts_on, code
"""
SECTIONS_SQL = """
SELECT s.id, c.code AS course_code, c.title, t.code AS term_code, s.section_code,
       s.starts_on, s.ends_on, f.sis_id AS faculty_sis_id
  FROM sis.sections s
  JOIN sis.courses c ON c.id = s.course_id
  JOIN sis.terms t ON t.id = s.term_id
  LEFT JOIN sis.people f ON f.id = s.lead_faculty_id
 WHERE s.term_id = ANY($1::bigint[])
 ORDER BY t.code, c.code, s.section_code
"""
ENROLLMENTS_SQL = """
SELECT e.section_id, p.sis_id, e.status
  FROM sis.enrollments e JOIN sis.people p ON p.id = e.person_id
 WHERE e.section_id = ANY($1::bigint[])
 ORDER BY e.section_id, p.sis_id
"""
PEOPLE_SQL = """
SELECT p.sis_id, coalesce(p.login_id, p.sis_id) AS login_id, p.first_name, p.last_name,
       coalesce(p.preferred_name, p.first_name) AS short_name, p.status,
       (SELECT address FROM sis.emails m WHERE m.person_id = p.id
         ORDER BY m.is_primary DESC, m.kind = 'school' DESC, m.id LIMIT 1) AS email
  FROM sis.people p
 WHERE p.sis_id = ANY($1::text[])
 ORDER BY p.sis_id
"""


KINDS = {"users.csv": "user", "courses.csv": "course", "sections.csv": "section",
         "enrollments.csv": "enrolment"}  # fmt: skip
GONE = frozenset({"deleted", "inactive", "deleted_last_completed"})


def sent_records(files: list[CsvFile]) -> dict[str, dict[str, str]]:
    """What the bundle gives Canvas, per kind: record key -> digest. An enrollment the bundle
    marks deleted is one Canvas loses, so it is left out (and counts as deleted)."""
    records: dict[str, dict[str, str]] = {}
    for f in files:
        kind = KINDS.get(f.name)
        if kind is None:
            continue
        status = list(f.header).index("status")
        keyed = {
            "|".join(str(v) for v in (row[1:4] if kind == "enrolment" else row[:1])): safety.digest(
                row
            )
            for row in f.rows
            if row[status] not in GONE
        }
        records[kind] = keyed
    return records


async def _judge(
    ctx: JobContext, params: CanvasExportParams, files: list[CsvFile]
) -> tuple[dict[str, dict[str, str]], safety.Change]:
    """The change against what this job last sent, through the safety hold."""
    pool = await ctx.db.pool()
    async with pool.acquire() as conn:
        stored = await lmssync.load(conn, ctx.job_id)
    records = sent_records(files)
    change = lmssync.change(stored, records)
    await safety.guard(ctx, params.safety, change)
    return records, change


async def _remember(
    ctx: JobContext, records: dict[str, dict[str, str]], change: safety.Change
) -> None:
    pool = await ctx.db.pool()
    async with pool.acquire() as conn, conn.transaction():
        for kind, rows in records.items():
            await lmssync.save(conn, ctx.job_id, kind, [(k, None, d) for k, d in rows.items()])
            await lmssync.forget(
                conn, ctx.job_id, kind, change[kind].deleted if kind in change else []
            )


def course_sis_id(course_code: str, term_code: str) -> str:
    return f"{course_code}-{term_code}"


async def build_files(conn: Any, params: CanvasExportParams, today: date) -> list[CsvFile]:
    """The SIS CSV files for the chosen terms, read in one snapshot of the SIS."""
    terms = await conn.fetch(TERMS_SQL, params.terms, today, params.upcoming_days)
    if params.terms:
        unknown = sorted(set(params.terms) - {t["code"] for t in terms})
        if unknown:
            raise InvalidInput(
                "param.terms", f"no term with code {', '.join(unknown)}", "codes of sis.terms"
            )
    sections = await conn.fetch(SECTIONS_SQL, [t["id"] for t in terms])
    enrollments = await conn.fetch(ENROLLMENTS_SQL, [s["id"] for s in sections])
    by_section = {s["id"]: s for s in sections}
    people_ids = {e["sis_id"] for e in enrollments} | {
        s["faculty_sis_id"] for s in sections if s["faculty_sis_id"]
    }
    people = await conn.fetch(PEOPLE_SQL, sorted(people_ids))

    term_rows = [
        [t["code"], t["name"], "active", f"{t['starts_on']}T00:00:00Z", f"{t['ends_on']}T23:59:59Z"]
        for t in terms
    ]
    courses: dict[str, list[object]] = {}
    section_rows, enrollment_rows = [], []
    for s in sections:
        course_id = course_sis_id(s["course_code"], s["term_code"])
        courses.setdefault(
            course_id,
            [course_id, s["course_code"], s["title"], s["term_code"], "active",
             f"{s['starts_on']}T00:00:00Z", f"{s['ends_on']}T23:59:59Z"],
        )  # fmt: skip
        section_rows.append(
            [f"{course_id}-{s['section_code']}", course_id, f"{s['course_code']} {s['section_code']}",
             "active", f"{s['starts_on']}T00:00:00Z", f"{s['ends_on']}T23:59:59Z"]
        )  # fmt: skip
        if s["faculty_sis_id"]:
            enrollment_rows.append(
                [
                    course_id,
                    f"{course_id}-{s['section_code']}",
                    s["faculty_sis_id"],
                    "teacher",
                    "active",
                ]
            )
    for e in enrollments:
        s = by_section[e["section_id"]]
        course_id = course_sis_id(s["course_code"], s["term_code"])
        enrollment_rows.append(
            [course_id, f"{course_id}-{s['section_code']}", e["sis_id"], "student",
             ENROLLMENT_STATUS.get(e["status"], "inactive")]
        )  # fmt: skip
    user_rows = [
        [p["sis_id"], p["login_id"], p["first_name"], p["last_name"], p["short_name"],
         p["email"] or "", "active"]
        for p in people
    ]  # fmt: skip
    return [
        CsvFile("terms.csv", ["term_id", "name", "status", "start_date", "end_date"], term_rows),
        CsvFile(
            "users.csv",
            ["user_id", "login_id", "first_name", "last_name", "short_name", "email", "status"],
            user_rows,
        ),
        CsvFile(
            "courses.csv",
            ["course_id", "short_name", "long_name", "term_id", "status", "start_date", "end_date"],
            list(courses.values()),
        ),
        CsvFile(
            "sections.csv",
            ["section_id", "course_id", "name", "status", "start_date", "end_date"],
            section_rows,
        ),
        CsvFile(
            "enrollments.csv",
            ["course_id", "section_id", "user_id", "role", "status"],
            enrollment_rows,
        ),
    ]


async def run(ctx: JobContext, params: CanvasExportParams) -> None:
    token = read_secret(params.token_secret, "param.token_secret")
    pool = await ctx.db.pool()
    today = ctx.scheduled_for.date()
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        files = await build_files(conn, params, today)
    data = bundle(files)
    records, change = await _judge(ctx, params, files)
    tally = Tally("Canvas LMS export")
    counts = {f.name: len(f.rows) for f in files}
    tally.fact(
        "bundle: "
        + ", ".join(f"{name} {n} rows" for name, n in counts.items())
        + f" ({len(data)} bytes)"
    )
    if params.keep_copy:
        copy = Path(ctx.settings.batch_folder) / "canvas" / f"canvas_sis_{batchfiles.stamp()}.zip"
        await asyncio.to_thread(batchfiles.atomic_write, copy, data)
        tally.fact(f"copy kept as canvas/{copy.name}")
    await ctx.progress(1, 3, "uploading the SIS import bundle to Canvas")

    async def on_poll(state: dict[str, Any]) -> None:
        await ctx.progress(
            2, 3, f"Canvas import {state.get('id')}: {state.get('workflow_state')} "
            f"({state.get('progress', 0)}%)"
        )  # fmt: skip

    async with CanvasClient(
        params.base_url,
        token,
        token_name=f"the secret {params.token_secret!r}",
        settings=ctx.settings,
    ) as client:
        created = await client.start_import(
            params.account_id,
            data,
            batch_mode=params.batch_mode,
            batch_mode_term_id=params.terms[0]
            if params.batch_mode and len(params.terms) == 1
            else None,
        )
        import_id = created["id"]
        tally.fact(f"Canvas SIS import id {import_id} at {params.base_url}")
        final = await client.wait(
            params.account_id,
            import_id,
            timeout_s=max(1.0, min(params.poll_timeout_s, ctx.remaining() - 5)),
            first_delay_s=0.5,
            on_poll=on_poll,
        )
    state = final.get("workflow_state")
    tally.fact(f"final state: {state}")
    canvas_counts = (final.get("data") or {}).get("counts") or {}
    sent = (
        counts["users.csv"]
        + counts["courses.csv"]
        + counts["sections.csv"]
        + counts["enrollments.csv"]
    )
    for row, message in final.get("processing_warnings") or []:
        tally.skip(str(row), str(message))
    for row, message in final.get("processing_errors") or []:
        tally.fail(str(row), str(message))
    tally.processed = max(0, sent - tally.failed - tally.skipped) if state in SUCCESS_STATES else 0
    if canvas_counts:
        tally.fact(
            "Canvas counted: "
            + ", ".join(f"{k} {v}" for k, v in canvas_counts.items() if isinstance(v, int))
        )
    await ctx.progress(3, 3, f"Canvas import {import_id} {state}")
    if state not in SUCCESS_STATES:
        tally.failed = max(tally.failed, 1)
        tally.write(ctx, f"Canvas SIS import {import_id} ended {state}")
        raise JobFailed(
            f"Canvas SIS import {import_id} ended {state!r}: "
            + "; ".join(f"{r}: {m}" for r, m in (final.get("processing_errors") or [])[:5])
        )
    await _remember(ctx, records, change)
    tally.write(ctx, f"Canvas SIS import {import_id} {state}: {sent} rows sent")


job_type = JobType(
    name="lms.canvas_export",
    pool="integration",
    title="Canvas LMS Export",
    description=(
        "Sends faculty, student, and course records to the Canvas learning management system "
        "through Canvas's SIS Import API (a zip of SIS CSV files), and follows the import until "
        "Canvas reports it imported or failed."
    ),
    params=CanvasExportParams,
    run=run,
    timeout_s=3600,
    # Canvas works through one account's SIS imports one at a time: a second sent meanwhile
    # only queues there, its job's clock running. A job may set its own key and limit.
    concurrency_key="canvas:{base_url}",
    concurrency_limit=1,
)
