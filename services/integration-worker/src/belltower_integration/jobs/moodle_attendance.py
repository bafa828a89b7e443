"""``lms.moodle_attendance_import``: the SONIS Moodle Attendance Import, through Moodle's web
services. **Needs the Attendance activity plugin** (``mod_attendance``, not part of Moodle core)
on the site, and a token whose service includes its function ``mod_attendance_get_sessions``
besides core's ``core_course_get_courses_by_field``, ``core_course_get_contents`` and
``core_user_get_users_by_field``.

For each course of the chosen terms (the Moodle course whose ``idnumber`` is
``<course code>-<term code>``, as the Moodle LMS Export makes them) it finds the course's
attendance activities (modules ``attendance`` in the course contents), reads their sessions
held in the last ``past_days`` days up to the occurrence, and takes each student's status of
each session: the status acronym through ``status_marks`` (the plugin's default set P, A, L, E
as present, absent, tardy, excused), else its description. Students are matched by their Moodle
``idnumber`` (the SIS id), the day is the session's date in the school's time zone, and the
marks go to ``sis.attendance`` (:mod:`..attendance`): one per student, section and day, so a
repeat changes nothing, with a dry run. Moodle's attendance data is read, never changed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from belltower.errors import ConfigurationError, InvalidInput
from belltower.jobtypes import JobContext, JobType

from .. import attendance, importing, lmsroster
from ..moodle import MoodleClient, MoodleError, SiteUrl, TokenSecret
from ..report import Tally
from ..secrets import read_secret

Acronym = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9]{1,4}$")]
ZONE_SQL = "SELECT value FROM sis.school_preferences WHERE key = 'time_zone'"


class MoodleAttendanceParams(msgspec.Struct, forbid_unknown_fields=True):
    base_url: SiteUrl
    token_secret: TokenSecret = "moodle-token"
    terms: lmsroster.Terms = []
    upcoming_days: lmsroster.UpcomingDays = 0
    past_days: Annotated[
        int, msgspec.Meta(ge=0, le=366, description="Sessions of this many days back are read")
    ] = 7
    status_marks: Annotated[
        dict[Acronym, attendance.Mark],
        msgspec.Meta(description="Attendance status acronym -> SIS mark"),
    ] = msgspec.field(
        default_factory=lambda: {"P": "present", "A": "absent", "L": "tardy", "E": "excused"}
    )
    time_zone: (
        Annotated[
            str,
            msgspec.Meta(max_length=64, pattern=r"^[A-Za-z][A-Za-z0-9_+/-]*$",
                         description="For session dates; default: the school's (time_zone)"),
        ]
        | None
    ) = None  # fmt: skip
    overwrite: Annotated[
        bool, msgspec.Meta(description="Replace a different mark the SIS has for the day")
    ] = True
    dry_run: Annotated[bool, msgspec.Meta(description="Check and count; write nothing")] = False
    group: importing.Group | None = None
    notify: importing.Addresses = []


PLUGIN_MISSING = (
    "this Moodle site does not offer mod_attendance_get_sessions: the Moodle Attendance Import "
    "needs the Attendance activity plugin (mod_attendance) installed, and its functions added to "
    "the service of the token in {secret!r}"
)


class _Reader:
    def __init__(self, client: MoodleClient, params: MoodleAttendanceParams, zone: ZoneInfo,
                 since: datetime, until: datetime, tally: Tally) -> None:  # fmt: skip
        self.client, self.params, self.zone, self.tally = client, params, zone, tally
        self.since, self.until = since.timestamp(), until.timestamp()
        self.sessions = 0

    async def course(self, course: lmsroster.Course) -> list[tuple[str, int, datetime, str]]:
        """(record, Moodle user id, session time, status text) for one SIS course-term."""
        found = await self.client.course_by_idnumber(course.key)
        if not found:
            self.tally.skip(f"course {course.key}", "not in Moodle (no course with this idnumber)")
            return []
        out = []
        for section in await self.client.course_contents(int(found["id"])):
            for module in section.get("modules") or []:
                if module.get("modname") == "attendance":
                    out += await self._activity(course.key, int(module["instance"]))
        return out

    async def _activity(self, key: str, instance: int) -> list[tuple[str, int, datetime, str]]:
        try:
            sessions = await self.client.attendance_sessions(instance)
        except MoodleError as exc:
            if exc.errorcode == "invalidrecord" and "external_functions" in exc.reason:
                secret = self.params.token_secret  # the site has no such function: no plugin
                raise ConfigurationError(PLUGIN_MISSING.format(secret=secret)) from None
            raise
        out = []
        for s in sessions:
            when = int(s.get("sessdate") or 0)
            if not self.since <= when <= self.until:
                continue
            self.sessions += 1
            statuses = {str(st["id"]): st for st in s.get("statuses") or []}
            for entry in s.get("attendance_log") or []:
                status = statuses.get(str(entry.get("statusid")))
                if status is None:
                    continue
                acronym = str(status.get("acronym", ""))
                text = self.params.status_marks.get(acronym) or str(status.get("description", ""))
                record = f"{key} session {s['id']} user {entry['studentid']}"
                out.append((record, int(entry["studentid"]),
                            datetime.fromtimestamp(when, UTC), text))  # fmt: skip
        return out


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput("param.time_zone", f"{name!r} is not a time zone",
                           "an IANA name such as America/Chicago") from None  # fmt: skip


async def run(ctx: JobContext, params: MoodleAttendanceParams) -> None:
    token = read_secret(params.token_secret, "param.token_secret")
    pool = await ctx.db.pool()
    zone = _zone(params.time_zone or await pool.fetchval(ZONE_SQL) or "UTC")
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        roster = await lmsroster.read(
            conn, params.terms, params.upcoming_days, ctx.scheduled_for.date()
        )
    tally = Tally("Moodle attendance import")
    until = ctx.scheduled_for
    since = until - timedelta(days=params.past_days)
    found: list[tuple[str, int, datetime, str]] = []
    async with MoodleClient(params.base_url, token, token_name=f"the secret {params.token_secret!r}",
                            settings=ctx.settings) as client:  # fmt: skip
        reader = _Reader(client, params, zone, since, until, tally)
        for n, key in enumerate(sorted(roster.courses), 1):
            await ctx.progress(n, len(roster.courses) + 1, f"reading attendance of {key}")
            found += await reader.course(roster.courses[key])
        users = await client.users_by_field("id", sorted({str(u) for _, u, _, _ in found}))
    idnumber = {int(u["id"]): str(u.get("idnumber") or "") for u in users}
    rows = []
    for record, user, when, text in found:
        key = record.split(" session ", 1)[0]
        course = roster.courses[key]
        sis_id = idnumber.get(user, "")
        if not sis_id:
            tally.skip(record, "the Moodle user has no idnumber (SIS id)")
            continue
        rows.append(attendance.Row(record, sis_id, course.code, course.term_code, None,
                                   when.astimezone(zone).date(), text))  # fmt: skip
    async with pool.acquire() as conn:
        counts = await attendance.apply(
            conn, rows, tally, overwrite=params.overwrite, dry_run=params.dry_run
        )
    tally.fact(
        f"{len(roster.courses)} courses, {reader.sessions} sessions since "
        f"{since.astimezone(zone).date().isoformat()}, {len(rows)} marks read; {counts.line()}"
    )
    summary = (
        f"Moodle attendance import{' (dry run, nothing written)' if params.dry_run else ''}: "
        f"{counts.line()}, {tally.skipped} skipped"
    )
    await importing.finish(ctx, tally, summary, params.group, params.notify)


job_type = JobType(
    name="lms.moodle_attendance_import",
    pool="integration",
    title="Moodle Attendance Import",
    description=(
        "Imports the attendance taken in Moodle into the SIS through the web services of the "
        "Attendance activity plugin (mod_attendance, which the Moodle site must have): the "
        "sessions of the last days of each course of the current terms, one mark per student, "
        "section and day (a repeat changes nothing), with a dry run."
    ),
    params=MoodleAttendanceParams,
    run=run,
    timeout_s=3600,
)
