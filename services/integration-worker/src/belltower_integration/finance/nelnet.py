"""The Nelnet jobs: End of Day and refund-response downloads, their imports, the eBill export.

Nelnet publishes no file specification; the layouts are Belltower's own and live in
``layouts/nelnet.py``. Downloads go to ``nelnet/inbound`` and ``nelnet/refunds`` in the batch
folder; each remote file is downloaded once (by name). Imports run a few minutes later (the
seed: "10 minute intervals"): each file is validated whole, written in one transaction,
recorded by content so it is never imported twice, and moved to ``imported/``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import msgspec

from belltower.errors import InvalidInput
from belltower.fences import BatchPath
from belltower.jobtypes import JobContext, JobType

from .. import sftp
from ..report import Tally
from . import common, files, transfer
from .common import CUSTOMER, DryRun, FileName, Meta, Pattern, Settle
from .layout import Layout
from .layouts import nelnet

Folder = Annotated[BatchPath, Meta(description="folder inside the batch folder")]
MaxFiles = Annotated[int, Meta(ge=1, le=1000, description="at most this many files per run")]


# -- Downloads --------------------------------------------------------------------------------


class DownloadParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    sftp: transfer.Sftp
    patterns: Annotated[list[Pattern], Meta(min_length=1, max_length=10)] = msgspec.field(
        default_factory=lambda: ["nelnet_eod_transactions_*.txt", "nelnet_eod_agreements_*.txt"]
    )
    folder: Folder = "nelnet/inbound"
    max_files: MaxFiles = 100


class RefundDownloadParams(DownloadParams, kw_only=True, forbid_unknown_fields=True):
    patterns: Annotated[list[Pattern], Meta(min_length=1, max_length=10)] = msgspec.field(
        default_factory=lambda: ["nelnet_refund_response_*.txt"]
    )
    folder: Folder = "nelnet/refunds"


def _download(kind: str, what: str) -> Callable[[JobContext, DownloadParams], Awaitable[None]]:
    """A download job's run: each new remote file once, recorded by name (partner nelnet, ``kind``)."""

    async def run(ctx: JobContext, params: DownloadParams) -> None:
        server = transfer.target(params.sftp)
        local = common.folder_of(ctx, params.folder)
        await asyncio.to_thread(local.mkdir, parents=True, exist_ok=True)
        pool = await ctx.db.pool()
        known = {r["file_name"] for r in await pool.fetch(
            "SELECT file_name FROM sis.finance_files WHERE partner = 'nelnet' AND kind = $1 AND direction = 'download'",
            kind)}  # fmt: skip
        tally = Tally(what)
        got: list[Path] = []
        for pattern in params.patterns:
            got += await sftp.download_new(server, pattern, local, known | {p.name for p in got},
                                           params.max_files - len(got))  # fmt: skip
        layout = Layout("nelnet", kind, what, ())
        base = Path(ctx.settings.batch_folder)
        for path in got:
            data = await asyncio.to_thread(path.read_bytes)
            await files.record(
                pool, ctx, layout, "download", path.name, files.digest(data), data.count(b"\n")
            )
            tally.ok(str(path.relative_to(base)), f"downloaded from {params.sftp.host}")
        tally.write(ctx, f"downloaded {len(got)} files from {params.sftp.host}" if got
                    else f"no new file on {params.sftp.host}")  # fmt: skip

    return run


batch_download_type = JobType(
    name="finance.nelnet_batch_download",
    pool="integration",
    title="Nelnet Batch Downloader",
    description=(
        "Contacts Nelnet (its SFTP server, host key checked, credentials by secret reference) "
        "to download the End of Day files for all transactions (ACH payments included) and "
        "agreement (payment plan) additions and edits, for reconciliation before the next day; "
        "each file once, into the batch folder for the Nelnet Batch File Import."
    ),
    params=DownloadParams,
    run=_download("eod", "Nelnet batch download"),
)

refund_download_type = JobType(
    name="finance.nelnet_refund_download",
    pool="integration",
    title="Nelnet Refund Response File Import",
    description=(
        "For the Nelnet refund module: bundles the response files Nelnet generates after "
        "importing a refund export (they say whether each refund reached the student or parent) "
        "by downloading each new one into the batch folder, for Nelnet Refund Response Process "
        "Files to import about 10 minutes later."
    ),
    params=RefundDownloadParams,
    run=_download("refund_response", "Nelnet refund response download"),
)


# -- Batch File Import ------------------------------------------------------------------------


class BatchImportParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    folder: Folder = "nelnet/inbound"
    transactions_pattern: Pattern = "nelnet_eod_transactions_*.txt"
    agreements_pattern: Pattern = "nelnet_eod_agreements_*.txt"
    payment_code: Annotated[
        str, Meta(pattern=r"^[A-Z0-9_]{1,16}$", description="T-code Nelnet payments post under")
    ] = "PAY"
    settle_s: Settle = 60.0
    dry_run: DryRun = False


def _refused(
    conn_rows: dict[str, int], rows: list[dict[str, Any]], name: str, terms: dict[str, int]
) -> list[str]:
    out = []
    for row in rows:
        n = row["_line"]
        if row.get("customer_id") not in conn_rows:
            out.append(
                f"{name} row {n} field CustomerId: {row.get('customer_id')!r} is no student in the SIS"
            )
        if row.get("term_code") and row["term_code"] not in terms:
            out.append(f"{name} row {n} field TermCode: no term {row['term_code']!r}")
    return out


_SIGN = {"PAYMENT": -1, "ACH": -1, "ACH_RETURN": 1, "REVERSAL": 1}


def _transactions(payment_code: str) -> files.Apply:
    async def apply(
        conn: asyncpg.Connection, rows: list[dict[str, Any]], name: str, tally: Tally
    ) -> list[str]:
        people = await common.people_ids(conn, [r["customer_id"] for r in rows])
        terms = await common.term_ids(conn)
        refused = _refused(people, rows, name, terms)
        refused += [f"{name} row {r['_line']} field Amount: must be more than 0"
                    for r in rows if r["amount"] <= 0]  # fmt: skip
        if refused:
            return refused
        added = await conn.fetchval(
            """WITH new AS (
                 INSERT INTO sis.transactions (person_id, term_id, code, amount, posted_on, description, source, external_ref)
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::numeric[], $5::date[], $6::text[],
                                      $7::text[], $8::text[])
                 ON CONFLICT (source, external_ref) WHERE external_ref IS NOT NULL DO NOTHING RETURNING 1)
               SELECT count(*) FROM new""",
            [people[r["customer_id"]] for r in rows], [terms.get(r["term_code"] or "") for r in rows],
            [payment_code] * len(rows), [_SIGN[r["type"]] * r["amount"] for r in rows],
            [r["posted_on"] for r in rows],
            [r["description"] or f"Nelnet {r['type'].lower()}" for r in rows], ["nelnet"] * len(rows),
            [r["external_ref"] for r in rows],
        )  # fmt: skip
        tally.fact(f"{name}: {added} postings added, {len(rows) - added} already in the ledger")
        for _ in range(added):
            tally.ok()
        return []

    return apply


async def _agreements(
    conn: asyncpg.Connection, rows: list[dict[str, Any]], name: str, tally: Tally
) -> list[str]:
    people = await common.people_ids(conn, [r["customer_id"] for r in rows])
    terms = await common.term_ids(conn)
    refused = _refused(people, rows, name, terms)
    refused += [f"{name} row {r['_line']} field Installments: {r['installments']} is not 1 to 24"
                for r in rows if not 1 <= r["installments"] <= 24]  # fmt: skip
    if refused:
        return refused
    added = changed = 0
    for r in rows:
        inserted = await conn.fetchval(
            """INSERT INTO sis.payment_plans AS pp (person_id, term_id, provider, external_ref, plan_code, status,
                                                    budget, installments, enrolled_on)
               VALUES ($1, $2, 'nelnet', $3, $4, $5, $6, $7, $8)
               ON CONFLICT (provider, external_ref) DO UPDATE
                  SET term_id = excluded.term_id, plan_code = excluded.plan_code, status = excluded.status,
                      budget = excluded.budget, installments = excluded.installments, changed_at = now()
                WHERE (pp.term_id, pp.plan_code, pp.status, pp.budget, pp.installments)
                      IS DISTINCT FROM (excluded.term_id, excluded.plan_code, excluded.status, excluded.budget,
                                        excluded.installments)
               RETURNING (xmax = 0)""",
            people[r["customer_id"]], terms.get(r["term_code"] or ""), r["external_ref"], r["plan_code"],
            r["status"].lower(), r["budget"], r["installments"], r["enrolled_on"],
        )  # fmt: skip
        added += inserted is True
        changed += inserted is False
    tally.fact(
        f"{name}: {added} payment plans added, {changed} changed, {len(rows) - added - changed} unchanged"
    )
    for _ in range(added + changed):
        tally.ok()
    return []


async def batch_import(ctx: JobContext, params: BatchImportParams) -> None:
    folder = common.folder_of(ctx, params.folder)
    pool = await ctx.db.pool()
    if not await pool.fetchval(
        "SELECT 1 FROM sis.transaction_codes WHERE code = $1", params.payment_code
    ):
        raise InvalidInput(
            "param.payment_code", f"no transaction code {params.payment_code!r}", "a payment T-code"
        )
    tally = Tally("Nelnet batch file import")
    problems = await files.import_files(ctx, tally, nelnet.EOD_TRANSACTIONS, folder, params.transactions_pattern,
                                        _transactions(params.payment_code), settle_s=params.settle_s,
                                        dry_run=params.dry_run)  # fmt: skip
    problems += await files.import_files(ctx, tally, nelnet.EOD_AGREEMENTS, folder, params.agreements_pattern,
                                         _agreements, settle_s=params.settle_s, dry_run=params.dry_run)  # fmt: skip
    files.fail_if(problems, tally, ctx, "Nelnet batch file import")
    tally.write(ctx)


batch_import_type = JobType(
    name="finance.nelnet_batch_import",
    pool="integration",
    title="Nelnet Batch File Import",
    description=(
        "Imports the files the Nelnet Batch Downloader brought in (run it about 10 minutes "
        "later): End of Day transactions post to the ledger once per Nelnet transaction id "
        "(payments the real-time connection missed, ACH payments, returns), agreements add or "
        "update payment plans. Every row is validated first; a file with a bad row is refused "
        "whole, naming the row and field. Belltower's own layouts (docs/billing-and-aid.md)."
    ),
    params=BatchImportParams,
    run=batch_import,
)


# -- eBill File Export ------------------------------------------------------------------------


class EbillParams(common.Limits, kw_only=True, forbid_unknown_fields=True):
    first_run_look_back_days: Annotated[int, Meta(ge=1, le=3650)] = 30
    folder: Folder = "nelnet/outbound"
    file_name: FileName = "nelnet_ebill_{stamp}.txt"
    dry_run: DryRun = False


async def ebill_export(ctx: JobContext, params: EbillParams) -> None:
    pool = await ctx.db.pool()
    done = await files.written_by_occurrence(pool, ctx, nelnet.EBILL.kind)
    until = ctx.scheduled_for.astimezone(UTC)
    since = (
        await files.last_window_end(pool, ctx.job_id, nelnet.EBILL.kind) if done is None else None
    )
    since = since or until - timedelta(days=params.first_run_look_back_days)
    args: list[Any] = [since, until]
    sql = f"""
        SELECT {CUSTOMER}, p.sis_id, x.id AS transaction_id, x.posted_on, x.code, x.description,
               x.amount, t.code AS term_code
          FROM sis.transactions x JOIN sis.people p ON p.id = x.person_id
          LEFT JOIN sis.billing_accounts ba ON ba.person_id = p.id
          LEFT JOIN sis.terms t ON t.id = x.term_id
         WHERE x.created_at > $1 AND x.created_at <= $2 AND {common.where(params, args)}
         ORDER BY customer_id, x.posted_on, x.id"""
    rows = [dict(r) for r in await pool.fetch(sql, *args)]
    tally = Tally("Nelnet eBill export")
    target = common.file_in(ctx, params.folder, params.file_name)
    result = await files.export(ctx, tally, nelnet.EBILL, rows, target, dry_run=params.dry_run,
                                window=(since, until))  # fmt: skip
    if not result.again:
        tally.fact(
            f"transactions recorded after {since:%Y-%m-%d %H:%M:%S} up to {until:%Y-%m-%d %H:%M:%S} UTC"
        )
    tally.write(
        ctx,
        f"{target.name}: {result.rows} transactions"
        + (" (already written)" if result.again else ""),
    )


ebill_type = JobType(
    name="finance.nelnet_ebill_export",
    pool="integration",
    title="Nelnet eBill File Export",
    description=(
        "For the Nelnet eBill module: an export file with every transaction students made in "
        "the SIS since the previous export, so bills can be produced on the Nelnet side. "
        "Belltower's own layout (docs/billing-and-aid.md); sent on by the SFTP Upload job."
    ),
    params=EbillParams,
    run=ebill_export,
)


# -- Refund Response Process Files ------------------------------------------------------------


class RefundProcessParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    folder: Folder = "nelnet/refunds"
    pattern: Pattern = "nelnet_refund_response_*.txt"
    charge_back: Annotated[
        bool, Meta(description="post a failed refund back to the student's account (a credit)")
    ] = True
    settle_s: Settle = 60.0
    dry_run: DryRun = False


def _responses(charge_back: bool) -> files.Apply:
    async def apply(
        conn: asyncpg.Connection, rows: list[dict[str, Any]], name: str, tally: Tally
    ) -> list[str]:
        refunds = {r["id"]: r for r in await conn.fetch(
            f"""SELECT rf.*, {CUSTOMER}, x.code AS posted_code, x.term_id FROM sis.refunds rf
                  JOIN sis.people p ON p.id = rf.person_id
                  LEFT JOIN sis.billing_accounts ba ON ba.person_id = p.id
                  LEFT JOIN sis.transactions x ON x.id = rf.transaction_id
                 WHERE rf.id = ANY($1::bigint[]) FOR UPDATE OF rf""",
            [r["refund_id"] for r in rows])}  # fmt: skip
        refused = []
        for r in rows:
            n = r["_line"]
            known = refunds.get(r["refund_id"])
            if known is None:
                refused.append(
                    f"{name} row {n} field RefundId: no refund {r['refund_id']} in the SIS"
                )
            elif known["customer_id"] != r["customer_id"]:
                refused.append(
                    f"{name} row {n} field CustomerId: refund {r['refund_id']} is {known['customer_id']}'s"
                )
            elif known["amount"] != r["amount"]:
                refused.append(
                    f"{name} row {n} field Amount: refund {r['refund_id']} is {known['amount']}"
                )
        if refused:
            return refused
        counts = {"sent": 0, "failed": 0, "charged back": 0, "unchanged": 0}
        for r in rows:
            known = refunds[r["refund_id"]]
            status = "sent" if r["status"] == "SENT" else "failed"
            if known["status"] == status:
                counts["unchanged"] += 1
                continue
            chargeback = None
            if status == "failed" and charge_back and known["chargeback_transaction_id"] is None:
                chargeback = await conn.fetchval(
                    """INSERT INTO sis.transactions (person_id, term_id, code, amount, posted_on, description, source, external_ref)
                       VALUES ($1, $2, $3, $4, $5, $6, 'nelnet', $7)
                       ON CONFLICT (source, external_ref) WHERE external_ref IS NOT NULL DO NOTHING RETURNING id""",
                    known["person_id"], known["term_id"], known["posted_code"] or "REF", -Decimal(known["amount"]),
                    r["processed_on"], f"Refund {known['id']} failed at Nelnet: {r['reason_code'] or ''} {r['message'] or ''}".strip()[:200],
                    f"refund-failed-{known['id']}",
                )  # fmt: skip
                counts["charged back"] += chargeback is not None
            await conn.execute(
                """UPDATE sis.refunds SET status = $2, responded_at = $3, response_code = $4, response_message = $5,
                          chargeback_transaction_id = coalesce($6, chargeback_transaction_id) WHERE id = $1""",
                known["id"], status, datetime.combine(r["processed_on"], datetime.min.time(), UTC),
                r["reason_code"], r["message"], chargeback,
            )  # fmt: skip
            counts[status] += 1
            tally.ok(f"refund {known['id']} ({r['customer_id']}, {known['amount']})", status)
        tally.fact(f"{name}: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
        return []

    return apply


async def refund_process(ctx: JobContext, params: RefundProcessParams) -> None:
    tally = Tally("Nelnet refund responses")
    folder = common.folder_of(ctx, params.folder)
    problems = await files.import_files(ctx, tally, nelnet.REFUND_RESPONSE, folder, params.pattern,
                                        _responses(params.charge_back), settle_s=params.settle_s,
                                        dry_run=params.dry_run)  # fmt: skip
    files.fail_if(problems, tally, ctx, "Nelnet refund responses")
    tally.write(ctx)


refund_process_type = JobType(
    name="finance.nelnet_refund_process",
    pool="integration",
    title="Nelnet Refund Response Process Files",
    description=(
        "Imports the refund response files the Nelnet Refund Response File Import obtained (run "
        "it about 10 minutes after): each refund is marked sent or failed, and a failed one is "
        "charged back to the student's account so the SIS keeps showing that the institution "
        "owes the student. Belltower's own layout (docs/billing-and-aid.md)."
    ),
    params=RefundProcessParams,
    run=refund_process,
)

JOB_TYPES = (
    batch_download_type,
    batch_import_type,
    ebill_type,
    refund_download_type,
    refund_process_type,
)
