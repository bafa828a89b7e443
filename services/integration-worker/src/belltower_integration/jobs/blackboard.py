"""The seeds' Blackboard jobs over Learn's REST API.

``lms.blackboard_export`` (SONIS "Blackboard LMS Export", Focus "Transfer Blackboard API
Data"): sends the chosen terms' students, lead faculty, courses and course memberships, only
what is new, changed or gone since its last run (``sis.lms_sync_records``), behind the safety
hold. Records are addressed by external id (the SIS id; course-term for courses): a user or
course Learn already has is updated, never made twice; a membership gone from the SIS is
deleted; a user gone is made unavailable, never deleted. A record Learn refuses fails alone and
is sent again by the next run.

``lms.blackboard_load`` (Focus "Load Data From Blackboard API"): pages through Learn's users
and courses and links them to the SIS by external id: a person's Learn id goes to
``sis.person_external_ids`` (system ``blackboard``), a course's to ``sis.lms_course_links``.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from belltower.fences import PublicUrl
from belltower.jobtypes import JobContext, JobType

from .. import lmsroster, lmssync, safety
from ..blackboard import API, BlackboardClient, BlackboardError, external
from ..report import Tally
from ..secrets import SecretName, read_secret
from .canvas_export import course_sis_id

ROLES = {"student": "Student", "teacher": "Instructor"}
SYSTEM = "blackboard"


class _Connection(msgspec.Struct, forbid_unknown_fields=True):
    base_url: Annotated[
        PublicUrl,
        msgspec.Meta(description="Learn site address, e.g. https://school.blackboard.com"),
    ]
    key_secret: Annotated[
        SecretName, msgspec.Meta(description="Secret holding the REST application key")
    ] = "blackboard-key"
    client_secret: Annotated[
        SecretName, msgspec.Meta(description="Secret holding the REST application secret")
    ] = "blackboard-secret"


class BlackboardExportParams(_Connection, forbid_unknown_fields=True):
    terms: lmsroster.Terms = []
    upcoming_days: lmsroster.UpcomingDays = 30
    data_source: Annotated[
        str,
        msgspec.Meta(
            pattern=r"^[A-Za-z0-9_.:-]{0,64}$",
            description="Learn data source (externalId) for new records; empty: Learn's default",
        ),
    ] = ""
    disable_removed_users: Annotated[
        bool, msgspec.Meta(description="Make users no longer in the export unavailable")
    ] = True
    safety: safety.SafetyParams = msgspec.field(default_factory=safety.SafetyParams)


class BlackboardLoadParams(_Connection, forbid_unknown_fields=True):
    pass


def client(ctx: JobContext, params: _Connection) -> BlackboardClient:
    return BlackboardClient(
        params.base_url,
        read_secret(params.key_secret, "param.key_secret"),
        read_secret(params.client_secret, "param.client_secret"),
        secret_names=f"the secrets {params.key_secret!r} and {params.client_secret!r}",
        settings=ctx.settings,
    )


Wanted = lmssync.Wanted


def wanted(roster: lmsroster.Roster, params: BlackboardExportParams) -> Wanted:
    source = {"dataSourceId": f"externalId:{params.data_source}"} if params.data_source else {}
    users = {
        p["sis_id"]: {
            "externalId": p["sis_id"], "userName": p["login_id"], "studentId": p["sis_id"],
            "name": {"given": p["first_name"], "family": p["last_name"]},
            "contact": {"email": p["email"] or ""}, "availability": {"available": "Yes"}, **source,
        }
        for p in roster.people.values()
    }  # fmt: skip
    courses = {
        c.key: {"externalId": c.key, "courseId": c.key, "name": f"{c.title} ({c.term_code})",
                "availability": {"available": "Yes"}, **source}
        for c in roster.courses.values()
    }  # fmt: skip
    memberships = {
        e.key: {"courseRoleId": ROLES[e.role], "availability": {"available": "Yes"}, **source}
        for e in roster.enrolments.values()
    }
    return {"user": users, "course": courses, "enrolment": memberships}


def _membership_path(key: str) -> str:
    e = lmsroster.Enrolment.of_key(key)
    return external("courses", e.course) + "/users/" + external("users", e.user).rsplit("/", 1)[1]


class _Export:
    def __init__(
        self, ctx: JobContext, bb: BlackboardClient, conn: Any, wanted: Wanted, tally: Tally
    ) -> None:
        self.ctx, self.bb, self.conn, self.wanted, self.tally = ctx, bb, conn, wanted, tally

    async def upsert(self, kind: str, plural: str, c: safety.KindChange) -> None:
        """New ones are POSTed (409: Learn has it already, so PATCHed by external id); changed
        ones are PATCHed (404: Learn lost it, so POSTed)."""
        done = []
        for key in c.added + c.changed:
            body = self.wanted[kind][key]
            make = ("POST", f"{API}/{plural}")
            change = ("PATCH", external(plural, key))
            try:
                made = await self._either(
                    *(make, change) if key in c.added else (change, make), body
                )
            except BlackboardError as exc:
                self.tally.fail(f"{kind} {key}", f"{exc.status}: {exc.reason}")
                continue
            done.append((key, str((made or {}).get("id")), safety.digest(body)))
        await lmssync.save(self.conn, self.ctx.job_id, kind, done)
        self.tally.processed += len(done)

    async def _either(self, first: tuple[str, str], then: tuple[str, str], body: Any) -> Any:
        """``first``; when Learn answers that it has the record (409) or has none (404), ``then``."""
        try:
            return await self.bb.request(first[0], first[1], body)
        except BlackboardError as exc:
            if exc.status not in (404, 409):
                raise
            refusal = exc
        try:
            return await self.bb.request(then[0], then[1], body)
        except BlackboardError as exc:
            # a 409 whose record is not ours (another userName holder) says more than the 404
            raise (refusal if refusal.status == 409 and exc.status == 404 else exc) from None

    async def memberships(self, c: safety.KindChange) -> None:
        done = []
        for key in c.added + c.changed:
            body = self.wanted["enrolment"][key]
            path = _membership_path(key)
            steps = (("PUT", path), ("PATCH", path))
            try:
                await self._either(*(steps if key in c.added else steps[::-1]), body)
            except BlackboardError as exc:
                self.tally.fail(f"membership {key}", f"{exc.status}: {exc.reason}")
                continue
            done.append((key, None, safety.digest(body)))
        await lmssync.save(self.conn, self.ctx.job_id, "enrolment", done)
        gone = []
        for key in c.deleted:
            try:
                await self.bb.request("DELETE", _membership_path(key), missing_ok=True)
            except BlackboardError as exc:
                self.tally.fail(f"membership {key}", f"{exc.status}: {exc.reason}")
                continue
            gone.append(key)
        await lmssync.forget(self.conn, self.ctx.job_id, "enrolment", gone)
        self.tally.processed += len(done) + len(gone)

    async def removed_users(self, c: safety.KindChange, disable: bool) -> None:
        gone = []
        for key in c.deleted:
            try:
                if disable:
                    body = {"availability": {"available": "No"}}
                    await self.bb.request("PATCH", external("users", key), body, missing_ok=True)
            except BlackboardError as exc:
                self.tally.fail(f"user {key}", f"{exc.status}: {exc.reason}")
                continue
            gone.append(key)
        await lmssync.forget(self.conn, self.ctx.job_id, "user", gone)


async def export(ctx: JobContext, params: BlackboardExportParams) -> None:
    planned = await lmssync.prepare(
        ctx, "Blackboard LMS export", params, lambda r: wanted(r, params)
    )
    if planned is None:
        return
    tally = planned.tally
    pool = await ctx.db.pool()
    async with client(ctx, params) as bb, pool.acquire() as conn:
        sync = _Export(ctx, bb, conn, planned.wanted, tally)
        await ctx.progress(1, 4, "sending users to Blackboard")
        await sync.upsert("user", "users", planned.of("user"))
        await ctx.progress(2, 4, "sending courses to Blackboard")
        await sync.upsert("course", "courses", planned.of("course"))
        await ctx.progress(3, 4, "sending course memberships to Blackboard")
        await sync.memberships(planned.of("enrolment"))
        await sync.removed_users(planned.of("user"), params.disable_removed_users)
    summary = f"Blackboard LMS export to {params.base_url}: {tally.processed} sent, {tally.failed} refused"
    await ctx.progress(4, 4, summary)
    lmssync.finish(ctx, tally, summary, "Blackboard")


LINK_PEOPLE_SQL = """
INSERT INTO sis.person_external_ids (person_id, system, value)
SELECT p.id, $1, l.lms_id FROM unnest($2::text[], $3::text[]) AS l(sis_id, lms_id)
  JOIN sis.people p ON p.sis_id = l.sis_id
ON CONFLICT (person_id, system) DO UPDATE SET value = EXCLUDED.value
"""
COURSE_KEYS_SQL = """
SELECT c.id AS course_id, t.id AS term_id, c.code AS course_code, t.code AS term_code
  FROM sis.sections s JOIN sis.courses c ON c.id = s.course_id JOIN sis.terms t ON t.id = s.term_id
 GROUP BY c.id, t.id
"""
LINK_COURSES_SQL = """
INSERT INTO sis.lms_course_links (system, course_id, term_id, lms_id)
SELECT $1, l.course_id, l.term_id, l.lms_id FROM unnest($2::bigint[], $3::bigint[], $4::text[])
    AS l(course_id, term_id, lms_id)
ON CONFLICT (system, course_id, term_id) DO UPDATE SET lms_id = EXCLUDED.lms_id, linked_at = now()
"""


async def load(ctx: JobContext, params: BlackboardLoadParams) -> None:
    tally = Tally("Blackboard load")
    users: dict[str, str] = {}
    courses: dict[str, str] = {}
    async with client(ctx, params) as bb:
        async for u in bb.pages(f"{API}/users", {"fields": "id,externalId"}):
            if u.get("externalId"):
                users[str(u["externalId"])] = str(u["id"])
        await ctx.progress(1, 3, f"read {len(users)} Blackboard users")
        async for c in bb.pages(f"{API}/courses", {"fields": "id,externalId"}):
            if c.get("externalId"):
                courses[str(c["externalId"])] = str(c["id"])
    pool = await ctx.db.pool()
    async with pool.acquire() as conn, conn.transaction():
        known = {
            r["sis_id"]
            for r in await conn.fetch(
                "SELECT sis_id FROM sis.people WHERE sis_id = ANY($1::text[])", list(users)
            )
        }
        linked = sorted(known)
        await conn.execute(LINK_PEOPLE_SQL, SYSTEM, linked, [users[k] for k in linked])
        keys = {
            course_sis_id(r["course_code"], r["term_code"]): r
            for r in await conn.fetch(COURSE_KEYS_SQL)
        }
        matched = sorted(set(courses) & set(keys))
        await conn.execute(
            LINK_COURSES_SQL, SYSTEM, [keys[k]["course_id"] for k in matched],
            [keys[k]["term_id"] for k in matched], [courses[k] for k in matched],
        )  # fmt: skip
    for k in sorted(set(users) - known)[:20]:
        tally.skip(f"user {k}", "no person in the SIS has this SIS id")
    tally.skipped = len(set(users) - known) + len(set(courses) - set(keys))
    tally.processed = len(linked) + len(matched)
    summary = f"Blackboard load: linked {len(linked)} people and {len(matched)} courses"
    await ctx.progress(3, 3, summary)
    tally.fact(f"read {len(users)} users and {len(courses)} courses with an external id")
    tally.write(ctx, summary)


export_type = JobType(
    name="lms.blackboard_export",
    pool="integration",
    title="Blackboard LMS Export",
    description=(
        "Sends student, faculty and course data to Blackboard Learn through its REST API "
        "(users, courses and course memberships by external id), only what changed since the "
        "last run, with a safety hold on large deletions or changes. The seeds' Blackboard LMS "
        "Export and Transfer Blackboard API Data."
    ),
    params=BlackboardExportParams,
    run=export,
    timeout_s=3600,
)
load_type = JobType(
    name="lms.blackboard_load",
    pool="integration",
    title="Load Data From Blackboard API",
    description=(
        "Loads users and courses from Blackboard Learn's REST API and links them to the SIS's "
        "people and courses by external id, keeping each one's Blackboard id."
    ),
    params=BlackboardLoadParams,
    run=load,
    timeout_s=3600,
)
