"""Backfills and catch-up decisions, as the HTTP API and the pages offer them: each checked
against the role (editor or admin), validated as the CLI validates it, and audited (who, when,
what) before the answer goes back. The scheduler does the work (``jobs.backfill``,
``jobs.decide``); who asked is the authenticated caller and its address, never the body."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from belltower import backfill as bf
from belltower import decisions as dc
from belltower import operations as ops
from belltower.errors import Conflict

from .actions import Console, _decoded
from .store import Principal

MAX_AUDITED_IDS = 100
"""Occurrence ids an audit entry lists one by one; the count says how many in all."""


async def backfill(
    console: Console, who: Principal, client: str | None, job_id: str, body: Any
) -> bf.BackfillResult:
    """Show (``dry_run``) or dispatch the occurrences of a past range; only the real one is
    audited, with the range, the bound, the priority and what ran."""
    await console.require(who, "editor", client, "jobs.backfill", job_id)
    asked = _decoded(body, bf.BackfillBody)
    bf.check(asked.since, asked.until, asked.max, asked.priority, datetime.now(UTC))
    result = await console.api.call(
        ops.JOBS_BACKFILL,
        bf.BackfillRequest(
            id=job_id, since=asked.since, until=asked.until, dry_run=asked.dry_run,
            max=asked.max, priority=asked.priority, requested_by=who.username,
            requested_from=client,
        ),
    )  # fmt: skip
    if not asked.dry_run:
        ran = [o.occurrence_id for o in result.occurrences if o.action == "run"]
        await console.audit(
            who,
            client,
            "jobs.backfill",
            target=job_id,
            after={
                "from": asked.since.isoformat(), "to": asked.until.isoformat(), "max": asked.max,
                "priority": result.priority, "to_run": result.to_run, "already": result.already,
                "occurrences": ran[:MAX_AUDITED_IDS],
            },
        )  # fmt: skip
    return result


async def decide(
    console: Console, who: Principal, client: str | None, job_id: str, body: Any
) -> dc.DecisionResult:
    """Answer a job's catch-up decision; a decision that finds nothing awaiting (answered
    already, or expired) is refused with 409 and audited as failed."""
    await console.require(who, "editor", client, "jobs.decide", job_id)
    choice = _decoded(body, dc.DecisionBody).choice
    request = dc.DecisionRequest(
        id=job_id, choice=choice, requested_by=who.username, requested_from=client
    )
    try:
        result = await console.api.call(ops.JOBS_DECIDE, request)
    except Conflict as exc:
        await console.audit(
            who, client, "jobs.decide", target=job_id, outcome="failed", detail=exc.message
        )
        raise
    await console.audit(
        who,
        client,
        "jobs.decide",
        target=job_id,
        after={
            "choice": choice,
            "run": result.run[:MAX_AUDITED_IDS],
            "run_for": [t.isoformat() for t in result.run_for[:MAX_AUDITED_IDS]],
            "skipped": result.skipped,
        },
    )
    return result


async def pending(console: Console, job_id: str | None = None) -> list[dc.PendingDecision]:
    """The decisions waiting: one job's (none or one), or every job's (the jobs list's banners)."""
    return await console.api.call(ops.DECISIONS_LIST, dc.DecisionsRequest(job_id=job_id))
