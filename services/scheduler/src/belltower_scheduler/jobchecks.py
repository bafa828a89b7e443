"""Checks and views of job state: max runs, failure-streak thresholds, and what ``jobs show``
says about them (runs left, current streak, expected duration). The pause note's check is
shared with the CLI and the console (``belltower.jobstate``)."""

from __future__ import annotations

from belltower.api import Job, RunPolicy
from belltower.errors import Conflict, InvalidInput
from belltower.jobstate import MAX_FAILURES_LIMIT, MAX_RUNS_LIMIT

from .overdue import OverdueRule
from .store import StateStore


def check_state_policy(policy: RunPolicy) -> None:
    """Refuse max runs and failure thresholds that make no sense, naming the field."""
    if policy.max_runs is not None and not 1 <= policy.max_runs <= MAX_RUNS_LIMIT:
        raise InvalidInput(
            "max_runs",
            f"{policy.max_runs} is out of range",
            f"a whole number from 1 to {MAX_RUNS_LIMIT}, or null for no limit",
        )
    for name in ("alert_after_failures", "pause_after_failures"):
        value = getattr(policy, name)
        if value is not None and not 1 <= value <= MAX_FAILURES_LIMIT:
            raise InvalidInput(
                name,
                f"{value} is out of range",
                f"consecutive failed runs, 1 to {MAX_FAILURES_LIMIT}, or null for never",
            )


async def refuse_resume_past_max_runs(state: StateStore, job_id: str, policy: RunPolicy) -> None:
    """A job that ran its max runs stays ended until its max_runs is raised or cleared."""
    if policy.max_runs is None:
        return
    counted = await state.runs_counted(job_id)
    if counted >= policy.max_runs:
        raise Conflict(
            f"the job has run its max_runs ({counted} of {policy.max_runs}): raise max_runs "
            f"(`belltower jobs update {job_id} --max-runs N`) or clear it (--max-runs 0) to resume"
        )


async def fill_state(job: Job, policy: RunPolicy, state: StateStore, rule: OverdueRule) -> Job:
    """What ``jobs show`` says of the job's state, read from the ledger."""
    job.max_runs = policy.max_runs
    job.alert_after_failures = policy.alert_after_failures
    job.pause_after_failures = policy.pause_after_failures
    if policy.max_runs is not None:
        job.runs_counted = await state.runs_counted(job.id)
        job.runs_left = max(0, policy.max_runs - job.runs_counted)
    job.failure_streak = await state.streak(job.id)
    p95, runs = await state.expected_duration(job.id, rule.sample)
    job.expected_duration_s = p95
    job.expected_duration_runs = runs
    threshold = rule.threshold(p95, runs)
    if threshold is not None and rule.applies(threshold, job.timeout_s):
        job.overdue_after_s = threshold
    return job
