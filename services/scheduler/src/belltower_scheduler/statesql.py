"""The SQL of job state (``jobstate.py``): max runs, failure streaks, expected durations.

Kept apart from ``store.py`` so the rules that decide from the ledger read as one piece.
"""

from __future__ import annotations

COUNTED_STATES = "('pending', 'dispatched', 'waiting', 'delayed', 'lost')"
"""Ledger states of an occurrence that counts towards max_runs: dispatched, or on its way to be
(buffered, delayed, being published), or dispatched and lost by the broker."""

LIMIT_RUNS = f"""
WITH l AS (SELECT * FROM unnest($1::uuid[], $2::int[]) AS l(job_id, max_runs)),
c AS (
    SELECT o.id, o.job_id, l.max_runs, (o.xmin = pg_current_xact_id()::xid) AS mine,
           row_number() OVER (PARTITION BY o.job_id ORDER BY o.scheduled_for, o.id) AS n
    FROM l JOIN scheduler.occurrences o ON o.job_id = l.job_id
    WHERE o.trigger = 'schedule' AND o.state IN {COUNTED_STATES}
),
cut AS (
    UPDATE scheduler.occurrences o SET state = 'skipped', cause = 'max_runs',
        reason = 'skipped: the job had already run its max_runs (' || c.max_runs || ')'
    FROM c WHERE o.id = c.id AND c.mine AND c.n > c.max_runs
    RETURNING o.id::text AS id
)
SELECT (SELECT array_agg(id) FROM cut) AS cut,
       (SELECT array_agg(DISTINCT job_id::text) FROM c WHERE n = max_runs) AS done
"""
"""Per job with max_runs: skip what this transaction planned beyond it; which jobs reached it."""

RUNS_COUNTED = (
    "SELECT count(*) FROM scheduler.occurrences WHERE job_id = $1::uuid "
    f"AND trigger = 'schedule' AND state IN {COUNTED_STATES}"
)

PAUSE_JOBS = """
WITH p AS (
    UPDATE scheduler.jobs j SET paused = true, next_run_at = NULL, updated_at = $4
    FROM unnest($1::uuid[], $2::text[]) AS n(id, note) WHERE j.id = n.id AND NOT j.paused
    RETURNING j.id, n.note
), i AS (
    INSERT INTO scheduler.pauses (job_id, paused_at, paused_by, note)
    SELECT id, $4, $3, note FROM p ON CONFLICT DO NOTHING
)
SELECT id::text AS id FROM p
"""
"""Belltower pauses jobs itself (max runs, failure streak): who is ``$3``, why each note."""

STREAKS_FOR_UPDATE = (
    "SELECT job_id::text AS job_id, streak, first_failed_at, last_occurrence_id::text AS "
    "last_occurrence_id, alerted FROM scheduler.failure_streaks WHERE job_id = ANY($1::uuid[]) "
    "ORDER BY job_id FOR UPDATE"
)

STREAKS_PUT = """
INSERT INTO scheduler.failure_streaks (job_id, streak, first_failed_at, last_occurrence_id, alerted)
SELECT u.* FROM unnest($1::uuid[], $2::int[], $3::timestamptz[], $4::uuid[], $5::bool[])
    AS u(job_id, streak, first_failed_at, last_occurrence_id, alerted)
JOIN scheduler.jobs j ON j.id = u.job_id
ON CONFLICT (job_id) DO UPDATE SET streak = excluded.streak,
    first_failed_at = excluded.first_failed_at, last_occurrence_id = excluded.last_occurrence_id,
    alerted = excluded.alerted
"""
"""A job deleted meanwhile gets no row (the join), rather than failing the batch."""

STREAKS_DROP = "DELETE FROM scheduler.failure_streaks WHERE job_id = ANY($1::uuid[])"

STREAK_OF = "SELECT streak FROM scheduler.failure_streaks WHERE job_id = $1::uuid"

STREAKS_ALL = (
    "SELECT s.job_id::text AS job_id, s.streak, j.type FROM scheduler.failure_streaks s "
    "JOIN scheduler.jobs j ON j.id = s.job_id"
)

EXPECTED_DURATION = """
SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY d) AS p95, count(*) AS n FROM (
    SELECT extract(epoch FROM o.run_finished_at - o.run_started_at)::float8 AS d
    FROM scheduler.occurrences o
    WHERE o.job_id = $1::uuid AND o.run_status = 'succeeded' AND o.run_started_at IS NOT NULL
    ORDER BY o.scheduled_for DESC LIMIT $2
) recent
"""
"""p95 of the durations of the job's latest ``$2`` succeeded runs (walking occurrences_job_time)."""

OVERDUE = """
SELECT o.id::text AS id, o.job_id::text AS job_id, o.run_started_at, e.p95, e.n
FROM scheduler.occurrences o CROSS JOIN LATERAL (
    SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY d) AS p95, count(*) AS n FROM (
        SELECT extract(epoch FROM p.run_finished_at - p.run_started_at)::float8 AS d
        FROM scheduler.occurrences p
        WHERE p.job_id = o.job_id AND p.run_status = 'succeeded' AND p.run_started_at IS NOT NULL
        ORDER BY p.scheduled_for DESC LIMIT $2
    ) recent
) e
WHERE o.created_at >= $1 AND o.state = 'dispatched' AND o.run_status = 'running'
    AND o.overdue_at IS NULL AND o.run_started_at IS NOT NULL AND e.n >= $3::int
    AND o.run_started_at < $5::timestamptz - make_interval(secs => $4::float8 * e.p95)
    AND {partition}
ORDER BY o.run_started_at LIMIT $6
"""
"""Runs going longer than ``$4`` times their job's expected duration, not yet said overdue."""

MARK_OVERDUE = (
    "UPDATE scheduler.occurrences SET overdue_at = $2 WHERE id = ANY($1::uuid[]) "
    "AND overdue_at IS NULL RETURNING id::text AS id"
)

RECORD_STARTED = (
    "UPDATE scheduler.occurrences o SET run_status = 'running', "
    "run_started_at = COALESCE(o.run_started_at, u.started_at) "
    "FROM unnest($1::uuid[], $2::timestamptz[]) AS u(id, started_at) WHERE o.id = u.id "
    "AND (o.run_status IS NULL OR o.run_status = 'running')"
)
