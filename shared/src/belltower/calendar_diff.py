"""What a calendar change would do to the runs of the jobs that use it, before it is saved.

The schedule engine runs each job's schedule twice over the same stretch, with the calendar's
days as they are and as they would be, and the runnable instants are compared occurrence by
occurrence (by the rule's nominal instant): one runnable only before is **skipped**, one only
after is **added**, one runnable both times at another instant is **moved** (a job that runs
on the next school day instead). ``belltower calendars diff``, the console's calendar page and
``POST /api/v1/calendars/{name}/diff`` show it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

from .schedule import CompiledSchedule, Occurrence

Change = Literal["moved", "skipped", "added"]
MOVE_REACH = timedelta(days=31)
"""How far past the stretch an occurrence moved to the next school day is still looked for."""
MAX_SCANNED = 50_000
"""Occurrences read per schedule and side; an every-second job stops there (``truncated``)."""


@dataclass(frozen=True)
class RunChange:
    change: Change
    nominal: datetime
    before: datetime | None
    after: datetime | None
    reason: str | None = None


@dataclass(frozen=True)
class Outcome:
    changes: list[RunChange]
    truncated: bool


def _runnable(
    compiled: CompiledSchedule, since: datetime, until: datetime
) -> tuple[dict[datetime, Occurrence], dict[datetime, str], bool]:
    """Runnable occurrences by nominal instant, the skip reasons of the others, and whether the
    scan stopped at ``MAX_SCANNED``."""
    runnable: dict[datetime, Occurrence] = {}
    skipped: dict[datetime, str] = {}
    stop = until + MOVE_REACH
    for n, occ in enumerate(compiled.occurrences(since)):
        if occ.at > stop:
            return runnable, skipped, False
        if n >= MAX_SCANNED:
            return runnable, skipped, True
        if occ.skipped is None:
            runnable[occ.nominal] = occ
        else:
            skipped.setdefault(occ.nominal, occ.skipped)
    return runnable, skipped, False


def diff_runs(
    before: CompiledSchedule, after: CompiledSchedule, since: datetime, until: datetime
) -> Outcome:
    """The runs in ``(since, until]`` (by the rule's instant) that the change from ``before``
    to ``after`` moves, skips or adds, in order."""
    old, _, cut_old = _runnable(before, since, until)
    new, reasons, cut_new = _runnable(after, since, until)
    changes: list[RunChange] = []
    landing = {occ.at for occ in new.values()}
    for nominal in sorted(old.keys() | new.keys()):
        if nominal > until:
            continue
        was, will = old.get(nominal), new.get(nominal)
        if was is not None and will is not None:
            if was.at != will.at:
                changes.append(RunChange("moved", nominal, was.at, will.at, will.note))
        elif was is not None:
            reason = reasons.get(nominal) or (
                "runs once with the run moved onto the same time from a non-school day"
                if was.at in landing
                else "not runnable with the changed calendar"
            )
            changes.append(RunChange("skipped", nominal, was.at, None, reason))
        elif will is not None:
            changes.append(RunChange("added", nominal, None, will.at, will.note))
    return Outcome(changes, cut_old or cut_new)


def changed_days(
    current: Iterable[date], added: Iterable[date], removed: Iterable[date], replace: bool
) -> frozenset[date]:
    """The calendar's days after the change: ``added`` (only those with ``replace``) and the
    current ones, less ``removed``."""
    days = set(added) if replace else set(current) | set(added)
    return frozenset(days - set(removed))


def never_runs(before: CompiledSchedule, since: datetime, until: datetime, reason: str) -> Outcome:
    """The outcome when the changed calendar leaves the schedule no run at all (the engine
    refuses to compile it): every run of the stretch is skipped, with the engine's reason."""
    old, _, cut = _runnable(before, since, until)
    changes = [
        RunChange("skipped", nominal, occ.at, None, reason)
        for nominal, occ in sorted(old.items())
        if nominal <= until
    ]
    return Outcome(changes, cut)
