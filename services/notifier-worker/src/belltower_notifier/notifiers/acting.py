"""Notifiers that act before they tell: what they changed is ledgered under the occurrence.

The change and its ledger entries (``notifier.actions``) commit in one transaction, so a
redelivered occurrence finds nothing left to do and reports, from the ledger, what the first
delivery did. Runs of the same notifier take turns (a transaction-scoped advisory lock), so two
at once cannot both copy the same address or import the same request.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any

from ..notify import Query, Row

ACTIONS_KEPT = timedelta(days=30)
"""How long what an occurrence did stays in the ledger (a redelivery comes within hours)."""


def cutoff(q: Query[Any], days: int) -> datetime:
    """Midnight UTC ``days`` before the run's today: the same instant for every delivery of
    one occurrence, so a redelivery hours later deletes or expires nothing more."""
    return datetime.combine(q.today - timedelta(days=days), time(0), UTC)


async def act(
    q: Query[Any],
    lock: str,
    change: str,
    args: list[Any],
    item: Callable[[dict[str, Any]], str],
    *,
    person: str = "person_id",
) -> list[Row]:
    """Run ``change`` (a statement returning the records it changed, each with ``person``) and
    ledger each record under the occurrence, in one transaction; then return every record this
    occurrence changed, by this delivery or an earlier one."""
    async with q.conn.transaction():
        await q.conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", lock)
        changed = await q.conn.fetch(change, *args)
        await record(q, [(item(dict(r)), r[person], dict(r)) for r in changed])
        await q.conn.execute(
            "DELETE FROM notifier.actions WHERE job_id = $1 AND done_at < now() - $2::interval",
            q.job_id,
            ACTIONS_KEPT,
        )
    return await done(q)


async def record(q: Query[Any], entries: list[tuple[str, int | None, dict[str, Any]]]) -> None:
    """Ledger (item key, person, values shown) entries under this occurrence."""
    await q.conn.executemany(
        """INSERT INTO notifier.actions (occurrence_id, job_id, item_key, person_id, detail)
           VALUES ($1, $2, $3, $4, $5::jsonb) ON CONFLICT DO NOTHING""",
        [
            (q.occurrence_id, q.job_id, key, pid, json.dumps(v, default=str))
            for key, pid, v in entries
        ],
    )


async def done(q: Query[Any]) -> list[Row]:
    """What this occurrence did, in the order it did it; rows about nobody in particular (an
    unmatched ISIR, a refused request) are told to the group only."""
    ledger = await q.conn.fetch(
        """SELECT item_key, person_id, detail FROM notifier.actions
            WHERE occurrence_id = $1 ORDER BY done_at, item_key""",
        q.occurrence_id,
    )
    return [
        Row(
            person_id=r["person_id"] or 0,
            item=r["item_key"],
            values=json.loads(r["detail"]),
            tell_person=r["person_id"] is not None,
        )
        for r in ledger
    ]
