"""Failure streaks, as pure rules: what one more finished run does to a job's streak.

A streak is the number of consecutive runs of a job that did not succeed, in the order the
scheduler recorded their first finished status (``jobstate.py`` feeds each ledger row to
:func:`advance` once). The failing alert goes out when the streak reaches the job's
``alert_after_failures``, once per streak; the job is paused when it reaches
``pause_after_failures``; the first success after an alerted streak is a recovery.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

BELLTOWER = "belltower"
"""Who paused a job that Belltower paused itself (max runs, failure streak)."""

FAILURES = frozenset({"failed", "timed_out", "dead_lettered", "lost", "abandoned"})
"""Finished statuses that extend a streak; ``succeeded`` ends it."""


@dataclass(frozen=True, slots=True)
class Streak:
    """A job's current streak (never 0: a job without one has no row)."""

    streak: int
    first_failed_at: datetime
    last_occurrence_id: str
    alerted: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a finished run did: the streak after it (None when it ended) and the notices due."""

    streak: Streak | None
    failing: bool = False
    """The streak reached ``alert_after`` with this run: send the failing alert."""
    recovered: Streak | None = None
    """A success ended this alerted streak: send the recovery notice."""
    pause: bool = False
    """The streak is at ``pause_after`` or beyond with this run: pause the job (a job resumed
    mid-streak is paused again by its next failure)."""


def advance(
    current: Streak | None,
    *,
    status: str,
    occurrence_id: str,
    finished_at: datetime,
    alert_after: int | None,
    pause_after: int | None,
) -> Outcome:
    """The streak after one more finished run of the job."""
    if status not in FAILURES:
        if current is None:
            return Outcome(None)
        return Outcome(None, recovered=current if current.alerted else None)
    if current is None:
        after = Streak(1, finished_at, occurrence_id)
    else:
        after = replace(current, streak=current.streak + 1, last_occurrence_id=occurrence_id)
    failing = alert_after is not None and not after.alerted and after.streak >= alert_after
    if failing:
        after = replace(after, alerted=True)
    pause = pause_after is not None and after.streak >= pause_after
    return Outcome(after, failing=failing, pause=pause)


def pause_note(streak: int) -> str:
    return f"paused by Belltower after {streak} consecutive failed runs (pause_after_failures)"


def max_runs_note(max_runs: int) -> str:
    return f"max runs reached: {max_runs} of {max_runs} runs dispatched (max_runs)"
