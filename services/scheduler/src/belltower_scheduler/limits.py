"""Limits per target: at most ``concurrency_limit`` runs at once of every job with the same
concurrency key (a Canvas account, an SFTP host), the others waiting in priority order.

The ledger decides, in PostgreSQL, so it holds across scheduler replicas and restarts: each
occurrence of a keyed job gets a row in ``scheduler.concurrency_slots`` in the transaction that
plans it (:class:`Hold`, in ``Store.plan``), and the key's admission runs under a transaction
advisory lock of the key, so two replicas never both take its last slot. An occurrence beyond
the limit is written ``waiting`` (cause ``concurrency``, the reason names the key and the count)
and not published; when a run of the key finishes, the transaction that records it frees the
slot and admits the next waiting one (highest priority, then earliest), which becomes
``pending`` and is published like any pending occurrence, its reason saying how long it waited.

A slot is held only while its occurrence is pending or dispatched and not finished in the
ledger, and for at most the dispatcher's stale-run age: a run the reconciler records lost or
abandoned, or a worker that crashed for good, frees its slot at the next admission of the key.
:meth:`sweep` runs that admission every few seconds for keys with waiting occurrences, which
also publishes what another partition's replica released.

A job without a key pays nothing per occurrence: the dispatcher keeps the keyed jobs in a dict
(:func:`key_of` at load), and a chunk or a batch of run events without them skips all of this.
"""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from belltower import metrics
from belltower.api import (
    CONCURRENCY_KEY_MAX,
    CONCURRENCY_LIMIT_MAX,
    Job,
    JobTypeInfo,
    RunPolicy,
)
from belltower.errors import InvalidInput

KEY_MAX = CONCURRENCY_KEY_MAX
LIMIT_MAX = CONCURRENCY_LIMIT_MAX
SWEEP_S = 2.0
"""How often a dispatcher with keyed jobs admits waiting occurrences (cross-partition releases,
slots freed by the reconciler) and publishes what was released."""

CAUSE = "concurrency"

_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('belltower.limit:' || k, 0)) FROM unnest($1::text[]) AS k ORDER BY k"

_DROP = """
DELETE FROM scheduler.concurrency_slots s WHERE s.key = ANY($1::text[]) AND NOT EXISTS (
    SELECT 1 FROM scheduler.occurrences o WHERE o.id = s.occurrence_id AND (
        (s.admitted_at IS NOT NULL AND s.admitted_at >= $2 AND o.state IN ('pending', 'dispatched')
         AND o.run_finished_at IS NULL)
        OR (s.admitted_at IS NULL AND (o.state = 'pending' OR (o.state = 'waiting' AND o.cause = 'concurrency')))))
"""
"""Slots no longer held (the run finished, was lost or abandoned, is older than the stale-run
age) and waiting rows whose occurrence no longer waits (skipped: its job was deleted). A waiting
row whose occurrence is pending was queued by this very transaction (``Hold``)."""

_ADMIT = """
WITH busy AS (
    SELECT key, count(*) AS n FROM scheduler.concurrency_slots
    WHERE key = ANY($1::text[]) AND admitted_at IS NOT NULL GROUP BY key
), ranked AS (
    SELECT s.occurrence_id, s.key, s.max_running,
           row_number() OVER (PARTITION BY s.key
                              ORDER BY s.priority DESC, s.scheduled_for, s.queued_at, s.occurrence_id) AS rn
    FROM scheduler.concurrency_slots s JOIN scheduler.jobs j ON j.id = s.job_id AND NOT j.paused
    WHERE s.key = ANY($1::text[]) AND s.admitted_at IS NULL
)
UPDATE scheduler.concurrency_slots s SET admitted_at = $2
FROM ranked r LEFT JOIN busy b ON b.key = r.key
WHERE s.occurrence_id = r.occurrence_id AND r.rn + coalesce(b.n, 0) <= r.max_running
RETURNING s.occurrence_id::text AS id, s.key, s.max_running, s.queued_at
"""
"""Give free slots to waiting occurrences, highest priority first, then the earliest; each
is admitted only while fewer than its own job's limit of the key's runs hold a slot."""

_RELEASE = """
UPDATE scheduler.occurrences o SET state = 'pending',
    reason = 'waited ' || to_char(extract(epoch FROM $4::timestamptz - u.queued_at), 'FM999999990.0')
             || 's for ' || u.key || ' (concurrency limit ' || u.lim || ')'
FROM unnest($1::uuid[], $2::text[], $3::int[], $5::timestamptz[]) AS u(id, key, lim, queued_at)
WHERE o.id = u.id AND o.state = 'waiting' AND o.cause = 'concurrency'
RETURNING o.id::text AS id, o.job_id::text AS job_id
"""

_WAIT = """
UPDATE scheduler.occurrences o SET state = 'waiting', cause = 'concurrency',
    reason = 'waiting: ' || u.key || ' had ' || coalesce(
        (SELECT count(*) FROM scheduler.concurrency_slots s WHERE s.key = u.key AND s.admitted_at IS NOT NULL), 0)
        || ' of ' || u.lim || ' runs in flight (concurrency limit); it runs when one finishes, in priority order'
FROM unnest($1::uuid[], $2::text[], $3::int[]) AS u(id, key, lim)
WHERE o.id = u.id AND o.state = 'pending'
RETURNING o.id::text AS id, o.reason
"""

_QUEUE = """
INSERT INTO scheduler.concurrency_slots
    (occurrence_id, key, job_id, max_running, priority, scheduled_for, queued_at)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::int[], $5::int[], $6::timestamptz[],
                     array_fill($7::timestamptz, ARRAY[cardinality($1::uuid[])]))
ON CONFLICT (occurrence_id) DO NOTHING RETURNING occurrence_id::text AS id
"""


def check_policy(policy: RunPolicy, params: dict[str, Any]) -> None:
    """Refuse a key or limit that cannot be used, naming the field (when the job is saved)."""
    key, limit = policy.concurrency_key, policy.concurrency_limit
    if not key:
        if limit is not None:
            raise InvalidInput(
                "concurrency_limit",
                "is set without a concurrency_key",
                "a concurrency_key too (e.g. canvas:{base_url}), or no limit",
            )
        return
    if limit is None or not 1 <= limit <= LIMIT_MAX:
        raise InvalidInput(
            "concurrency_limit",
            f"{limit} is out of range",
            f"runs at once of the jobs with this key, 1 to {LIMIT_MAX}",
        )
    render_key(key, params)


def with_type_default(policy: RunPolicy, info: JobTypeInfo) -> RunPolicy:
    """A job that leaves its key out gets its type's key, and its type's limit unless it gives
    its own, kept with the job (so an export shows them and a later change of the type does not
    move the job's runs); an empty key says the job has none, whatever its type declares."""
    if policy.concurrency_key is not None or info.concurrency_key is None:
        return policy
    limit = policy.concurrency_limit
    return msgspec.structs.replace(
        policy,
        concurrency_key=info.concurrency_key,
        concurrency_limit=info.concurrency_limit if limit is None else limit,
    )


def checked(
    policy: RunPolicy | None, info: JobTypeInfo, params: dict[str, Any]
) -> RunPolicy | None:
    """The policy a job is saved with: its type's key when it has none (see
    :func:`with_type_default`), the key and limit checked against its params."""
    if policy is None:
        return None
    policy = with_type_default(policy, info)
    check_policy(policy, params)
    return policy


def render_key(template: str, params: dict[str, Any]) -> str:
    """The key a job's params give its template: ``{name}`` is replaced by parameter ``name``
    (a string, number or boolean); anything else in braces, a missing parameter, a control
    character or a key over :data:`KEY_MAX` characters is refused."""
    accepted = "text with {param} placeholders, e.g. canvas:{base_url} or sftp:{host}"
    out: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise InvalidInput(
            "concurrency_key", f"{template!r} cannot be read ({exc})", accepted
        ) from None
    for literal, name, spec, conversion in parsed:
        out.append(literal)
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise InvalidInput(
                "concurrency_key", f"{{{name}}} is not a parameter placeholder", accepted
            )
        value = params.get(name)
        if value is None or value == "" or isinstance(value, dict | list):
            raise InvalidInput(
                "concurrency_key",
                f"{{{name}}} names no parameter with a value"
                + ("" if value is None else " (a list or object cannot be a key)"),
                f"a parameter of the job type that has a text or number value; {accepted}",
            )
        out.append(str(value).lower() if isinstance(value, bool) else str(value))
    key = "".join(out)
    if not key.strip() or len(key) > KEY_MAX:
        raise InvalidInput(
            "concurrency_key", f"renders to {len(key)} characters", f"1 to {KEY_MAX} characters"
        )
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in key):
        raise InvalidInput(
            "concurrency_key", "contains a control character", "one line of printable text"
        )
    return key


def key_of(policy: RunPolicy, params_json: bytes) -> tuple[str, int] | None:
    """A job's rendered key and limit, or None (most jobs: one attribute read)."""
    template = policy.concurrency_key
    if not template or policy.concurrency_limit is None:
        return None
    try:
        return render_key(template, msgspec.json.decode(params_json)), policy.concurrency_limit
    except InvalidInput:
        return template, policy.concurrency_limit  # checked when saved; never left unlimited


async def admit(
    conn: asyncpg.Connection, keys: Sequence[str], now: datetime, stale: timedelta
) -> list[asyncpg.Record]:
    """Drop the keys' slots no longer held and admit waiting occurrences into the free ones
    (in the caller's transaction, under the keys' advisory locks). Returns the admitted slots."""
    keys = sorted(set(keys))
    await conn.execute(_LOCK, keys)
    await conn.execute(_DROP, keys, now - stale)
    return await conn.fetch(_ADMIT, keys, now)


async def release(
    conn: asyncpg.Connection, admitted: Sequence[asyncpg.Record], now: datetime
) -> list[str]:
    """Admitted occurrences that were waiting become pending, their reason how long they waited."""
    if not admitted:
        return []
    rows = await conn.fetch(
        _RELEASE,
        [a["id"] for a in admitted],
        [a["key"] for a in admitted],
        [a["max_running"] for a in admitted],
        now,
        [a["queued_at"] for a in admitted],
    )
    released = {r["id"] for r in rows}
    for a in admitted:
        if a["id"] in released:
            metrics.CONCURRENCY_WAITED.observe(max(0.0, (now - a["queued_at"]).total_seconds()))
    return sorted(released)


@dataclass
class Hold:
    """The keyed occurrences of a chunk being planned, applied in the plan's transaction: the
    new ones are queued for their key's slots, the key is admitted, and those not admitted are
    written ``waiting`` (``waiting``: their ids and reasons). Waiting occurrences of other chunks that got a
    slot meanwhile are released (``released``)."""

    occurrences: list[tuple[str, str, str, int, int, datetime]]
    """(occurrence id, key, job id, limit, priority, scheduled for)."""
    now: datetime
    stale: timedelta
    waiting: dict[str, str] = field(default_factory=dict)
    released: list[str] = field(default_factory=list)

    async def apply(self, conn: asyncpg.Connection, new: set[str] | None = None) -> None:
        """Queue the occurrences (those in ``new``, the ones this transaction wrote, when given)
        that have no slot row yet, and admit their keys."""
        candidates = [o for o in self.occurrences if new is None or o[0] in new]
        if not candidates:
            return
        queued = await conn.fetch(
            _QUEUE,
            [o[0] for o in candidates],
            [o[1] for o in candidates],
            [o[2] for o in candidates],
            [o[3] for o in candidates],
            [o[4] for o in candidates],
            [o[5] for o in candidates],
            self.now,
        )
        fresh = {r["id"] for r in queued}
        mine = [o for o in candidates if o[0] in fresh]
        if not mine:
            return
        admitted = await admit(conn, [o[1] for o in mine], self.now, self.stale)
        got = {a["id"] for a in admitted}
        held = [o for o in mine if o[0] not in got]
        if held:
            rows = await conn.fetch(
                _WAIT, [o[0] for o in held], [o[1] for o in held], [o[3] for o in held]
            )
            self.waiting = {r["id"]: r["reason"] for r in rows}
            metrics.OCCURRENCES_HELD.labels(CAUSE).inc(len(held))
        self.released = await release(
            conn, [a for a in admitted if a["id"] not in {o[0] for o in mine}], self.now
        )


async def free(
    conn: asyncpg.Connection, finished: Sequence[str], now: datetime, stale: timedelta
) -> list[str]:
    """Runs of keyed jobs finished (in the transaction recording them): their slots are freed
    and the keys' waiting occurrences admitted; returns the occurrences released."""
    if not finished:
        return []
    keys = await conn.fetch(
        "DELETE FROM scheduler.concurrency_slots WHERE occurrence_id = ANY($1::uuid[]) "
        "AND admitted_at IS NOT NULL RETURNING key",
        list(finished),
    )
    if not keys:
        return []
    return await release(conn, await admit(conn, [k["key"] for k in keys], now, stale), now)


async def forget_job(conn: asyncpg.Connection, job_id: str) -> None:
    """A job is deleted: its waiting occurrences are skipped and leave their keys' queues (a run
    of it still going keeps its slot until it ends: it still uses the target)."""
    await conn.execute(
        "WITH w AS (DELETE FROM scheduler.concurrency_slots WHERE job_id = $1::uuid "
        "AND admitted_at IS NULL RETURNING occurrence_id) "
        "UPDATE scheduler.occurrences o SET state = 'skipped', cause = 'deleted', "
        "reason = 'skipped: the job was deleted while this occurrence waited for its concurrency key' "
        "FROM w WHERE o.id = w.occurrence_id AND o.state = 'waiting'",
        job_id,
    )


async def sweep(conn: asyncpg.Connection, now: datetime, stale: timedelta) -> list[str]:
    """Admit waiting occurrences of every key that has some (see the module's docstring)."""
    keys = await conn.fetch(
        "SELECT DISTINCT key FROM scheduler.concurrency_slots WHERE admitted_at IS NULL"
    )
    if not keys:
        return []
    return await release(conn, await admit(conn, [k["key"] for k in keys], now, stale), now)


async def fill(job: Job, policy: RunPolicy, pool: asyncpg.Pool) -> Job:
    """What ``jobs show`` says of the job's key: its value and how many run and wait now."""
    job.concurrency_key = policy.concurrency_key
    job.concurrency_limit = policy.concurrency_limit
    keyed = key_of(policy, msgspec.json.encode(job.params))
    if keyed is None:
        return job
    job.concurrency_key_value = keyed[0]
    row = await pool.fetchrow(
        "SELECT count(*) FILTER (WHERE admitted_at IS NOT NULL) AS running, "
        "count(*) FILTER (WHERE admitted_at IS NULL) AS waiting "
        "FROM scheduler.concurrency_slots WHERE key = $1",
        keyed[0],
    )
    job.concurrency_running = row["running"] if row else 0
    job.concurrency_waiting = row["waiting"] if row else 0
    return job
