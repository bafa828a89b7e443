"""``finance.receipt_pdfs``: Focus's Generate PDFs from Receipts (seed 001).

Saves one PDF per receipt (each valid payment, refund or deferral in ``sis.erp_payments``, the
Store's receipts included) received on the run's day, or on the ``days_back`` days before it too
(set ``as_of`` to run it for past dates), as ``<folder>/<YYYY-MM-DD>/receipt-<number>.pdf`` in
the batch folder, and records the file on the payment (``receipt_file``). A receipt whose PDF is
recorded and still on disk is left alone, so a re-run writes nothing twice; a recorded file that
went missing is made again. PDFs are drawn with fpdf2 (core Helvetica, Latin-1: other characters
are replaced). One transaction per school; ``dry_run`` counts and writes no file.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fpdf import FPDF

from belltower.fences import BatchPath
from belltower.jobtypes import JobContext, JobType

from .. import batchfiles
from ..calculations.common import SEED_001, CalcParams, Counts, Meta, Scope, each_school, preference

KINDS = {"payment": "Payment", "refund": "Refund", "deferral": "Deferral"}


class ReceiptParams(CalcParams, kw_only=True, forbid_unknown_fields=True):
    folder: Annotated[
        BatchPath, Meta(description="folder inside the batch folder for the PDFs")
    ] = "receipts"
    days_back: Annotated[
        int,
        Meta(ge=0, le=366, description="also the receipts of this many days before the run's day"),
    ] = 0


def _latin(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")


def receipt_pdf(r: Any, school: str, zone: ZoneInfo) -> bytes:
    """One receipt as a one-page PDF."""
    pdf = FPDF(format="Letter")
    pdf.set_creation_date(r["received_at"])
    pdf.set_title(_latin(f"Receipt {r['receipt_number']}"))
    pdf.add_page()
    pdf.set_font("helvetica", "B", 16)
    pdf.cell(
        0, 10, _latin(f"{school} - Receipt {r['receipt_number']}"), new_x="LMARGIN", new_y="NEXT"
    )
    pdf.set_font("helvetica", size=11)
    received = r["received_at"].astimezone(zone)
    amount: Decimal = r["amount"]
    lines = [
        f"Date: {received:%Y-%m-%d %H:%M %Z}",
        f"Received from: {r['first_name']} {r['last_name']} ({r['sis_id']})",
        f"{KINDS[r['kind']]}: {amount:,.2f} by {r['method']}",
        f"Invoice: {r['invoice_number'] or '(not matched to an invoice)'}",
        f"Cash drawer: {r['drawer'] or '-'}" + (" (Store receipt)" if r["store_receipt"] else ""),
    ]
    if r["reference"]:
        lines.append(f"Reference: {r['reference']}")
    for line in lines:
        pdf.cell(0, 8, _latin(line), new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


async def _receipts(
    scope: Scope, ctx: JobContext, params: ReceiptParams, zone: ZoneInfo, dry_run: bool
) -> Counts:
    base = Path(ctx.settings.batch_folder)
    folder = batchfiles.inside(base, params.folder, "param.folder")
    start = datetime.combine(scope.today - timedelta(days=params.days_back), time(0), zone)
    end = datetime.combine(scope.today + timedelta(days=1), time(0), zone)
    args: list[Any] = [start, end]
    where = scope.students(args)
    rows = await scope.conn.fetch(
        f"""SELECT pay.*, p.first_name, p.last_name, p.sis_id, i.invoice_number, d.name AS drawer
              FROM sis.erp_payments pay JOIN sis.people p ON p.id = pay.person_id
              LEFT JOIN sis.erp_invoices i ON i.id = pay.invoice_id
              LEFT JOIN sis.erp_cash_drawers d ON d.id = pay.drawer_id
             WHERE pay.valid AND pay.received_at >= $1 AND pay.received_at < $2 AND {where}
             ORDER BY pay.received_at, pay.id""",
        *args,
    )
    school = await scope.conn.fetchval(
        "SELECT name FROM sis.divisions WHERE id = $1", scope.division_id
    )
    counts: Counts = {"PDFs written": 0, "already saved": 0}
    made: list[tuple[int, str]] = []
    for r in rows:
        if r["receipt_file"] and (base / r["receipt_file"]).is_file():
            counts["already saved"] += 1
            continue
        day = r["received_at"].astimezone(zone).date().isoformat()
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in r["receipt_number"])
        target = batchfiles.within(base, folder / day / f"receipt-{safe}.pdf", "param.folder")
        counts["PDFs written"] += 1
        if dry_run:
            continue
        data = receipt_pdf(r, school, zone)
        target.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(batchfiles.atomic_write, target, data)
        made.append((r["id"], str(target.relative_to(base))))
    if made:
        await scope.conn.executemany(
            "UPDATE sis.erp_payments SET receipt_file = $2 WHERE id = $1", made
        )
    return counts


async def run(ctx: JobContext, params: ReceiptParams) -> None:
    pool = await ctx.db.pool()
    try:
        zone = ZoneInfo(await preference(pool, "time_zone", "UTC"))
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    batchfiles.inside(Path(ctx.settings.batch_folder), params.folder, "param.folder")

    async def work(scope: Scope) -> Counts:
        return await _receipts(scope, ctx, params, zone, params.dry_run)

    report = await each_school(ctx, params, "Receipt PDFs", work)
    report.notes.append(
        f"receipts of the {params.days_back + 1} day(s) through the run's day, in {params.folder or '.'}"
    )
    report.write(ctx)


job_type = JobType(
    name="finance.receipt_pdfs",
    pool="integration",
    title="Generate PDFs from Receipts",
    description=(
        "Saves a PDF of every receipt generated (Store receipts included), one file per "
        "receipt/transaction, in a dated folder of the batch folder; set as_of and days_back to "
        "run it for past dates. From " + SEED_001 + ": 'Generate PDFs from Receipts'."
    ),
    params=ReceiptParams,
    run=run,
)
