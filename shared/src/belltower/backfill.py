"""Backfill: run the occurrences a job's schedule would have had in a past range.

The range's occurrences are the schedule's own (calendar, window, weekdays and DST policy
applied, ``H`` fields resolved with the job's id), computed by the schedule engine exactly as
the dispatcher plans them, so each one's id is the one the dispatcher would have given it
(:func:`belltower.events.occurrence_id`). That id decides what runs: an occurrence the ledger
has as run, running or planned is not run again; one it has as missed, coalesced, skipped or
awaiting a decision, or does not have at all, is dispatched with trigger ``backfill``.

The request and reply types of the ``jobs.backfill`` operation and the checks the CLI, the
console and the scheduler share live here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import msgspec

from .errors import InvalidInput
from .schedule import DATETIME_FORM, CompiledSchedule

DEFAULT_MAX = 1_000
"""Most occurrences one backfill runs unless ``max`` says otherwise."""
MAX_LIMIT = 10_000
"""The highest ``max`` a backfill may give."""
MAX_PRIORITY = 1_000_000

RERUNNABLE = ("missed", "coalesced", "skipped", "awaiting")
"""Ledger states of an occurrence that never ran: a backfill runs it. Every other state
(dispatched, pending, waiting, delayed, lost) means it ran, runs or is planned: not again."""

_TICK = timedelta(microseconds=1)
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
Aware = Annotated[datetime, msgspec.Meta(tz=True)]


class BackfillBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What the HTTP API takes (``POST /api/v1/jobs/{id}/backfill``): the range is
    ``[from, to)`` in scheduled instants; who asks is the caller, never the body."""

    since: Aware = msgspec.field(name="from")
    until: Aware = msgspec.field(name="to")
    dry_run: bool = False
    max: int = DEFAULT_MAX
    priority: int | None = None
    """The priority the backfill's occurrences carry (default: the job's)."""


class BackfillRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``jobs.backfill``: the body plus the job and who asked, from where (set by the console)."""

    id: str
    since: datetime
    until: datetime
    dry_run: bool = False
    max: int = DEFAULT_MAX
    priority: int | None = None
    requested_by: str | None = None
    requested_from: str | None = None


class BackfillOccurrence(msgspec.Struct, kw_only=True):
    """One occurrence of the range: ``run`` (dispatched, or with ``dry_run`` would be) or
    ``already`` (the ledger has it as ``was``: it ran, runs or is planned; not run again)."""

    occurrence_id: str
    run_id: str
    scheduled_for: datetime
    action: Literal["run", "already"]
    was: str | None = None
    """Its ledger state before the backfill, None when the ledger had no row for it."""


class BackfillResult(msgspec.Struct, kw_only=True):
    job_id: str
    title: str
    since: datetime
    until: datetime
    dry_run: bool
    priority: int
    occurrences: list[BackfillOccurrence]
    to_run: int
    already: int


def check(
    since: datetime, until: datetime, limit: int, priority: int | None, now: datetime
) -> None:
    """Refuse a backfill that cannot be meant, naming the field (CLI, console and scheduler)."""
    if since.tzinfo is None or until.tzinfo is None:
        raise InvalidInput("from", "has no UTC offset", DATETIME_FORM)
    if since < EARLIEST:
        raise InvalidInput(
            "from", f"{since.isoformat()} is out of range", "a date-time from 1970 on"
        )
    if until <= since:
        raise InvalidInput("to", "is not after from", "a --to later than --from")
    if until > now:
        raise InvalidInput(
            "to",
            f"{until.isoformat(timespec='seconds')} is in the future",
            "a date-time up to now: later occurrences run on their own",
        )
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput("max", f"{limit} is out of range", f"1 to {MAX_LIMIT:,}")
    if priority is not None and not 0 <= priority <= MAX_PRIORITY:
        raise InvalidInput(
            "priority", f"{priority} is out of range", f"a whole number from 0 to {MAX_PRIORITY}"
        )


def classify(
    ids: list[str], states: dict[str, str]
) -> list[tuple[Literal["run", "already"], str | None]]:
    """For each occurrence id, whether a backfill runs it, given the ledger's states by id
    (an id missing from ``states`` has no row): ``(action, the state it was in)``."""
    out: list[tuple[Literal["run", "already"], str | None]] = []
    for occ_id in ids:
        was = states.get(occ_id)
        out.append(("run" if was is None or was in RERUNNABLE else "already", was))
    return out


def occurrences_in(
    compiled: CompiledSchedule, since: datetime, until: datetime, limit: int
) -> list[datetime]:
    """The runnable instants in ``[since, until)``, as the dispatcher would have planned them;
    more than ``limit`` is refused, naming ``max`` and the limit (nothing is half-done)."""
    found: list[datetime] = []
    try:
        at = compiled.next_after(since - _TICK)
        while at is not None and at < until:
            if len(found) == limit:
                raise InvalidInput(
                    "max",
                    f"the range holds more than {limit:,} occurrences of this job's schedule",
                    f"a shorter range, or a --max up to {MAX_LIMIT:,} (default {DEFAULT_MAX:,})",
                )
            found.append(at)
            at = compiled.next_after(at)
    except (OverflowError, ValueError) as exc:  # past what a datetime can hold
        raise InvalidInput(
            "from", f"the range cannot be computed: {exc}", "a date-time from 1970 on"
        ) from None
    return found
