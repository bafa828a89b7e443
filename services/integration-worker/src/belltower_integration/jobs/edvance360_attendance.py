"""``lms.edvance360_attendance_import``: the SONIS Edvance360 Attendance Import.

Imports the Excel file ``360attend.xlsx`` when it is in the batch folder at the time the job runs
(the seed's words), writes its marks to ``sis.attendance`` (:mod:`..attendance`) and, with a
notification group or addresses, mails the result. Edvance360 publishes no specification of the
file, so its layout is **Belltower's own**: the first worksheet, a header row, then one mark a
row, with the columns (any order, case and spacing ignored) ``Student ID`` (the SIS id),
``Course`` (course code), ``Term`` (term code), ``Section`` (section code; optional when the
student is in one section of the course), ``Date`` (an Excel date, ``YYYY-MM-DD`` or
``M/D/YYYY``) and ``Attendance`` (present, absent, tardy or late, excused; or P, A, T/L, E).
Once imported (not in a dry run) the file is moved to ``processed/360attend-<YYYYMMDDHHMMSS>.xlsx``
beside it, so the same occurrence run again finds nothing to do; the same file dropped again
changes nothing, as marks are keyed by section, student and day.
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import msgspec

from belltower.errors import JobFailed
from belltower.fences import BatchPath
from belltower.jobtypes import JobContext, JobType

from .. import attendance, batchfiles, importing
from ..report import Tally

COLUMNS = {"studentid": "sis_id", "course": "course", "term": "term", "section": "section",
           "date": "date", "attendance": "mark"}  # fmt: skip
REQUIRED = ("sis_id", "course", "term", "date", "mark")
MAX_BYTES = 20 * 1024 * 1024
MAX_ROWS = 200_000


class Edvance360AttendanceParams(msgspec.Struct, forbid_unknown_fields=True):
    folder: Annotated[
        BatchPath,
        msgspec.Meta(description="Folder inside the batch folder holding the file ('': itself)"),
    ] = ""
    file_name: Annotated[
        str, msgspec.Meta(pattern=r"^[^/\\\x00-\x1f]{1,100}\.xlsx$", description="The Excel file")
    ] = "360attend.xlsx"
    settle_s: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 10.0
    overwrite: Annotated[
        bool, msgspec.Meta(description="Replace a different mark the SIS has for the day")
    ] = True
    dry_run: Annotated[
        bool, msgspec.Meta(description="Check and count; write nothing and leave the file")
    ] = False
    group: importing.Group | None = None
    notify: importing.Addresses = []


def _day(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value or "").strip()
    for form in ("%Y-%m-%d", "%m/%d/%Y"):
        try:
            return datetime.strptime(text, form).date()
        except ValueError:
            continue
    return None


def read_sheet(path: Path, tally: Tally) -> list[attendance.Row]:
    """The marks of the first worksheet; a row that cannot be read is skipped and named."""
    import openpyxl  # only this job needs it

    if path.stat().st_size > MAX_BYTES:
        raise JobFailed(f"{path.name} is larger than {MAX_BYTES // (1024 * 1024)} MiB")
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a file that is not .xlsx
        raise JobFailed(f"{path.name} is not an Excel workbook ({type(exc).__name__})") from None
    try:
        sheet = book.worksheets[0]
        lines = sheet.iter_rows(values_only=True)
        header = next(lines, None) or ()
        names = {
            i: COLUMNS.get("".join(str(h or "").lower().split())) for i, h in enumerate(header)
        }
        missing = [c for c in REQUIRED if c not in names.values()]
        if missing:
            raise JobFailed(
                f"{path.name}: the header lacks {', '.join(missing)} (expected Student ID, "
                "Course, Term, Section, Date, Attendance)"
            )
        rows: list[attendance.Row] = []
        for n, values in enumerate(lines, 2):
            if n - 1 > MAX_ROWS:
                raise JobFailed(f"{path.name} has more than {MAX_ROWS} rows")
            cells = {name: values[i] for i, name in names.items() if name and i < len(values)}
            if all(v in (None, "") for v in cells.values()):
                continue
            text = {k: str(v).strip() if v is not None else "" for k, v in cells.items()}
            record = f"row {n}: {text.get('sis_id') or '(no id)'}"
            day = _day(cells.get("date"))
            empty = [c for c in REQUIRED if c != "date" and not text.get(c)]
            if empty or day is None:
                why = f"{', '.join(empty)} empty" if empty else f"date {text.get('date')!r}"
                tally.skip(record, f"cannot be read: {why}")
                continue
            rows.append(attendance.Row(record, text["sis_id"], text["course"], text["term"],
                                       text.get("section") or None, day, text["mark"]))  # fmt: skip
        return rows
    finally:
        book.close()


async def run(ctx: JobContext, params: Edvance360AttendanceParams) -> None:
    base = Path(ctx.settings.batch_folder)
    folder = batchfiles.inside(base, params.folder, "param.folder")
    drop = batchfiles.within(base, folder / params.file_name, "param.file_name")
    tally = Tally("Edvance360 attendance import")
    if not await asyncio.to_thread(drop.is_file):
        tally.write(ctx, f"no {params.file_name} in the batch folder; nothing to import")
        return
    if not await asyncio.to_thread(batchfiles.settled, drop, params.settle_s):
        tally.write(ctx, f"{params.file_name} is still being written; left for the next run")
        return
    rows = await asyncio.to_thread(read_sheet, drop, tally)
    pool = await ctx.db.pool()
    async with pool.acquire() as conn:
        counts = await attendance.apply(
            conn, rows, tally, overwrite=params.overwrite, dry_run=params.dry_run
        )
    tally.fact(f"{params.file_name}: {len(rows)} marks read; {counts.line()}")
    if params.dry_run:
        tally.fact("dry run: nothing written, the file left where it is")
    else:
        moved = await asyncio.to_thread(
            batchfiles.archive, drop, folder / "processed",
            f"{Path(params.file_name).stem}-{batchfiles.stamp(ctx.scheduled_for)}.xlsx",
        )  # fmt: skip
        tally.fact(f"moved to processed/{moved.name}")
    summary = (
        f"Edvance360 attendance import{' (dry run)' if params.dry_run else ''}: {counts.line()}, "
        f"{tally.skipped} rows skipped"
    )
    await importing.finish(ctx, tally, summary, params.group, params.notify)


job_type = JobType(
    name="lms.edvance360_attendance_import",
    pool="integration",
    title="Edvance360 Attendance Import",
    description=(
        "Imports the attendance Edvance360 recorded from 360attend.xlsx in the batch folder into "
        "the SIS (one mark per student, section and day; a repeat changes nothing), moves the "
        "file to processed/ and mails the result to the notification group. The file layout is "
        "Belltower's own (Edvance360 publishes none). Has a dry run."
    ),
    params=Edvance360AttendanceParams,
    run=run,
    timeout_s=1800,
)
