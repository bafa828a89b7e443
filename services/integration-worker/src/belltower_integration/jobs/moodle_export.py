"""``lms.moodle_export``: the seeds' Moodle LMS Export, through Moodle's web services.

Sends the chosen terms' students and lead faculty as Moodle users (``idnumber`` = SIS id,
``username`` = login id), each course of a term as a Moodle course (``idnumber`` and
``shortname`` = course-term), and their enrolments as manual enrolments (student and teacher
roles by id). It compares with what it last sent (``sis.lms_sync_records``) and sends only what
is new, changed or gone; the safety hold judges that change first. A user or course Moodle
already has (same ``idnumber``, made by hand or by a run that crashed before it saved) is
updated, never made twice. A record Moodle refuses is named and retried by the next run; the
rest goes through.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Annotated, Any

import msgspec

from belltower.jobtypes import JobContext, JobType

from .. import lmsroster, lmssync, safety
from ..moodle import MoodleClient, MoodleError, SiteUrl, TokenSecret
from ..report import Tally
from ..secrets import read_secret

MAX_INPUT_VARS = 900
"""Form fields per call, under PHP's default ``max_input_vars`` (1000), past which PHP drops
the rest of a request without a word: a batch holds as many records as fit."""


class MoodleExportParams(msgspec.Struct, forbid_unknown_fields=True):
    base_url: SiteUrl
    token_secret: TokenSecret = "moodle-token"
    terms: lmsroster.Terms = []
    upcoming_days: lmsroster.UpcomingDays = 30
    category_id: Annotated[
        int, msgspec.Meta(ge=1, description="Moodle course category for new courses")
    ] = 1
    student_role_id: Annotated[
        int, msgspec.Meta(ge=1, description="Moodle role id (student: 5)")
    ] = 5
    teacher_role_id: Annotated[
        int, msgspec.Meta(ge=1, description="Moodle role id (editingteacher: 3)")
    ] = 3
    auth: Annotated[
        str,
        msgspec.Meta(
            pattern=r"^[a-z][a-z0-9_]{0,31}$",
            description="Authentication plugin of new users (manual, ldap, oauth2, saml2, ...)",
        ),
    ] = "manual"
    suspend_removed_users: Annotated[
        bool, msgspec.Meta(description="Suspend users no longer in the export (never deleted)")
    ] = True
    safety: safety.SafetyParams = msgspec.field(default_factory=safety.SafetyParams)


Wanted = lmssync.Wanted


def _epoch(day: date, end: bool = False) -> int:
    return int(datetime.combine(day, time(23, 59, 59) if end else time(), tzinfo=UTC).timestamp())


def shape(roster: lmsroster.Roster, params: MoodleExportParams) -> Wanted:
    """Users, courses and enrolments as Moodle takes them, keyed by SIS keys."""
    role = {"student": params.student_role_id, "teacher": params.teacher_role_id}
    courses = {
        c.key: {
            "fullname": f"{c.title} ({c.term_code})", "shortname": c.key, "idnumber": c.key,
            "categoryid": params.category_id, "startdate": _epoch(c.starts_on),
            "enddate": _epoch(c.ends_on, end=True),
        }
        for c in roster.courses.values()
    }  # fmt: skip
    enrolments = {
        f"{e.course}|{e.user}|{role[e.role]}": {
            "course": e.course,
            "user": e.user,
            "roleid": role[e.role],
        }
        for e in roster.enrolments.values()
    }
    users = {
        p["sis_id"]: {
            "username": p["login_id"].lower(), "firstname": p["first_name"],
            "lastname": p["last_name"], "email": p["email"] or "", "idnumber": p["sis_id"],
        }
        for p in roster.people.values()
    }  # fmt: skip
    return {"user": users, "course": courses, "enrolment": enrolments}


class _Sync:
    """One run's sending: users, then courses, then enrolments, saving each as Moodle takes it."""

    def __init__(self, ctx: JobContext, client: MoodleClient, conn: Any, params: MoodleExportParams,
                 stored: lmssync.Stored, wanted: Wanted, tally: Tally) -> None:  # fmt: skip
        self.ctx, self.client, self.conn, self.params = ctx, client, conn, params
        self.stored, self.wanted, self.tally = stored, wanted, tally
        self.ids: dict[str, dict[str, str | None]] = {
            kind: {k: lms_id for k, (lms_id, _) in rows.items()} for kind, rows in stored.items()
        }

    def _save_rows(self, kind: str, keys: list[str]) -> list[tuple[str, str | None, str]]:
        return [(k, self.ids[kind].get(k), safety.digest(self.wanted[kind][k])) for k in keys]

    async def users(self, change: safety.KindChange) -> None:
        self.ids.setdefault("user", {})
        todo = change.added + change.changed
        unknown = [k for k in todo if not self.ids["user"].get(k)]
        for batch in _batches(unknown, 1):
            for found in await self.client.users_by_field("idnumber", batch):
                self.ids["user"][str(found.get("idnumber"))] = str(found["id"])
        updates = [k for k in todo if self.ids["user"].get(k)]
        creates = [k for k in todo if not self.ids["user"].get(k)]
        done = await self._each("user", updates, self._update_users)
        done += await self._each("user", creates, self._create_users)
        await lmssync.save(self.conn, self.ctx.job_id, "user", self._save_rows("user", done))
        if self.params.suspend_removed_users and change.deleted:
            gone = [k for k in change.deleted if self.ids["user"].get(k)]
            suspended = [{"id": int(self.ids["user"][k] or 0), "suspended": 1} for k in gone]
            for batch in _batches(suspended, 2):
                await self.client.update_users(batch)
            self.tally.fact(f"suspended {len(gone)} user(s) no longer in the export")
        await lmssync.forget(self.conn, self.ctx.job_id, "user", change.deleted)

    async def _update_users(self, keys: list[str]) -> None:
        users = [{"id": int(self.ids["user"][k] or 0), **self.wanted["user"][k]} for k in keys]
        await self.client.update_users(users)

    async def _create_users(self, keys: list[str]) -> None:
        users = [{**self.wanted["user"][k], "auth": self.params.auth} for k in keys]
        if self.params.auth == "manual":
            users = [{**u, "createpassword": 1} for u in users]
        by_username = {self.wanted["user"][k]["username"]: k for k in keys}
        for made in await self.client.create_users(users):
            self.ids["user"][by_username[made["username"]]] = str(made["id"])

    async def courses(self, change: safety.KindChange) -> None:
        self.ids.setdefault("course", {})
        todo = change.added + change.changed
        for key in todo:  # Moodle looks courses up by one idnumber at a time
            if not self.ids["course"].get(key):
                found = await self.client.course_by_idnumber(key)
                self.ids["course"][key] = str(found["id"]) if found else None
        updates = [k for k in todo if self.ids["course"].get(k)]
        creates = [k for k in todo if not self.ids["course"].get(k)]
        done = await self._each("course", updates, self._update_courses)
        done += await self._each("course", creates, self._create_courses)
        await lmssync.save(self.conn, self.ctx.job_id, "course", self._save_rows("course", done))
        # Courses gone from the export stay in Moodle (with their work); only enrolments go.
        await lmssync.forget(self.conn, self.ctx.job_id, "course", change.deleted)

    async def _update_courses(self, keys: list[str]) -> None:
        courses = [
            {"id": int(self.ids["course"][k] or 0), **self.wanted["course"][k]} for k in keys
        ]
        await self.client.update_courses(courses)

    async def _create_courses(self, keys: list[str]) -> None:
        made = await self.client.create_courses([self.wanted["course"][k] for k in keys])
        for key, course in zip(keys, made, strict=True):
            self.ids["course"][key] = str(course["id"])

    def _enrolment(self, key: str, values: dict[str, Any]) -> dict[str, Any] | None:
        user, course = (
            self.ids["user"].get(values["user"]),
            self.ids["course"].get(values["course"]),
        )
        if not user or not course:
            return None
        return {"roleid": values["roleid"], "userid": int(user), "courseid": int(course)}

    async def enrolments(self, change: safety.KindChange) -> None:
        self.ids.setdefault("enrolment", {})
        ready: list[str] = []
        waiting: list[str] = []
        for key in change.added + change.changed:
            (ready if self._enrolment(key, self.wanted["enrolment"][key]) else waiting).append(key)
        for key in waiting:
            self.tally.skip(
                f"enrolment {key}", "its user or course is not in Moodle yet; retried next run"
            )
        done = await self._each("enrolment", ready, self._enrol)
        await lmssync.save(
            self.conn, self.ctx.job_id, "enrolment", self._save_rows("enrolment", done)
        )
        gone = []
        for key in change.deleted:
            course, user, role = key.split("|")
            ids = self._enrolment(key, {"user": user, "course": course, "roleid": int(role)})
            if ids is not None:
                gone.append(ids)
        for part in _batches(gone, 3):
            await self.client.unenrol(part)
        await lmssync.forget(self.conn, self.ctx.job_id, "enrolment", change.deleted)
        self.tally.processed += len(gone)

    async def _enrol(self, keys: list[str]) -> None:
        rows = [self._enrolment(k, self.wanted["enrolment"][k]) for k in keys]
        await self.client.enrol([r for r in rows if r is not None])

    async def _each(self, kind: str, keys: list[str], send: Any) -> list[str]:
        """Send in batches; a batch Moodle refuses is sent again one by one, so one bad record
        (a username taken by another account) fails alone. Returns the keys Moodle took."""
        done: list[str] = []
        fields = max((len(self.wanted[kind][k]) + 2 for k in keys), default=1)
        for batch in _batches(keys, fields):
            if len(batch) > 1 and await _sent(send, batch):
                done += batch
                continue
            for key in batch:
                try:
                    await send([key])
                except MoodleError as exc:
                    self.tally.fail(f"{kind} {key}", f"{exc.errorcode}: {exc.reason}")
                else:
                    done.append(key)
        self.tally.processed += len(done)
        return done


def _batches(items: list[Any], fields: int) -> list[list[Any]]:
    """``items`` in batches of records of ``fields`` form fields each, within MAX_INPUT_VARS."""
    size = max(1, MAX_INPUT_VARS // fields)
    return [items[i : i + size] for i in range(0, len(items), size)]


async def _sent(send: Any, batch: list[str]) -> bool:
    """Whether Moodle took the whole batch (it refuses a batch whole when one record is bad)."""
    try:
        await send(batch)
    except MoodleError:
        return False
    return True


async def run(ctx: JobContext, params: MoodleExportParams) -> None:
    token = read_secret(params.token_secret, "param.token_secret")
    planned = await lmssync.prepare(ctx, "Moodle LMS export", params, lambda r: shape(r, params))
    if planned is None:
        return
    tally = planned.tally
    pool = await ctx.db.pool()
    await ctx.progress(1, 4, "sending users to Moodle")
    async with MoodleClient(params.base_url, token, token_name=f"the secret {params.token_secret!r}",
                            settings=ctx.settings) as client, pool.acquire() as conn:  # fmt: skip
        sync = _Sync(ctx, client, conn, params, planned.stored, planned.wanted, tally)
        await sync.users(planned.of("user"))
        await ctx.progress(2, 4, "sending courses to Moodle")
        await sync.courses(planned.of("course"))
        await ctx.progress(3, 4, "sending enrolments to Moodle")
        await sync.enrolments(planned.of("enrolment"))
    summary = (
        f"Moodle LMS export to {params.base_url}: {tally.processed} sent, {tally.failed} refused"
    )
    await ctx.progress(4, 4, summary)
    lmssync.finish(ctx, tally, summary, "Moodle")


job_type = JobType(
    name="lms.moodle_export",
    pool="integration",
    title="Moodle LMS Export",
    description=(
        "Sends student, faculty and course records to the Moodle learning management system "
        "through its web services (REST): users, courses and manual enrolments, only what "
        "changed since the last run, with a safety hold on large deletions or changes."
    ),
    params=MoodleExportParams,
    run=run,
    timeout_s=3600,
)
