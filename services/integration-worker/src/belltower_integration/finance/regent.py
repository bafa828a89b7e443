"""``finance.regent_award_disbursement``: the seeds' Regent Award Disbursement.

Pulls the disbursement files Regent Award leaves in the batch folder (``regent/``): each award
is added or updated (source ``regent``, by Regent's award id), each disbursement is recorded once
(award, disbursement number) and, unless ``post`` is off, posted to the student's ledger as a
credit under the award's fund code, once. Belltower's own layout (``layouts/regent.py``).
"""

from __future__ import annotations

from typing import Annotated, Any

import asyncpg
import msgspec

from belltower.fences import BatchPath
from belltower.jobtypes import JobContext, JobType

from ..report import Tally
from . import common, files
from .common import DryRun, Meta, Pattern, Settle
from .layouts import regent


class RegentParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    folder: Annotated[BatchPath, Meta(description="folder inside the batch folder")] = "regent"
    pattern: Pattern = "*.csv"
    post: Annotated[bool, Meta(description="post each disbursement to the student's ledger")] = True
    settle_s: Settle = 60.0
    dry_run: DryRun = False


def _check(rows: list[dict[str, Any]], name: str, people: dict[str, int], funds: set[str],
           terms: dict[str, int]) -> list[str]:  # fmt: skip
    out = []
    for r in rows:
        at = f"{name} row {r['_line']} field"
        if r["sis_id"] not in people:
            out.append(f"{at} student_id: {r['sis_id']!r} is no person in the SIS")
        if r["fund_code"] not in funds:
            out.append(
                f"{at} fund_code: {r['fund_code']!r} is not a financial_aid transaction code"
            )
        if r["term_code"] and r["term_code"] not in terms:
            out.append(f"{at} term_code: no term {r['term_code']!r}")
        if len(r["award_year"]) != 7 or r["award_year"][4] != "-":
            out.append(f"{at} award_year: {r['award_year']!r} is not YYYY-YY")
        if r["accepted"] > r["offered"] or r["offered"] < 0 or r["accepted"] < 0:
            out.append(f"{at} accepted_amount: more than offered, or negative")
        parts = [r["sequence"], r["amount"], r["disbursed_on"]]
        if any(v is not None for v in parts) and (
            None in parts or r["amount"] <= 0 or r["sequence"] < 1
        ):
            out.append(f"{at} disbursement_number: a disbursement needs its number (1+), a positive "
                       "amount and a date, or none of them")  # fmt: skip
    return out


def _apply(post: bool) -> files.Apply:
    async def apply(
        conn: asyncpg.Connection, rows: list[dict[str, Any]], name: str, tally: Tally
    ) -> list[str]:
        people = await common.people_ids(conn, [r["sis_id"] for r in rows])
        funds = {
            r["code"]
            for r in await conn.fetch(
                "SELECT code FROM sis.transaction_codes WHERE kind = 'financial_aid'"
            )
        }
        terms = await common.term_ids(conn)
        refused = _check(rows, name, people, funds, terms)
        if refused:
            return refused
        awards = disbursed = posted = 0
        for r in rows:
            award = await conn.fetchrow(
                """INSERT INTO sis.aid_awards AS a (person_id, award_year, term_id, fund_code, source, external_ref,
                                                   offered, accepted, status)
                   VALUES ($1, $2, $3, $4, 'regent', $5, $6, $7, $8)
                   ON CONFLICT (source, external_ref) DO UPDATE
                      SET term_id = excluded.term_id, fund_code = excluded.fund_code, offered = excluded.offered,
                          accepted = excluded.accepted, status = excluded.status, changed_at = now()
                    WHERE (a.term_id, a.fund_code, a.offered, a.accepted, a.status) IS DISTINCT FROM
                          (excluded.term_id, excluded.fund_code, excluded.offered, excluded.accepted, excluded.status)
                   RETURNING id""",
                people[r["sis_id"]], r["award_year"], terms.get(r["term_code"] or ""), r["fund_code"],
                r["external_ref"], r["offered"], r["accepted"], r["status"],
            )  # fmt: skip
            awards += award is not None
            award_id = (
                award["id"]
                if award
                else await conn.fetchval(
                    "SELECT id FROM sis.aid_awards WHERE source = 'regent' AND external_ref = $1",
                    r["external_ref"],
                )
            )
            if r["sequence"] is None:
                continue
            new = await conn.fetchval(
                """INSERT INTO sis.aid_disbursements (award_id, sequence, amount, disbursed_on) VALUES ($1, $2, $3, $4)
                   ON CONFLICT (award_id, sequence) DO NOTHING RETURNING id""",
                award_id, r["sequence"], r["amount"], r["disbursed_on"],
            )  # fmt: skip
            if new is None:
                continue
            disbursed += 1
            tally.ok(
                f"{r['sis_id']} {r['external_ref']} #{r['sequence']}", f"{r['amount']} disbursed"
            )
            if post:
                posting = await conn.fetchval(
                    """INSERT INTO sis.transactions (person_id, term_id, code, amount, posted_on, description, source, external_ref)
                       VALUES ($1, $2, $3, $4, $5, $6, 'regent', $7)
                       ON CONFLICT (source, external_ref) WHERE external_ref IS NOT NULL DO NOTHING RETURNING id""",
                    people[r["sis_id"]], terms.get(r["term_code"] or ""), r["fund_code"], -r["amount"], r["disbursed_on"],
                    f"Aid disbursement {r['sequence']}", f"{r['external_ref']}-{r['sequence']}",
                )  # fmt: skip
                await conn.execute(
                    "UPDATE sis.aid_disbursements SET transaction_id = $2 WHERE id = $1",
                    new,
                    posting,
                )
                posted += posting is not None
        tally.fact(
            f"{name}: {awards} awards added or changed, {disbursed} disbursements recorded, {posted} posted"
        )
        return []

    return apply


async def run(ctx: JobContext, params: RegentParams) -> None:
    tally = Tally("Regent Award disbursement")
    folder = common.folder_of(ctx, params.folder)
    problems = await files.import_files(ctx, tally, regent.DISBURSEMENTS, folder, params.pattern,
                                        _apply(params.post), settle_s=params.settle_s, dry_run=params.dry_run)  # fmt: skip
    files.fail_if(problems, tally, ctx, "Regent Award disbursement")
    tally.write(ctx)


job_type = JobType(
    name="finance.regent_award_disbursement",
    pool="integration",
    title="Regent Award Disbursement",
    description=(
        "Pulls the disbursement files from the Regent Award financial aid management software "
        "(dropped in the batch folder's regent folder): awards are added or updated, each "
        "disbursement recorded and posted to the student's account once. A file with a bad row "
        "is refused whole, naming the row and field. Belltower's own layout "
        "(docs/billing-and-aid.md)."
    ),
    params=RegentParams,
    run=run,
)
