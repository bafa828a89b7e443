"""``calendar.import_ics``: the seeds' Import ICS File.

Imports events from an outside calendar (an .ics URL, e.g. a Google Calendar's address, or a
file in the batch folder) into a school's calendar: inserts new events, updates changed ones and
deletes those gone from the feed. It touches only the events this job created, keyed by the job's
id and the event's ICS UID and occurrence date; events entered by hand or by another Import ICS
job are never changed. Recurring events are expanded within the import window.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import icalendar
import msgspec
import recurring_ical_events

from belltower.errors import InvalidInput, JobFailed
from belltower.fences import BatchPathOrUrl, is_url
from belltower.jobtypes import JobContext, JobType

from .. import batchfiles, outbound
from ..report import Tally

UPSERT = """
INSERT INTO sis.calendar_events AS c
       (calendar, title, description, location, starts_at, ends_at, all_day, source, source_job_id, source_key)
VALUES ($1, $2, $3, $4, $5, $6, $7, 'ics', $8, $9)
ON CONFLICT (source_job_id, source_key) DO UPDATE
   SET calendar = excluded.calendar, title = excluded.title, description = excluded.description,
       location = excluded.location, starts_at = excluded.starts_at, ends_at = excluded.ends_at,
       all_day = excluded.all_day, updated_at = now()
 WHERE (c.calendar, c.title, c.description, c.location, c.starts_at, c.ends_at, c.all_day)
       IS DISTINCT FROM
       (excluded.calendar, excluded.title, excluded.description, excluded.location,
        excluded.starts_at, excluded.ends_at, excluded.all_day)
RETURNING (xmax = 0) AS inserted
"""


class ImportIcsParams(msgspec.Struct, forbid_unknown_fields=True):
    source: Annotated[
        BatchPathOrUrl,
        msgspec.Meta(
            min_length=1,
            description="An https:// (or webcal://) .ics address, or a file path inside the batch folder",
        ),
    ]
    calendar: Annotated[
        str, msgspec.Meta(min_length=1, description="The school's calendar, or 'district' for all")
    ] = "district"
    time_zone: Annotated[
        str | None,
        msgspec.Meta(description="For all-day and floating times; default: the school's"),
    ] = None
    past_days: Annotated[int, msgspec.Meta(ge=0)] = 30
    future_days: Annotated[int, msgspec.Meta(ge=1)] = 400


async def _load(ctx: JobContext, source: str) -> bytes:
    if is_url(source):
        return await outbound.fetch(ctx.settings, source, "param.source")
    path = batchfiles.inside(Path(ctx.settings.batch_folder), source, "param.source")
    try:
        return await asyncio.to_thread(path.read_bytes)
    except FileNotFoundError:
        raise JobFailed(
            f"no file {source} in the batch folder; check the job's source parameter"
        ) from None


def _instant(value: date | datetime, zone: ZoneInfo) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=zone)
    return datetime.combine(value, time(0), zone)


def _events(
    data: bytes, start: datetime, end: datetime, zone: ZoneInfo
) -> dict[str, dict[str, Any]]:
    try:
        cal = icalendar.Calendar.from_ical(data)
    except ValueError:
        # Not the parser's message: it quotes the content, which is the outside server's text.
        raise JobFailed(
            "the source is not an iCalendar file (no valid VCALENDAR); check the job's source"
        ) from None
    found: dict[str, dict[str, Any]] = {}
    for event in recurring_ical_events.of(cal).between(start, end):
        if event.name != "VEVENT" or not event.get("UID"):
            continue
        begins = event.decoded("DTSTART")
        all_day = not isinstance(begins, datetime)
        ends = event.decoded("DTEND") if event.get("DTEND") else None
        key = f"{event['UID']}@{_instant(begins, zone).date().isoformat()}"
        found[key] = {
            "title": str(event.get("SUMMARY", "")) or "(no title)",
            "description": str(event.get("DESCRIPTION", "")),
            "location": str(event.get("LOCATION", "")),
            "starts_at": _instant(begins, zone),
            "ends_at": _instant(ends, zone) if ends is not None else None,
            "all_day": all_day,
        }
    return found


async def run(ctx: JobContext, params: ImportIcsParams) -> None:
    pool = await ctx.db.pool()
    zone_name = params.time_zone or await pool.fetchval(
        "SELECT value FROM sis.school_preferences WHERE key = 'time_zone'"
    ) or "UTC"  # fmt: skip
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            "param.time_zone",
            f"{zone_name!r} is not a time zone",
            "an IANA name such as America/Chicago",
        ) from None
    data = await _load(ctx, params.source)
    now = datetime.now(UTC)
    start, end = now - timedelta(days=params.past_days), now + timedelta(days=params.future_days)
    events = await asyncio.to_thread(_events, data, start, end, zone)
    tally = Tally("Import ICS file")
    tally.fact(f"{len(events)} events in {params.source} between {start.date()} and {end.date()}")
    added = updated = 0
    async with pool.acquire() as conn, conn.transaction():
        for key, e in sorted(events.items()):
            changed = await conn.fetchval(
                UPSERT, params.calendar, e["title"], e["description"], e["location"],
                e["starts_at"], e["ends_at"], e["all_day"], ctx.job_id, key,
            )  # fmt: skip
            if changed is None:
                tally.skip(key, "unchanged")
            elif changed:
                added += 1
                tally.ok(key, f"added: {e['title']}")
            else:
                updated += 1
                tally.ok(key, f"updated: {e['title']}")
        gone = await conn.fetch(
            """DELETE FROM sis.calendar_events
                WHERE source_job_id = $1 AND NOT (source_key = ANY($2::text[]))
                  AND starts_at >= $3 AND starts_at < $4
            RETURNING source_key, title""",
            ctx.job_id, list(events), start, end,
        )  # fmt: skip
    for row in gone:
        tally.ok(row["source_key"], f"deleted: {row['title']}")
    tally.write(
        ctx, f"{added} added, {updated} updated, {len(gone)} deleted, {tally.skipped} unchanged"
    )


job_type = JobType(
    name="calendar.import_ics",
    pool="integration",
    title="Import ICS File",
    description=(
        "Imports calendar events from an outside calendar (.ics URL or file) into a school's or all "
        "schools' calendar: inserts, updates and deletes the events it imported, never touching "
        "events created by hand or by another Import ICS job."
    ),
    params=ImportIcsParams,
    run=run,
)
