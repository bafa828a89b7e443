"""The Store's automated cashouts of portal-enabled cash drawers (Focus catalog, seed 001):

- ``finance.store_cashout`` (Store Automated Cashout): the Store's drawers (kind ``store``).
- ``finance.portal_cashout`` (Portal Payments Automatched Cashout): the parent portal's drawers
  (kind ``portal``); before the cashout each online payment not yet matched to an invoice is
  matched to the payer's open invoice whose number it quotes (the reference); a payment that
  matches none stays out of the cashout and is listed, to be matched by hand.

A drawer's online payments settle in one Authorize.net batch a day at the drawer's settlement
time (the school's time zone). A payment belongs to the business day whose settlement it falls
before; once that settlement time has passed (at the run's scheduled instant, or the end of
``as_of``), the day is cashed out: one ``sis.erp_cashouts`` row per drawer and day with the count
and total, and each payment points at it. Days missed are closed one by one on the next run; a
payment arriving after its day was closed goes into the next day. The cashout of a drawer and day
is unique and a cashed-out payment is never taken again, so a re-run changes nothing.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from belltower.jobtypes import JobContext, JobType

from ..calculations.common import SEED_001, CalcParams, Counts, Scope, each_school, preference


class CashoutParams(CalcParams, kw_only=True, forbid_unknown_fields=True):
    pass


def business_day(received: datetime, settles: time, zone: ZoneInfo) -> date:
    """The day whose settlement a payment received at ``received`` is part of."""
    local = received.astimezone(zone)
    return local.date() if local.time() < settles else local.date() + timedelta(days=1)


def cutoff(day: date, settles: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, settles, zone)


async def _cashouts(
    scope: Scope, kind: str, now: datetime, zone: ZoneInfo, automatch: bool
) -> Counts:
    conn = scope.conn
    counts: Counts = {"cashouts": 0, "payments cashed out": 0}
    if automatch:
        counts["automatched"] = 0
        counts["left unmatched"] = 0
    drawers = await conn.fetch(
        """SELECT d.*, (SELECT max(business_date) FROM sis.erp_cashouts c WHERE c.drawer_id = d.id) AS last_closed
             FROM sis.erp_cash_drawers d
            WHERE d.kind = $1 AND d.portal_enabled AND d.active AND d.division_id = $2
            ORDER BY d.code FOR UPDATE OF d""",
        kind, scope.division_id,
    )  # fmt: skip
    for drawer in drawers:
        matched: dict[int, int] = {}
        if automatch:
            for r in await conn.fetch(
                """UPDATE sis.erp_payments pay SET invoice_id = i.id
                     FROM sis.erp_invoices i
                    WHERE pay.drawer_id = $1 AND pay.cashout_id IS NULL AND pay.invoice_id IS NULL
                      AND pay.valid AND pay.received_at <= $2
                      AND i.person_id = pay.person_id AND NOT i.deleted AND i.voided_on IS NULL
                      AND upper(i.invoice_number) = upper(btrim(pay.reference))
                RETURNING pay.id""",
                drawer["id"], now,
            ):  # fmt: skip
                matched[r["id"]] = 1
            counts["automatched"] += len(matched)
        settles: time = drawer["settlement_time"]
        last: date | None = drawer["last_closed"]
        days: dict[date, list[Any]] = defaultdict(list)
        unmatched = 0
        for pay in await conn.fetch(
            """SELECT id, amount, kind, received_at, invoice_id FROM sis.erp_payments
                WHERE drawer_id = $1 AND cashout_id IS NULL AND valid AND kind <> 'deferral'
                  AND received_at <= $2 ORDER BY received_at, id""",
            drawer["id"], now,
        ):  # fmt: skip
            if automatch and pay["invoice_id"] is None:
                unmatched += 1
                continue
            day = business_day(pay["received_at"], settles, zone)
            if last is not None and day <= last:
                day = last + timedelta(days=1)
            if cutoff(day, settles, zone) <= now:
                days[day].append(pay)
        if automatch:
            counts["left unmatched"] += unmatched
        for day in sorted(days):
            pays = days[day]
            total = sum(
                (p["amount"] if p["kind"] == "payment" else -p["amount"] for p in pays), Decimal(0)
            )
            cash_id = await conn.fetchval(
                """INSERT INTO sis.erp_cashouts (drawer_id, business_date, cutoff_at, payments, total,
                          automatched, source_job_id, occurrence_id)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id""",
                drawer["id"], day, cutoff(day, settles, zone), len(pays), total,
                sum(1 for p in pays if p["id"] in matched), scope.job_id, scope.occurrence_id,
            )  # fmt: skip
            await conn.execute(
                "UPDATE sis.erp_payments SET cashout_id = $1 WHERE id = ANY($2::bigint[])",
                cash_id, [p["id"] for p in pays],
            )  # fmt: skip
            counts["cashouts"] += 1
            counts["payments cashed out"] += len(pays)
    return counts


async def _run(
    ctx: JobContext, params: CashoutParams, kind: str, title: str, automatch: bool
) -> None:
    pool = await ctx.db.pool()
    try:
        zone = ZoneInfo(await preference(pool, "time_zone", "UTC"))
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    now = (
        datetime.combine(params.as_of + timedelta(days=1), time(0), zone)
        - timedelta(microseconds=1)
        if params.as_of is not None
        else ctx.scheduled_for
    )

    async def work(scope: Scope) -> Counts:
        return await _cashouts(scope, kind, now, zone, automatch)

    report = await each_school(ctx, params, title, work)
    report.notes.append(
        f"days whose settlement time had passed by {now.astimezone(zone):%Y-%m-%d %H:%M %Z}"
    )
    report.write(ctx)


async def run_store(ctx: JobContext, params: CashoutParams) -> None:
    await _run(ctx, params, "store", "Store automated cashout", automatch=False)


async def run_portal(ctx: JobContext, params: CashoutParams) -> None:
    await _run(ctx, params, "portal", "Portal payments automatched cashout", automatch=True)


store_cashout_type = JobType(
    name="finance.store_cashout",
    pool="integration",
    title="Store Automated Cashout",
    description=(
        "Cashes out the Store's portal-enabled cash drawers once a day, after each drawer's "
        "Authorize.net batch settlement time: one cashout per drawer and business day with the "
        "payments it closes. From " + SEED_001 + ": 'Store Automated Cashout'."
    ),
    params=CashoutParams,
    run=run_store,
)

portal_cashout_type = JobType(
    name="finance.portal_cashout",
    pool="integration",
    title="Portal Payments Automatched Cashout",
    description=(
        "Matches the parent portal's online payments to the invoices they quote, then cashes out "
        "the portal-enabled cash drawers soon after their Authorize.net batch settlement time; "
        "unmatched payments are listed and left for the next run. From "
        + SEED_001
        + ": 'Portal Payments Automatched Cashout'."
    ),
    params=CashoutParams,
    run=run_portal,
)
