"""Catch-up a person decides: the catch-up policy ``ask``.

After downtime, the missed occurrences of a job with ``catch_up: ask`` wait in the ledger as
``awaiting`` (a decision) instead of running or being skipped. Someone with the editor role
answers: ``latest`` runs the latest of them and skips the others, ``all`` runs every one,
``none`` skips them all. Unanswered, they are skipped after ``BELLTOWER_SCHEDULER_DECISION_TTL_S``
and the ledger says so. The answer is one conditional update of the awaiting rows, so a decision
given twice, or while the scheduler restarts, runs each occurrence at most once.

The request and reply types of ``jobs.decide`` and ``decisions.list`` and the rule of which
occurrences a choice runs live here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal, TypeVar

import msgspec

from .errors import InvalidInput

Choice = Literal["latest", "all", "none"]
CHOICES: tuple[Choice, ...] = ("latest", "all", "none")
CHOICE_FORM = "latest (run the latest, skip the others), all (run every one) or none (skip all)"

AWAITING = "awaiting"
"""The ledger state of a missed occurrence waiting for a decision."""


class DecisionBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What the HTTP API takes (``POST /api/v1/jobs/{id}/decision``)."""

    choice: Choice


class DecisionRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    id: str
    choice: Choice
    requested_by: str | None = None
    requested_from: str | None = None


class DecisionResult(msgspec.Struct, kw_only=True):
    """What the decision did: the occurrences it runs and how many it skipped."""

    job_id: str
    choice: Choice
    decided_at: datetime
    run: list[str]
    """Occurrence ids dispatched."""
    run_for: list[datetime]
    """Their scheduled instants."""
    skipped: int


class DecisionsRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The decisions waiting: one job's, or every job's (at most ``limit`` jobs)."""

    job_id: str | None = None
    limit: int = 100


class PendingDecision(msgspec.Struct, kw_only=True):
    """A job whose missed occurrences await a decision: how many, between when, until when."""

    job_id: str
    title: str
    count: int
    first: datetime
    last: datetime
    since: datetime
    """When the first of them was found missed."""
    expires_at: datetime
    """When they are skipped unless someone decides before."""


def check_choice(value: str) -> Choice:
    if value not in CHOICES:
        raise InvalidInput("choice", f"{value!r} is not a decision", CHOICE_FORM)
    return value


T = TypeVar("T")


def split(awaiting: Sequence[tuple[datetime, T]], choice: Choice) -> tuple[list[T], list[T]]:
    """Which awaiting occurrences (scheduled instant, id) a choice runs and which it skips."""
    ordered = [item for _, item in sorted(awaiting, key=lambda pair: pair[0])]
    if choice == "all":
        return ordered, []
    if choice == "none":
        return [], ordered
    return ordered[-1:], ordered[:-1]


def sentence(d: PendingDecision) -> str:
    """The banner's words: "7 runs of 'Balance Due' were missed between … and …"."""
    runs = "1 run" if d.count == 1 else f"{d.count:,} runs"
    were = "was" if d.count == 1 else "were"
    first = d.first.isoformat(timespec="minutes")
    if d.count == 1:
        return f"{runs} of '{d.title}' {were} missed at {first}"
    return f"{runs} of '{d.title}' {were} missed between {first} and {d.last.isoformat(timespec='minutes')}"
