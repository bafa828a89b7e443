"""``rostering.oneroster_csv_export``: a OneRoster 1.2 CSV export of the chosen terms.

Reads orgs, terms, courses, sections, the students and lead faculty in them, their roles and
enrollments (and, when asked, demographics and the students' guardians) in one snapshot of the SIS; makes a bulk set, or a
delta set of what changed since the job's last successful run (``tobedeleted`` for what is gone);
checks every file against the CSV Binding 1.2.1 (a failure names the file, line and column and
writes nothing); and writes the zip into the batch folder atomically. The files and the state
depend only on the SIS and the occurrence, so an occurrence run twice writes the same zip and
leaves the same state. An SFTP Upload job chained after it (``--after``) sends the zip on.
"""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from belltower.errors import InvalidInput
from belltower.fences import BatchPath
from belltower.jobtypes import JobContext, JobType

from .. import batchfiles, safety
from ..oneroster import package, roster, state, validate
from ..oneroster.delta import Planned, Records, Snapshot, plan
from ..report import Tally

NAME_SQL = "SELECT value FROM sis.school_preferences WHERE key = 'institution_name'"


Terms = Annotated[
    list[str], msgspec.Meta(description="Term codes to export; empty: current and upcoming")
]
UpcomingDays = Annotated[int, msgspec.Meta(ge=0, le=366)]
InstitutionId = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[^\s,]{1,64}$", description="sourcedId of the root org (type district)"
    ),
]
InstitutionName = Annotated[
    str,
    msgspec.Meta(
        max_length=200,
        description="Name of the root org; empty: the SIS preference institution_name",
    ),
]
"""The roster's scope and root org, shared with the REST push (the same records)."""


class OneRosterExportParams(msgspec.Struct, forbid_unknown_fields=True):
    mode: Annotated[
        Literal["bulk", "delta"],
        msgspec.Meta(
            description="bulk: every record; delta: what changed since the last successful run "
            "(the first run of a job is bulk)"
        ),
    ] = "bulk"
    folder: Annotated[
        BatchPath, msgspec.Meta(description="Folder inside the batch folder for the zip")
    ] = "oneroster"
    file_prefix: Annotated[
        str,
        msgspec.Meta(
            pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
            description="Zip name: <prefix>_<mode>_<YYYYMMDDHHMMSS>.zip",
        ),
    ] = "oneroster"
    terms: Terms = []
    upcoming_days: UpcomingDays = 30
    institution_id: InstitutionId = "institution"
    institution_name: InstitutionName = ""
    demographics: Annotated[
        bool, msgspec.Meta(description="Also send demographics.csv (birth date and sex)")
    ] = False
    guardians: Annotated[
        bool,
        msgspec.Meta(
            description="Also send the students' guardians as users (parent, guardian or "
            "relative role), listed as the students' agents"
        ),
    ] = False
    system_name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] = "Belltower"
    system_code: Annotated[str, msgspec.Meta(max_length=100)] = "belltower"
    safety: Annotated[
        safety.SafetyParams,
        msgspec.Meta(
            description="Safety hold: stop before writing when more than these shares of a "
            "file's records would be deleted or changed since the last run"
        ),
    ] = msgspec.field(default_factory=safety.SafetyParams)


async def read_records(
    ctx: JobContext, terms: list[str], upcoming_days: int, institution_id: str,
    institution_name: str, *, demographics: bool, guardians: bool,
) -> Records:  # fmt: skip
    """The OneRoster records of ``terms`` in one snapshot of the SIS (also what the REST push
    sends)."""
    return await read_snapshot(
        await ctx.db.pool(), ctx.scheduled_for.date(), terms, upcoming_days, institution_id,
        institution_name, demographics=demographics, guardians=guardians,
    )  # fmt: skip


async def read_snapshot(
    pool: Any, today: date, terms: list[str], upcoming_days: int, institution_id: str,
    institution_name: str, *, demographics: bool, guardians: bool,
) -> Records:  # fmt: skip
    """:func:`read_records` for ``today``, outside a run (the OneRoster provider reads so)."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        found = await roster.read_terms(conn, terms, today, upcoming_days)
        unknown = sorted(set(terms) - {t["code"] for t in found})
        if unknown:
            raise InvalidInput(
                "param.terms", f"no term with code {', '.join(unknown)}", "codes of sis.terms"
            )
        name = institution_name or await conn.fetchval(NAME_SQL) or "Institution"
        root = roster.Institution(institution_id, name)
        return await roster.build(conn, root, found, demographics=demographics, guardians=guardians)


def change_since(base: Snapshot | None, records: Records) -> safety.Change:
    """What this run changes per file against the last run's snapshot (empty for a first run)."""
    if base is None:
        return {}
    change: safety.Change = {}
    for name in sorted(set(records) | set(base.files)):
        before = {sid: safety.digest(v) for sid, (v, _) in base.files.get(name, {}).items()}
        after = {sid: safety.digest(v) for sid, v in records.get(name, {}).items()}
        change[name] = safety.diff(before, after)
    return change


def _report(tally: Tally, planned: Planned, mode: str) -> None:
    for name, counts in planned.counts.items():
        sent = counts["active"] + counts["tobedeleted"]
        tally.processed += sent
        if mode == "delta":
            tally.fact(
                f"{name}.csv: {counts['active']} new or changed, {counts['tobedeleted']} "
                f"tobedeleted, {counts['unchanged']} unchanged" + ("" if sent else " (absent)")
            )
        else:
            tally.fact(f"{name}.csv: {sent} records")


async def run(ctx: JobContext, params: OneRosterExportParams) -> None:
    folder = batchfiles.inside(Path(ctx.settings.batch_folder), params.folder, "param.folder")
    records = await read_records(
        ctx, params.terms, params.upcoming_days, params.institution_id, params.institution_name,
        demographics=params.demographics, guardians=params.guardians,
    )  # fmt: skip
    await ctx.progress(1, 3, "read the SIS; comparing with the last run")
    pool = await ctx.db.pool()
    async with pool.acquire() as conn:
        base_id, base = await state.load_base(conn, ctx.job_id, ctx.occurrence_id)
    tally = Tally("OneRoster CSV export")
    mode = params.mode
    if mode == "delta" and base is None:
        mode = "bulk"
        tally.fact("no earlier run of this job to compare with: sent as a bulk set")
    planned = plan(records, base if mode == "delta" else None, ctx.scheduled_for)
    members = package.files(planned.rows, mode, params.system_name, params.system_code)
    known: dict[str, set[str]] = {name: set(r) for name, r in records.items()}
    for name, ids in (base.ids() if base else {}).items():
        known.setdefault(name, set()).update(ids)
    validate.check(members, known if mode == "delta" else None)
    released = await safety.guard(ctx, params.safety, change_since(base, records))
    if released:
        tally.fact(released)
    await ctx.progress(2, 3, "the files pass the CSV binding 1.2.1; writing the zip")
    _report(tally, planned, mode)
    summary = await _write(ctx, params, folder, mode, members, tally)
    async with pool.acquire() as conn:
        await state.save(
            conn, ctx.job_id, ctx.occurrence_id, base_id, ctx.scheduled_for, mode, planned.snapshot
        )
    await ctx.progress(3, 3, summary)
    tally.write(ctx, summary)


async def _write(ctx: JobContext, params: OneRosterExportParams, folder: Path, mode: str,
                 members: dict[str, bytes], tally: Tally) -> str:  # fmt: skip
    if len(members) == 1:
        return "OneRoster delta: nothing changed since the last run; no file written"
    name = f"{params.file_prefix}_{mode}_{batchfiles.stamp(ctx.scheduled_for)}.zip"
    data = package.zipped(members, ctx.scheduled_for)
    target = folder / name
    await asyncio.to_thread(batchfiles.atomic_write, target, data)
    relative = target.relative_to(Path(ctx.settings.batch_folder))
    tally.fact(f"wrote {relative} ({len(data)} bytes): " + ", ".join(sorted(members)))
    return f"OneRoster {mode} set {relative}: {tally.processed} records in {len(members) - 1} files"


job_type = JobType(
    name="rostering.oneroster_csv_export",
    pool="integration",
    title="OneRoster LMS Export",
    description=(
        "Sends student, faculty and course information to a learning management system on a "
        "regular interval as a OneRoster 1.2 CSV zip (CSV Binding 1.2.1: orgs, academic "
        "sessions, courses, classes, users, roles, enrollments, optionally demographics), bulk or "
        "delta, checked against the binding before it is written to the batch folder; chain an "
        "SFTP Upload job to send it. It is the path for the seeds' Edvance360 LMS Export "
        "(Edvance360 publishes no import specification of its own) and for any LMS or tool that "
        "imports OneRoster CSV."
    ),
    params=OneRosterExportParams,
    run=run,
    timeout_s=3600,
)
