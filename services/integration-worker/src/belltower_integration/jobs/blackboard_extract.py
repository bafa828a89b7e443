"""``lms.blackboard_user_extract``: the SONIS Blackboard User Extract (the Student/Teacher Extract).

Writes the students and lead faculty of the chosen terms as a Blackboard Learn **SIS Framework
Snapshot Flat File** of Person (User) records: a header row of the feed's field names, then one
pipe-delimited row per person, UTF-8 with a byte order mark (Learn reads a file without one as
ISO-8859-1). Fields: ``external_person_key`` (SIS id), ``data_source_key``, ``user_id`` (login),
``firstname``, ``lastname``, ``middlename``, ``email``, ``student_id`` (students' SIS id),
``institution_role`` (``institution_role_student`` / ``institution_role_faculty``; a person who
teaches one section and takes another is faculty), ``system_role`` ``none``, ``available_ind``
``Y``, ``row_status`` ``ENABLED``; each within the lengths Learn documents. A value holding the
delimiter or a line break cannot be written unescaped, so that person is skipped and named.
The file goes into the batch folder atomically as ``<folder>/<file_prefix>_<YYYYMMDDHHMMSS>.txt``
(the occurrence's time), so an occurrence run again writes the same bytes under the same name;
an SFTP Upload job chained after it sends it on, as with the other exports.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import msgspec

from belltower.errors import JobFailed
from belltower.fences import BatchPath
from belltower.jobtypes import JobContext, JobType

from .. import batchfiles, lmsroster
from ..report import Tally

HEADER = ("external_person_key", "data_source_key", "user_id", "firstname", "lastname",
          "middlename", "email", "student_id", "institution_role", "system_role",
          "available_ind", "row_status")  # fmt: skip
MAX_LENGTH = {"external_person_key": 64, "data_source_key": 256, "user_id": 50,
              "firstname": 100, "lastname": 100, "middlename": 100, "email": 100,
              "student_id": 100}  # fmt: skip
REQUIRED = ("external_person_key", "data_source_key", "user_id", "firstname", "lastname")
DELIMITER = "|"
BOM = "\ufeff"
MIDDLE_SQL = "SELECT sis_id, middle_name FROM sis.people WHERE sis_id = ANY($1::text[])"
Key = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


class UserExtractParams(msgspec.Struct, forbid_unknown_fields=True):
    folder: Annotated[
        BatchPath, msgspec.Meta(description="Folder inside the batch folder for the feed file")
    ] = "blackboard"
    file_prefix: Annotated[
        str,
        msgspec.Meta(
            pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
            description="File name: <prefix>_<YYYYMMDDHHMMSS>.txt",
        ),
    ] = "users"
    data_source_key: Annotated[
        Key, msgspec.Meta(description="Learn data source key of the records (data_source_key)")
    ] = "SIS"
    institution_role_student: Annotated[
        Key, msgspec.Meta(description="Learn institution role of students")
    ] = "STUDENT"
    institution_role_faculty: Annotated[
        Key, msgspec.Meta(description="Learn institution role of faculty")
    ] = "FACULTY"
    terms: lmsroster.Terms = []
    upcoming_days: lmsroster.UpcomingDays = 30


def row(person: Any, middle: str | None, teaches: bool, params: UserExtractParams) -> list[str]:
    return [
        person["sis_id"], params.data_source_key, person["login_id"], person["first_name"],
        person["last_name"], middle or "", person["email"] or "",
        "" if teaches else person["sis_id"],
        params.institution_role_faculty if teaches else params.institution_role_student,
        "none", "Y", "ENABLED",
    ]  # fmt: skip


def problem(values: list[str]) -> str | None:
    """Why a row cannot go into the feed as it is (None: it can)."""
    for name, value in zip(HEADER, values, strict=True):
        if name in REQUIRED and not value.strip():
            return f"{name} is required and empty"
        if any(c in value for c in (DELIMITER, "\r", "\n")):
            return f"{name} holds the delimiter {DELIMITER!r} or a line break"
        if len(value) > MAX_LENGTH.get(name, 100):
            return f"{name} is longer than Learn's {MAX_LENGTH.get(name, 100)} characters"
    return None


async def run(ctx: JobContext, params: UserExtractParams) -> None:
    base = Path(ctx.settings.batch_folder)
    folder = batchfiles.inside(base, params.folder, "param.folder")
    pool = await ctx.db.pool()
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        roster = await lmsroster.read(
            conn, params.terms, params.upcoming_days, ctx.scheduled_for.date()
        )
        middles = {
            r["sis_id"]: r["middle_name"] for r in await conn.fetch(MIDDLE_SQL, list(roster.people))
        }
    teachers = {e.user for e in roster.enrolments.values() if e.role == "teacher"}
    tally = Tally("Blackboard User Extract")
    lines = [DELIMITER.join(HEADER)]
    counts = {"students": 0, "faculty": 0}
    for sis_id in sorted(roster.people):
        values = row(roster.people[sis_id], middles.get(sis_id), sis_id in teachers, params)
        why = problem(values)
        if why:
            tally.skip(f"person {sis_id}", why)
            continue
        counts["faculty" if sis_id in teachers else "students"] += 1
        lines.append(DELIMITER.join(values))
        tally.ok()
    if len(lines) == 1:
        raise JobFailed(
            "no students or instructors to extract for the chosen terms"
            + (f" ({tally.skipped} skipped, see the output)" if tally.skipped else "")
            + "; no file written, as a feed without users would disable every user when Learn "
            "takes it as a complete refresh"
        )
    name = f"{params.file_prefix}_{batchfiles.stamp(ctx.scheduled_for)}.txt"
    data = (BOM + "\n".join(lines) + "\n").encode("utf-8")
    await asyncio.to_thread(batchfiles.atomic_write, folder / name, data)
    relative = (folder / name).relative_to(base)
    tally.fact(
        f"wrote {relative} ({len(data)} bytes): {counts['students']} students, "
        f"{counts['faculty']} faculty, data source {params.data_source_key}"
    )
    tally.write(
        ctx,
        f"Blackboard User Extract {relative}: {tally.processed} users, {tally.skipped} skipped",
    )


job_type = JobType(
    name="lms.blackboard_user_extract",
    pool="integration",
    title="Blackboard User Extract",
    description=(
        "Writes the students and instructors of the current and upcoming terms as a Blackboard "
        "Learn SIS Framework Snapshot Flat File of users (pipe-delimited, header row) into the "
        "batch folder, for Blackboard to take in; chain an SFTP Upload job to send it."
    ),
    params=UserExtractParams,
    run=run,
    timeout_s=1800,
)
