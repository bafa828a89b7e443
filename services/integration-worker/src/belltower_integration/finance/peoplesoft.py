"""``finance.peoplesoft_export``: the seeds' PeopleSoft Export File notifier, with its export.

Writes the ledger postings recorded since the previous export as PeopleSoft GL journal lines
(one per transaction code, Belltower's own fixed-width layout in ``layouts/peoplesoft.py``),
transmits the file to the PeopleSoft server by SFTP when one is given, and tells the group the
date and time of the export and whether it was transmitted. A re-run of the same occurrence
writes nothing new: it retries only a transmission that failed.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import msgspec

from belltower.errors import BelltowerError, JobFailed
from belltower.fences import BatchPath
from belltower.jobtypes import JobContext, JobType

from .. import sftp
from ..notify import recipients
from ..report import Tally
from . import common, files, transfer
from .common import DryRun, FileName, Meta
from .layouts import peoplesoft

Account = Annotated[str, Meta(pattern=r"^[A-Za-z0-9]{1,10}$")]
Email = Annotated[str, Meta(pattern=r"^[^@\s]{1,64}@[^@\s]{1,190}$")]


class PeopleSoftParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    business_unit: Annotated[str, Meta(pattern=r"^[A-Z0-9]{1,5}$")] = "SIS01"
    accounts: Annotated[
        dict[common.Code, Account],
        Meta(max_length=200, description="GL account per transaction code; default: the code"),
    ] = {}
    sftp: transfer.Sftp | None = None
    group: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]{0,32}$")] = "BURSAR"
    notify: Annotated[list[Email], Meta(max_length=50)] = []
    first_run_look_back_days: Annotated[int, Meta(ge=1, le=3650)] = 1
    folder: Annotated[BatchPath, Meta(description="folder inside the batch folder")] = "peoplesoft"
    file_name: FileName = "peoplesoft_journal_{stamp}.txt"
    dry_run: DryRun = False


async def _lines(
    ctx: JobContext, params: PeopleSoftParams, since: datetime, until: datetime
) -> list[dict[str, Any]]:
    pool = await ctx.db.pool()
    records = await pool.fetch(
        """SELECT x.code, c.name, sum(x.amount) AS amount, count(*)::int AS postings
             FROM sis.transactions x JOIN sis.transaction_codes c ON c.code = x.code
            WHERE x.created_at > $1 AND x.created_at <= $2
            GROUP BY x.code, c.name ORDER BY x.code""",
        since, until,
    )  # fmt: skip
    journal = f"BT{until:%y%m%d%H%M}"
    return [
        {"business_unit": params.business_unit, "journal_id": journal, "journal_date": until.date(),
         "line": n, "account": params.accounts.get(r["code"], r["code"]), "amount": r["amount"],
         "description": r["name"], "postings": r["postings"]}
        for n, r in enumerate(records, 1)
    ]  # fmt: skip


async def _transmit(ctx: JobContext, params: PeopleSoftParams, path: Path) -> tuple[str, str]:
    assert params.sftp is not None
    try:
        [remote] = await sftp.upload(transfer.target(params.sftp), [path])
    except BelltowerError as exc:
        return "failed", exc.message
    return "sent", f"sent to {params.sftp.host}:{remote}"


async def run(ctx: JobContext, params: PeopleSoftParams) -> None:
    pool = await ctx.db.pool()
    tally = Tally("PeopleSoft export")
    target = common.file_in(ctx, params.folder, params.file_name)
    kind = peoplesoft.JOURNAL.kind
    done = await files.written_by_occurrence(pool, ctx, kind)
    if done is not None and (done["status"] != "failed" or params.sftp is None):
        tally.write(
            ctx,
            f"this occurrence already exported {done['file_name']} ({done['status']}); nothing done again",
        )
        return
    until = ctx.scheduled_for.astimezone(UTC)
    if done is None:
        since = await files.last_window_end(pool, ctx.job_id, kind) or until - timedelta(
            days=params.first_run_look_back_days
        )
        lines = await _lines(ctx, params, since, until)
        await files.export(
            ctx,
            tally,
            peoplesoft.JOURNAL,
            lines,
            target,
            dry_run=params.dry_run,
            window=(since, until),
        )
        if params.dry_run:
            tally.write(ctx, f"dry run: {len(lines)} journal lines; nothing written or sent")
            return
        exported_at = datetime.now(UTC)
    else:
        exported_at = done["created_at"]
        target = target.with_name(done["file_name"])
        tally.fact(f"retrying the transmission of {done['file_name']}")
    status, detail = ("done", "written to the batch folder (no SFTP server given)")
    if params.sftp is not None:
        if not await asyncio.to_thread(target.is_file):
            raise JobFailed(f"{target.name} is no longer in the batch folder; run a new export")
        status, detail = await _transmit(ctx, params, target)
        await files.record(
            pool,
            ctx,
            peoplesoft.JOURNAL,
            "export",
            target.name,
            "",
            0,
            status=status,
            detail=detail,
        )
    ok = status != "failed"
    when = f"{exported_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
    tally.fact(f"exported {target.name} at {when}: {detail}")
    subject = f"PeopleSoft export {target.name} {'transmitted' if status == 'sent' else 'written' if ok else 'NOT transmitted'}"
    tally.write(ctx, subject)
    to = await recipients(ctx, params.group or None, list(params.notify))
    if to:
        await ctx.mailer.send(to, subject, ctx.output.text, ctx.output.html_text)
        ctx.output.line(f"told {len(to)} recipient(s)")
    if not ok:
        raise JobFailed(f"the PeopleSoft export {target.name} was not transmitted: {detail}")


job_type = JobType(
    name="finance.peoplesoft_export",
    pool="integration",
    title="Notifier: PeopleSoft Export File",
    description=(
        "Exports the ledger postings since the previous export to the PeopleSoft accounting "
        "software as GL journal lines (Belltower's own layout, docs/billing-and-aid.md), sends "
        "the file by SFTP when a server is given, and alerts the members of the selected group "
        "with the date and time of the export and whether or not it was successfully transmitted."
    ),
    params=PeopleSoftParams,
    run=run,
)
