"""The safety hold of roster syncs: compute the change first, hold it when it is too large.

A sync that would delete or change more than a share of what the receiver holds (defaults 10 %
deleted, 75 % changed, per kind: users, courses, enrolments, ...) stops before it sends
anything: the run ends ``held`` with the counts and a sample, the job's result mail goes out,
and ``sis.roster_holds`` keeps a fingerprint of the change. A person releases the held run
(history records the release once); the next run of the job that computes the same
fingerprint claims the hold and sends. A changed change set is judged afresh. A first sync
(nothing held by the receiver yet) is never held.

Not running on no-school days is the schedule's school calendar (``schedule.calendar``): the
scheduler skips those occurrences before any worker sees them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec

from belltower import operations as ops
from belltower.errors import BelltowerError, RunHeld
from belltower.holds import Release, ReleasesQuery
from belltower.jobtypes import JobContext

SAMPLE_SIZE = 10


class SafetyParams(msgspec.Struct, forbid_unknown_fields=True):
    """Thresholds of the safety hold, in per cent of the records of a kind the receiver holds."""

    max_deleted_pct: Annotated[
        float,
        msgspec.Meta(
            ge=0, le=100, description="Hold when more than this share of a kind would be deleted"
        ),
    ] = 10.0
    max_changed_pct: Annotated[
        float,
        msgspec.Meta(
            ge=0, le=100, description="Hold when more than this share of a kind would change"
        ),
    ] = 75.0
    enabled: Annotated[bool, msgspec.Meta(description="false: never hold (not advised)")] = True


@dataclass
class KindChange:
    """What a sync would do to one kind of record, against what the receiver holds (``existing``)."""

    existing: int = 0
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "existing": self.existing,
            "added": len(self.added),
            "changed": len(self.changed),
            "deleted": len(self.deleted),
        }


Change = dict[str, KindChange]


def diff(before: dict[str, str], after: dict[str, str]) -> KindChange:
    """The change from ``before`` to ``after`` (key -> digest of its values)."""
    return KindChange(
        existing=len(before),
        added=sorted(set(after) - set(before)),
        changed=sorted(k for k in after.keys() & before.keys() if after[k] != before[k]),
        deleted=sorted(set(before) - set(after)),
    )


def fingerprint(change: Change) -> str:
    """A digest of the change set itself (not of when it was computed)."""
    canonical = {kind: [c.added, c.changed, c.deleted] for kind, c in sorted(change.items())}
    return hashlib.sha256(json.dumps(canonical, separators=(",", ":")).encode()).hexdigest()


def over(change: Change, params: SafetyParams) -> list[str]:
    """Why the change is over the thresholds, one sentence per kind and measure; [] when not."""
    if not params.enabled:
        return []
    reasons = []
    for kind, c in sorted(change.items()):
        if c.existing == 0:
            continue
        for what, n, limit in (
            ("deleted", len(c.deleted), params.max_deleted_pct),
            ("changed", len(c.changed), params.max_changed_pct),
        ):
            share = 100.0 * n / c.existing
            if share > limit:
                reasons.append(
                    f"{kind}: {n} of {c.existing} would be {what} ({share:.1f}% > {limit:g}%)"
                )
    return reasons


def sample(change: Change, size: int = SAMPLE_SIZE) -> list[str]:
    """A few of the deletions and changes (deletions first), for the person deciding."""
    out: list[str] = []
    for action in ("deleted", "changed"):
        for kind, c in sorted(change.items()):
            out.extend(f"{action} {kind} {key}" for key in getattr(c, action)[:size])
    return out[:size]


def released_runs(releases: Iterable[Release]) -> list[str]:
    return [r.run_id for r in releases]


async def releases_of(ctx: JobContext) -> Sequence[Release]:
    """The releases of this job's held runs, from history (none when no API is at hand)."""
    if ctx.api is None:
        return []
    return await ctx.api.call(ops.RUNS_RELEASES, ReleasesQuery(job_id=ctx.job_id))


CLAIM_SQL = """
UPDATE sis.roster_holds SET applied_by_run = $3, applied_at = coalesce(applied_at, now())
 WHERE job_id = $1 AND run_id = ANY($2::text[]) AND fingerprint = $4
   AND (applied_by_run IS NULL OR applied_by_run = $3)
RETURNING run_id
"""
HOLD_SQL = """
INSERT INTO sis.roster_holds (run_id, job_id, occurrence_id, job_type, fingerprint, counts, sample)
VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb)
ON CONFLICT (run_id) DO UPDATE SET fingerprint = EXCLUDED.fingerprint,
       counts = EXCLUDED.counts, sample = EXCLUDED.sample, held_at = now()
"""


async def guard(
    ctx: JobContext,
    params: SafetyParams,
    change: Change,
    releases: Sequence[Release] | None = None,
) -> str | None:
    """Let the change through, or raise :class:`RunHeld` with the counts and a sample.

    Returns a line for the run's output when a released hold was claimed (None otherwise).
    ``releases``: the job's releases, looked up in history when not given.
    """
    reasons = over(change, params)
    if not reasons:
        return None
    print_ = fingerprint(change)
    pool = await ctx.db.pool()
    if releases is None:
        try:
            releases = await releases_of(ctx)
        except BelltowerError as exc:  # history away: hold, as with no release (the safe side)
            ctx.output.line(f"the releases of this job could not be read ({exc.message}); holding")
            releases = []
    released = released_runs(releases)
    if released:
        claimed = await pool.fetchval(CLAIM_SQL, ctx.job_id, released, ctx.run_id, print_)
        if claimed is not None:
            return f"safety hold of run {claimed} released: sending the held change once"
    counts = {kind: c.counts() for kind, c in change.items()}
    shown = sample(change)
    await pool.execute(
        HOLD_SQL, ctx.run_id, ctx.job_id, ctx.occurrence_id, ctx.job_type, print_,
        json.dumps(counts), json.dumps(shown),
    )  # fmt: skip
    for kind, c in sorted(counts.items()):
        ctx.output.line(
            f"{kind}: {c['existing']} held by the receiver, {c['added']} to add, "
            f"{c['changed']} to change, {c['deleted']} to delete"
        )
    if shown:
        ctx.output.line("sample: " + "; ".join(shown))
    ctx.output.summary = "held by the safety thresholds: " + "; ".join(reasons)
    raise RunHeld(
        "held, nothing sent: " + "; ".join(reasons) + f". Release it with `belltower runs release "
        f"{ctx.run_id}` (or the Release button on the run's page) to send this change once, raise "
        "param.safety.max_deleted_pct / max_changed_pct, or let the next run decide"
    )


def digest(values: Any) -> str:
    """A short stable digest of the values sent for one record."""
    return hashlib.sha256(
        json.dumps(values, separators=(",", ":"), default=str).encode()
    ).hexdigest()[:32]
