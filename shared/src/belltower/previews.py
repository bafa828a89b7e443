"""A schedule's next occurrences with the skipped ones between and why: what ``belltower schedule
preview``, ``belltower jobs preview`` and the HTTP API's previews show, computed in one place."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime

from .api import PreviewOccurrence, SchedulePreview
from .errors import InvalidInput
from .schedule import ON_DEMAND_TEXT, OnDemand, Schedule, compile_schedule, zone

MAX_COUNT = 1_000


def preview(
    schedule: Schedule,
    since: datetime | None,
    count: int,
    non_school_days: Sequence[date] = (),
    spread_key: str = "",
) -> SchedulePreview:
    """The next ``count`` runnable occurrences after ``since`` (default now), with the skipped
    ones between; an on-demand schedule has none. Refuses a schedule that can never run.
    ``spread_key`` (a job's id) picks the instants of ``H`` fields; without one they are an
    example."""
    if not 1 <= count <= MAX_COUNT:
        raise InvalidInput("count", f"{count} is not a number of occurrences", f"1 to {MAX_COUNT}")
    start = since or datetime.now(UTC)
    if isinstance(schedule.rule, OnDemand):
        compile_schedule(schedule)
        return SchedulePreview(
            description=ON_DEMAND_TEXT, since=start, occurrences=[], on_demand=True
        )
    compiled = compile_schedule(schedule, non_school_days=non_school_days, spread_key=spread_key)
    local = zone(schedule.tz)
    found = [
        PreviewOccurrence(
            at=occ.at.astimezone(local),
            utc=occ.at,
            rule=occ.rule,
            skipped=occ.skipped is not None,
            reason=occ.skipped,
            note=occ.note or None,
            nominal=occ.nominal.astimezone(local) if occ.nominal != occ.at else None,
        )
        for occ in compiled.preview(start, count)
    ]
    return SchedulePreview(description=compiled.describe(), since=start, occurrences=found)
