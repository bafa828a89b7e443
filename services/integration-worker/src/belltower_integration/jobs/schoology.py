"""The seeds' Schoology jobs over Schoology's REST API v1 (two-legged OAuth 1.0a).

``lms.schoology_export`` (SONIS "Schoology Exports"): sends the chosen terms' students and lead
faculty as users (``school_uid`` = SIS id), each SIS course as a Schoology course
(``course_code``), each section as a course section (``section_school_code`` =
``<course>-<term>-<section>``, in the term's grading period) and the enrolments (teachers as
section admins), only what is new, changed or gone since its last run
(``sis.lms_sync_records``), behind the safety hold; then mails the staff that the export was
sent, with what it changed.

``lms.schoology_sync_notifier`` (SONIS "Notifier: Schoology Sync Notifier"): syncs the user
data alone (users, made inactive when gone) and mails the notification group what changed:
each user created, updated, deactivated or refused.

Both write every record's outcome to the sync log (``sis.lms_sync_log``), which
``lms.sync_log_pruning`` (SONIS "Notifier: LMS Sync Log Pruning") prunes.

``lms.sync_course_period_changes`` (Focus "Sync Recent Course Period Changes"): the sections
that changed since its last run, and only those: an imported section whose teacher already
combined that period's sections into one gradebook joins it (``sis.combined_gradebook_sections``),
and the changed member sections' students and teacher are enrolled in (or removed from) the
combined gradebook's Schoology section, the primary section's.

Courses and sections gone from the SIS stay in Schoology with their work; their enrolments go.
A record Schoology refuses fails alone (named in the output and the log) and is sent again by
the next run.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any, Literal
from urllib.parse import quote

import msgspec

from belltower.errors import JobFailed
from belltower.fences import PublicUrl
from belltower.jobtypes import JobContext, JobType

from .. import lmsroster, lmssync, safety
from ..lmslog import SyncLog
from ..notify import recipients, send_results
from ..report import Tally
from ..schoology import SchoologyClient, SchoologyError, batches, refused
from ..secrets import SecretName, read_secret

SYSTEM = "schoology"
Meta = msgspec.Meta
Address = Annotated[
    str, Meta(pattern=r"^[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f]{1,189}$", max_length=254)
]
GroupCode = Annotated[
    str, Meta(pattern=r"^[A-Za-z0-9_.-]{0,64}$", description="notification group told; empty: none")
]
RoleId = Annotated[int, Meta(ge=1, le=2**31, description="Schoology role id (district-specific)")]


class _Connection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    base_url: Annotated[
        PublicUrl, Meta(description="Schoology API address (https://api.schoology.com/v1)")
    ] = "https://api.schoology.com/v1"
    key_secret: Annotated[SecretName, Meta(description="Secret holding the API consumer key")] = (
        "schoology-key"
    )
    consumer_secret: Annotated[
        SecretName, Meta(description="Secret holding the API consumer secret")
    ] = "schoology-secret"
    signature_method: Annotated[
        Literal["HMAC-SHA1", "PLAINTEXT"], Meta(description="OAuth 1.0 signature method")
    ] = "HMAC-SHA1"


class _Roster(_Connection, forbid_unknown_fields=True, kw_only=True):
    student_role_id: RoleId
    teacher_role_id: RoleId
    terms: lmsroster.Terms = []
    upcoming_days: lmsroster.UpcomingDays = 30
    group: GroupCode = ""
    notify: Annotated[list[Address], Meta(max_length=50, description="addresses mailed")] = []
    safety: safety.SafetyParams = msgspec.field(default_factory=safety.SafetyParams)


class SchoologyExportParams(_Roster, forbid_unknown_fields=True, kw_only=True):
    building_id: Annotated[
        str, Meta(pattern=r"^[0-9]{0,20}$", description="Schoology building of new courses")
    ] = ""
    grading_periods: Annotated[
        dict[
            Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]{1,32}$")],
            Annotated[int, Meta(ge=1, le=2**31)],
        ],
        Meta(
            max_length=100,
            description="term code -> Schoology grading period id; a term left out is matched "
            "to the grading period titled with its code or name",
        ),
    ] = {}
    deactivate_removed_users: Annotated[
        bool,
        Meta(description="Make users no longer in the export inactive (enrolment history kept)"),
    ] = True


class SyncNotifierParams(_Roster, forbid_unknown_fields=True, kw_only=True):
    deactivate_removed_users: Annotated[
        bool, Meta(description="Make users no longer in the sync inactive (history kept)")
    ] = True


class CoursePeriodParams(_Connection, forbid_unknown_fields=True, kw_only=True):
    student_role_id: RoleId
    teacher_role_id: RoleId
    terms: lmsroster.Terms = []
    upcoming_days: lmsroster.UpcomingDays = 30
    attach_imported: Annotated[
        bool,
        Meta(description="A changed section not in a gradebook joins its teacher's gradebook "
             "of that term and period, when there is one"),
    ] = True  # fmt: skip
    dry_run: Annotated[bool, Meta(description="Report what would change; change nothing")] = False
    safety: safety.SafetyParams = msgspec.field(default_factory=safety.SafetyParams)


def client(ctx: JobContext, params: _Connection) -> SchoologyClient:
    return SchoologyClient(
        params.base_url,
        read_secret(params.key_secret, "param.key_secret"),
        read_secret(params.consumer_secret, "param.consumer_secret"),
        signature_method=params.signature_method,
        secret_names=f"the secrets {params.key_secret!r} and {params.consumer_secret!r}",
        settings=ctx.settings,
    )


Wanted = lmssync.Wanted


def _user(p: Any, role_id: int) -> dict[str, Any]:
    return {
        "school_uid": p["sis_id"], "name_first": p["first_name"], "name_last": p["last_name"],
        "username": p["login_id"], "primary_email": p["email"] or "", "role_id": role_id,
        "synced": 1,
    }  # fmt: skip


def users_of(roster: lmsroster.Roster, params: _Roster | CoursePeriodParams) -> dict[str, Any]:
    teachers = {e.user for e in roster.enrolments.values() if e.role == "teacher"}
    return {
        sis_id: _user(p, params.teacher_role_id if sis_id in teachers else params.student_role_id)
        for sis_id, p in roster.people.items()
    }


def wanted(roster: lmsroster.Roster, params: SchoologyExportParams) -> Wanted:
    courses: dict[str, Any] = {}
    sections: dict[str, Any] = {}
    for s in roster.sections.values():
        course = {"course_code": s.course_code, "title": s.title, "synced": 1}
        if params.building_id:
            course["building_id"] = params.building_id
        courses.setdefault(s.course_code, course)
        sections[s.key] = {
            "title": f"{s.course_code} {s.section_code} ({s.term_code})",
            "section_school_code": s.key, "course_code": s.course_code, "term": s.term_code,
            "synced": 1,
        }  # fmt: skip
    enrolments = {
        e.key: {"section": e.course, "user": e.user, "admin": int(e.role == "teacher")}
        for e in roster.section_enrolments.values()
    }
    return {
        "user": users_of(roster, params),
        "course": courses,
        "section": sections,
        "enrolment": enrolments,
    }


class _Sync:
    """One run's sending, kind by kind, saving each record as Schoology takes it and logging
    every outcome."""

    def __init__(self, ctx: JobContext, sc: SchoologyClient, conn: Any, planned: lmssync.Planned,
                 log: SyncLog) -> None:  # fmt: skip
        self.ctx, self.sc, self.conn, self.log = ctx, sc, conn, log
        self.wanted, self.tally = planned.wanted, planned.tally
        self.ids: dict[str, dict[str, str | None]] = {
            kind: {k: lms_id for k, (lms_id, _) in rows.items()}
            for kind, rows in planned.stored.items()
        }
        for kind in ("user", "course", "section", "enrolment"):
            self.ids.setdefault(kind, {})

    def _took(self, kind: str, key: str, lms_id: str | None, created: bool,
              done: list[tuple[str, str | None, str]], note: str = "") -> None:  # fmt: skip
        self.ids[kind][key] = lms_id
        done.append((key, lms_id, safety.digest(self.wanted[kind][key])))
        self.log.add(kind, key, "created" if created else "updated", lms_id)
        self.tally.ok(f"{kind} {key}", note)

    def _refused(self, kind: str, key: str, reason: str) -> None:
        self.tally.fail(f"{kind} {key}", reason)
        self.log.add(kind, key, "refused", self.ids[kind].get(key), reason)

    async def _store(self, kind: str, done: list[tuple[str, str | None, str]],
                     gone: Sequence[str] = ()) -> None:  # fmt: skip
        async with self.conn.transaction():
            await lmssync.save(self.conn, self.ctx.job_id, kind, done)
            if gone:
                await lmssync.forget(self.conn, self.ctx.job_id, kind, gone)
            await self.log.write(self.conn, self.ctx)

    async def _bulk(self, kind: str, keys: Sequence[str], send: Any, added: set[str],
                    note: Any = None) -> None:  # fmt: skip
        """``send(batch)`` returns one result per key; each is taken or refused alone."""
        done: list[tuple[str, str | None, str]] = []
        for part in batches(list(keys)):
            try:
                results = await send(part)
            except SchoologyError as exc:
                for key in part:
                    self._refused(kind, key, f"{exc.status}: {exc.reason}")
                continue
            for key, result in zip(part, results, strict=True):
                why = refused(result)
                if why:
                    self._refused(kind, key, why)
                else:
                    text = note(key, key in added) if note else ""
                    self._took(kind, key, str(result.get("id") or "") or None, key in added,
                               done, text)  # fmt: skip
        await self._store(kind, done)

    # -- users -------------------------------------------------------------------------------

    async def users(self, c: safety.KindChange, deactivate: bool, describe: bool = False) -> None:
        def body(key: str) -> dict[str, Any]:
            return self.wanted["user"][key]

        async def send(part: list[str]) -> list[dict[str, Any]]:
            return await self.sc.bulk(
                "POST", "/users", ("users", "user"), [body(k) for k in part],
                {"update_existing": 1, "ignore_email_conflicts": 1},
            )  # fmt: skip

        def note(key: str, created: bool) -> str:
            if not describe:
                return ""
            u = body(key)
            return f"{'created' if created else 'updated'}: {u['name_last']}, {u['name_first']}"

        await self._bulk("user", c.added + c.changed, send, set(c.added), note)
        gone: list[str] = []
        if c.deleted and deactivate:
            known = [k for k in c.deleted if self.ids["user"].get(k)]
            for part in batches(known):
                uids = ",".join(str(self.ids["user"][k]) for k in part)
                try:
                    await self.sc.request(
                        "DELETE", "/users",
                        query={"uids": uids, "option_keep_enrollments": 1, "email_notification": 0,
                               "option_comment": "no longer in the SIS roster"},
                    )  # fmt: skip
                except SchoologyError as exc:
                    for key in part:
                        self._refused("user", key, f"{exc.status}: {exc.reason}")
                    continue
                for key in part:
                    self.log.add("user", key, "deactivated", self.ids["user"][key])
                    self.tally.ok(f"user {key}", "deactivated" if describe else "")
                gone += part
            gone += [k for k in c.deleted if not self.ids["user"].get(k)]
        elif c.deleted:
            gone = list(c.deleted)
        await self._store("user", [], gone)

    # -- courses and sections ----------------------------------------------------------------

    async def courses(self, c: safety.KindChange) -> None:
        async def send(part: list[str]) -> list[dict[str, Any]]:
            return await self.sc.bulk(
                "POST", "/courses", ("courses", "course"),
                [self.wanted["course"][k] for k in part], {"update_existing": 1},
            )  # fmt: skip

        await self._bulk("course", c.added + c.changed, send, set(c.added))
        await self._store("course", [], c.deleted)  # kept in Schoology, with their work

    async def sections(self, c: safety.KindChange, periods: dict[str, int]) -> None:
        todo = c.added + c.changed
        unknown = [k for k in todo if not self.ids["section"].get(k)]
        for found in await self.sc.by_codes(
            "/sections", "section_school_codes", "section", unknown
        ):
            code = str(found.get("section_school_code") or "")
            if code in self.wanted["section"]:
                self.ids["section"][code] = str(found["id"])
        ready, creates = [], defaultdict(list)
        for key in todo:
            values = self.wanted["section"][key]
            if values["term"] not in periods:
                self._refused("section", key, f"no Schoology grading period for term "
                              f"{values['term']}: set param.grading_periods")  # fmt: skip
                continue
            if self.ids["section"].get(key):
                ready.append(key)
                continue
            course = self.ids["course"].get(values["course_code"])
            if not course:
                self.tally.skip(
                    f"section {key}", "its course is not in Schoology yet; retried next run"
                )
                continue
            creates[course].append(key)

        def body(key: str) -> dict[str, Any]:
            v = self.wanted["section"][key]
            return {"title": v["title"], "section_school_code": key,
                    "grading_periods": [periods[v["term"]]], "synced": 1}  # fmt: skip

        async def update(part: list[str]) -> list[dict[str, Any]]:
            return await self.sc.bulk(
                "PUT", "/sections", ("sections", "section"),
                [{"id": self.ids["section"][k], **body(k)} for k in part],
            )  # fmt: skip

        await self._bulk("section", ready, update, set(c.added) - set(unknown))
        for course, keys in creates.items():

            async def create(part: list[str], course: str = course) -> list[dict[str, Any]]:
                return await self.sc.bulk(
                    "POST", f"/courses/{quote(course, safe='')}/sections", ("sections", "section"),
                    [body(k) for k in part],
                )  # fmt: skip

            await self._bulk("section", keys, create, set(keys))
        await self._store("section", [], c.deleted)

    # -- enrolments --------------------------------------------------------------------------

    async def enrolments(self, c: safety.KindChange) -> None:
        ready = []
        for key in c.added + c.changed:
            v = self.wanted["enrolment"][key]
            if self.ids["user"].get(v["user"]) and self.ids["section"].get(v["section"]):
                ready.append(key)
            else:
                self.tally.skip(
                    f"enrolment {key}",
                    "its user or section is not in Schoology yet; retried next run",
                )

        async def send(part: list[str]) -> list[dict[str, Any]]:
            records = []
            for k in part:
                v = self.wanted["enrolment"][k]
                records.append({
                    "realm": "section", "section_id": self.ids["section"][v["section"]],
                    "uid": self.ids["user"][v["user"]], "admin": v["admin"], "status": 1,
                })  # fmt: skip
            return await self.sc.bulk(
                "POST", "/enrollments", ("enrollments", "enrollment"), records,
                {"update_existing": 1}, answer=("enrollments", "enrollment"),
            )  # fmt: skip

        await self._bulk("enrolment", ready, send, set(c.added))
        await self.unenrol(c.deleted)

    async def unenrol(self, keys: Sequence[str]) -> None:
        gone = [k for k in keys if not self.ids["enrolment"].get(k)]
        known = [k for k in keys if self.ids["enrolment"].get(k)]
        for part in batches(known):
            ids = ",".join(str(self.ids["enrolment"][k]) for k in part)
            try:
                await self.sc.request("DELETE", "/enrollments", query={"enrollment_ids": ids})
            except SchoologyError as exc:
                for key in part:
                    self._refused("enrolment", key, f"{exc.status}: {exc.reason}")
                continue
            for key in part:
                self.log.add("enrolment", key, "deleted", self.ids["enrolment"][key])
                self.tally.ok()
            gone += part
        await self._store("enrolment", [], gone)


async def grading_periods(ctx: JobContext, sc: SchoologyClient, terms: set[str],
                          given: dict[str, int]) -> dict[str, int]:  # fmt: skip
    """Term code -> grading period id: the parameter's, else the one titled with the term's
    code or name (Schoology's grading period titles are unique in a school)."""
    found = {t: given[t] for t in terms if t in given}
    missing = terms - set(found)
    if missing:
        pool = await ctx.db.pool()
        names = {
            r["code"]: r["name"]
            for r in await pool.fetch(
                "SELECT code, name FROM sis.terms WHERE code = ANY($1::text[])", sorted(missing)
            )
        }
        by_title = {
            str(g.get("title")): int(g["id"])
            for g in await sc.pages("/gradingperiods", "gradingperiods")
        }
        for term in missing:
            gp = by_title.get(term) or by_title.get(names.get(term, ""))
            if gp:
                found[term] = gp
    return found


async def _finish(ctx: JobContext, params: _Roster, tally: Tally, summary: str,
                  subject: str) -> None:  # fmt: skip
    tally.write(ctx, summary)
    await send_results(
        ctx, await recipients(ctx, params.group or None, params.notify), subject, tally
    )
    if tally.failed:
        raise JobFailed(
            f"Schoology refused {tally.failed} record(s) (see the output and the sync log); the "
            "rest was sent, and the next run sends only what is still missing"
        )


async def export(ctx: JobContext, params: SchoologyExportParams) -> None:
    planned = await lmssync.prepare(ctx, "Schoology export", params, lambda r: wanted(r, params))
    if planned is None:
        return
    tally, log = planned.tally, SyncLog(SYSTEM)
    pool = await ctx.db.pool()
    async with client(ctx, params) as sc, pool.acquire() as conn:
        sync = _Sync(ctx, sc, conn, planned, log)
        await ctx.progress(1, 5, "sending users to Schoology")
        await sync.users(planned.of("user"), params.deactivate_removed_users)
        await ctx.progress(2, 5, "sending courses to Schoology")
        await sync.courses(planned.of("course"))
        await ctx.progress(3, 5, "sending course sections to Schoology")
        terms = {v["term"] for v in planned.wanted.get("section", {}).values()}
        todo = planned.of("section")
        periods = await grading_periods(ctx, sc, terms, params.grading_periods) if (
            todo.added or todo.changed) else {}  # fmt: skip
        await sync.sections(todo, periods)
        await ctx.progress(4, 5, "sending enrolments to Schoology")
        await sync.enrolments(planned.of("enrolment"))
    for (kind, action), n in sorted(log.counts().items()):
        tally.fact(f"sync log: {n} {kind}(s) {action}")
    summary = (
        f"Schoology export to {params.base_url}: {tally.processed} sent, {tally.failed} refused"
    )
    await ctx.progress(5, 5, summary)
    await _finish(ctx, params, tally, summary, f"Schoology export sent: {tally.processed} records")


def user_wanted(roster: lmsroster.Roster, params: SyncNotifierParams) -> Wanted:
    return {"user": users_of(roster, params)}


async def sync_notifier(ctx: JobContext, params: SyncNotifierParams) -> None:
    planned = await lmssync.prepare(
        ctx, "Schoology user sync", params, lambda r: user_wanted(r, params)
    )
    if planned is None:
        return
    tally, log = planned.tally, SyncLog(SYSTEM)
    pool = await ctx.db.pool()
    async with client(ctx, params) as sc, pool.acquire() as conn:
        sync = _Sync(ctx, sc, conn, planned, log)
        await sync.users(planned.of("user"), params.deactivate_removed_users, describe=True)
    counts = log.counts()
    made, changed, gone = (counts[("user", a)] for a in ("created", "updated", "deactivated"))
    summary = (
        f"Schoology user sync: {made} created, {changed} updated, {gone} deactivated, "
        f"{tally.failed} refused"
    )
    await _finish(ctx, params, tally, summary, summary)


# -- Sync Recent Course Period Changes ----------------------------------------------------------

SECTION_STATE_SQL = """
SELECT s.id, s.period, s.term_id, s.lead_faculty_id, m.gradebook_id, g.primary_section_id
  FROM sis.sections s
  LEFT JOIN sis.combined_gradebook_sections m ON m.section_id = s.id
  LEFT JOIN sis.combined_gradebooks g ON g.id = m.gradebook_id
 WHERE s.id = ANY($1::bigint[])
"""
GRADEBOOKS_SQL = """
SELECT g.id, g.term_id, g.faculty_id, g.period, g.primary_section_id
  FROM sis.combined_gradebooks g JOIN sis.sections s ON s.id = g.primary_section_id
 WHERE g.term_id = ANY($1::bigint[])
"""
ATTACH_SQL = """
INSERT INTO sis.combined_gradebook_sections (gradebook_id, section_id, added_by_run)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[]) ON CONFLICT DO NOTHING
"""


@dataclass
class _PeriodPlan:
    """What changed in the chosen terms' sections since the job's last run, and what follows."""

    roster: lmsroster.Roster
    stored: lmssync.Stored
    state: dict[int, Any]
    key_of: dict[int, str]
    attach: list[tuple[int, int]] = field(default_factory=list)  # (gradebook, section)
    gradebook: dict[str, str] = field(default_factory=dict)  # member key -> primary key
    digests: dict[str, str] = field(default_factory=dict)
    want: dict[str, dict[str, Any]] = field(default_factory=dict)


async def _plan_periods(ctx: JobContext, params: CoursePeriodParams) -> _PeriodPlan:
    pool = await ctx.db.pool()
    async with pool.acquire() as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            roster = await lmsroster.read(
                conn, params.terms, params.upcoming_days, ctx.scheduled_for.date()
            )
            ids = [s.id for s in roster.sections.values()]
            state = {r["id"]: r for r in await conn.fetch(SECTION_STATE_SQL, ids)}
            terms = sorted({r["term_id"] for r in state.values()})
            books = await conn.fetch(GRADEBOOKS_SQL, terms)
        stored = await lmssync.load(conn, ctx.job_id)
    plan = _PeriodPlan(roster, stored, state, {s.id: s.key for s in roster.sections.values()})
    book_of = {(b["term_id"], b["faculty_id"], b["period"]): b for b in books}
    members: dict[str, list[str]] = defaultdict(list)
    for enrolment in roster.section_enrolments.values():
        members[enrolment.course].append(enrolment.key)
    # A section's state: its fields, its roster and its gradebook; it changed since the last
    # run when its digest differs from the stored one.
    for s in roster.sections.values():
        st = state[s.id]
        book = st["primary_section_id"]
        if book is None and params.attach_imported and st["period"] and st["lead_faculty_id"]:
            found = book_of.get((st["term_id"], st["lead_faculty_id"], st["period"]))
            if found is not None and found["primary_section_id"] != s.id:
                plan.attach.append((found["id"], s.id))
                book = found["primary_section_id"]
        if book is not None and book != s.id and book in plan.key_of:
            plan.gradebook[s.key] = plan.key_of[book]
        plan.digests[s.key] = safety.digest(
            [s.title, s.term_code, st["period"], plan.gradebook.get(s.key), sorted(members[s.key])]
        )
    # What the gradebooks' LMS sections should hold from their member sections: the students
    # (the gradebook's teacher is the primary section's own).
    for key, primary in plan.gradebook.items():
        for k in members[key]:
            e = lmsroster.Enrolment.of_key(k)
            if e.role == "student":
                plan.want[k] = {"section": primary, "user": e.user, "admin": 0}
    return plan


async def course_periods(ctx: JobContext, params: CoursePeriodParams) -> None:
    tally = Tally("Sync recent course period changes")
    plan = await _plan_periods(ctx, params)
    sections = lmssync.change(plan.stored, {"section": plan.digests})["section"]
    changed = set(sections.added + sections.changed + sections.deleted)
    tally.fact(
        f"sections: {len(sections.added)} new, {len(sections.changed)} changed, "
        f"{len(sections.deleted)} gone since the last run"
    )
    # Only the changed sections' enrolments are compared and sent.
    want = {k: v for k, v in plan.want.items() if k.split("|", 1)[0] in changed}
    held = {k: d for k, (_, d) in plan.stored.get("enrolment", {}).items()
            if k.split("|", 1)[0] in changed}  # fmt: skip
    enrolments = safety.diff(held, {k: safety.digest(v) for k, v in want.items()})
    enrolments.existing = len(plan.stored.get("enrolment", {}))
    tally.fact(
        f"combined gradebook enrolments: {len(enrolments.added)} new, "
        f"{len(enrolments.changed)} changed, {len(enrolments.deleted)} gone"
    )
    for _, section_id in plan.attach:
        key = plan.key_of[section_id]
        tally.ok(f"section {key}", f"{'would join' if params.dry_run else 'joins'} the gradebook "
                 f"of {plan.gradebook[key]} (period {plan.state[section_id]['period']})")  # fmt: skip
    if not changed:
        tally.write(ctx, "Sync recent course period changes: no section changed since the last run")
        return
    if params.dry_run:
        tally.write(ctx, f"dry run: {len(changed)} changed section(s), {len(plan.attach)} would "
                    f"join a gradebook, {len(enrolments.added) + len(enrolments.deleted)} "
                    "enrolment(s) would be sent; nothing changed")  # fmt: skip
        return
    released = await safety.guard(
        ctx, params.safety, {"section": sections, "enrolment": enrolments}
    )
    if released:
        tally.fact(released)
    await _send_periods(ctx, params, plan, tally, sections, enrolments, want)
    summary = (
        f"Sync recent course period changes: {len(changed)} changed section(s), "
        f"{len(plan.attach)} joined a gradebook, {len(enrolments.added)} enrolled, "
        f"{len(enrolments.deleted)} removed, {tally.failed} refused"
    )
    tally.write(ctx, summary)
    if tally.failed:
        raise JobFailed(
            f"Schoology refused {tally.failed} record(s) (see the output); their sections are "
            "sent again by the next run"
        )


async def _send_periods(ctx: JobContext, params: CoursePeriodParams, plan: _PeriodPlan,
                        tally: Tally, sections: safety.KindChange, enrolments: safety.KindChange,
                        want: dict[str, dict[str, Any]]) -> None:  # fmt: skip
    pool = await ctx.db.pool()
    if plan.attach:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(ATTACH_SQL, [b for b, _ in plan.attach],
                               [s for _, s in plan.attach], [ctx.run_id] * len(plan.attach))  # fmt: skip
    users = {v["user"] for v in want.values()}
    wanted_now: Wanted = {
        "user": {k: v for k, v in users_of(plan.roster, params).items() if k in users},
        "enrolment": want,
    }
    log = SyncLog(SYSTEM)
    for book_id, section_id in plan.attach:
        log.add("section", plan.key_of[section_id], "linked", str(book_id))
    async with client(ctx, params) as sc, pool.acquire() as conn:
        sync = _Sync(ctx, sc, conn, lmssync.Planned(plan.stored, wanted_now, {}, tally), log)
        known = {k: d for k, (_, d) in plan.stored.get("user", {}).items() if k in users}
        await sync.users(
            safety.diff(known, {k: safety.digest(v) for k, v in wanted_now["user"].items()}),
            deactivate=False,
        )
        primaries = sorted({v["section"] for v in want.values()})
        for found in await sc.by_codes("/sections", "section_school_codes", "section", primaries):
            sync.ids["section"][str(found.get("section_school_code"))] = str(found["id"])
        await sync.enrolments(enrolments)
        # A section is done once all its enrolments went through; the rest is retried next run.
        waiting = {record.split(" ", 1)[1].split("|", 1)[0] for outcome, record, _ in tally.notes
                   if outcome in ("failed", "skipped") and record.startswith("enrolment ")}  # fmt: skip
        done = [(k, None, plan.digests[k]) for k in sections.added + sections.changed
                if k not in waiting]  # fmt: skip
        async with conn.transaction():
            await lmssync.save(conn, ctx.job_id, "section", done)
            await lmssync.forget(conn, ctx.job_id, "section", sections.deleted)
            await log.write(conn, ctx)


# -- LMS Sync Log Pruning ---------------------------------------------------------------------


class PruneParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    keep_days: Annotated[
        int, Meta(ge=1, le=3650, description="Keep sync log rows younger than this many days")
    ] = 90
    batch_size: Annotated[
        int, Meta(ge=100, le=50_000, description="Rows deleted per statement")
    ] = 5_000
    max_rows: Annotated[
        int, Meta(ge=1, le=10_000_000, description="At most this many rows pruned per run")
    ] = 1_000_000
    dry_run: Annotated[bool, Meta(description="Count what would be pruned; delete nothing")] = False
    group: GroupCode = ""
    notify: Annotated[list[Address], Meta(max_length=50, description="addresses mailed")] = []


PRUNE_SQL = """
WITH gone AS (DELETE FROM sis.lms_sync_log WHERE id IN (
    SELECT id FROM sis.lms_sync_log WHERE logged_at < $1 ORDER BY id LIMIT $2)
  RETURNING 1)
SELECT count(*) FROM gone
"""


async def prune(ctx: JobContext, params: PruneParams) -> None:
    cutoff = ctx.scheduled_for - timedelta(days=params.keep_days)
    tally = Tally("LMS sync log pruning")
    pool = await ctx.db.pool()
    before = await pool.fetchrow(
        "SELECT occurrence_id, deleted FROM sis.lms_sync_log_prunes WHERE occurrence_id = $1",
        ctx.occurrence_id,
    )
    if before is not None:
        tally.write(ctx, f"this occurrence pruned {before['deleted']} sync log rows already; "
                    "nothing to do")  # fmt: skip
        return
    older = await pool.fetchval(
        "SELECT count(*) FROM sis.lms_sync_log WHERE logged_at < $1", cutoff
    )
    if params.dry_run:
        tally.write(ctx, f"dry run: {min(older, params.max_rows)} sync log rows older than "
                    f"{cutoff:%Y-%m-%d %H:%M} UTC would be pruned")  # fmt: skip
        return
    deleted = 0
    while deleted < params.max_rows:
        async with pool.acquire() as conn, conn.transaction():
            n = await conn.fetchval(
                PRUNE_SQL, cutoff, min(params.batch_size, params.max_rows - deleted)
            )
        deleted += n
        if n == 0:
            break
        await ctx.progress(deleted, older, f"pruned {deleted} of {older} sync log rows")
        await asyncio.sleep(0)
    await pool.execute(
        "INSERT INTO sis.lms_sync_log_prunes (occurrence_id, job_id, cutoff, deleted) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        ctx.occurrence_id, ctx.job_id, cutoff, deleted,
    )  # fmt: skip
    left = await pool.fetchval("SELECT count(*) FROM sis.lms_sync_log")
    tally.processed = deleted
    tally.fact(f"kept {left} sync log rows from {cutoff:%Y-%m-%d %H:%M} UTC on")
    if older > deleted:
        tally.fact(f"{older - deleted} older rows are left for the next run (param.max_rows)")
    summary = f"LMS sync log pruning: {deleted} rows older than {params.keep_days} days removed"
    tally.write(ctx, summary)
    await send_results(
        ctx, await recipients(ctx, params.group or None, params.notify), summary, tally
    )


export_type = JobType(
    name="lms.schoology_export",
    pool="integration",
    title="Schoology Exports",
    description=(
        "Sends students, faculty, courses, course sections and enrolments to Schoology through "
        "its REST API (two-legged OAuth), only what changed since the last run, with a safety "
        "hold on large deletions or changes, and notifies staff that the export was sent. Every "
        "record's outcome goes to the LMS sync log."
    ),
    params=SchoologyExportParams,
    run=export,
    timeout_s=3600,
)
sync_notifier_type = JobType(
    name="lms.schoology_sync_notifier",
    pool="integration",
    title="Schoology Sync Notifier",
    description=(
        "Syncs user data with Schoology through its API (users by SIS id, made inactive when "
        "gone), with a safety hold, and mails the notification group each user created, "
        "updated, deactivated or refused; the outcome goes to the LMS sync log."
    ),
    params=SyncNotifierParams,
    run=sync_notifier,
    timeout_s=3600,
)
course_periods_type = JobType(
    name="lms.sync_course_period_changes",
    pool="integration",
    title="Sync Recent Course Period Changes",
    description=(
        "Syncs imported sections with the existing gradebooks already combined by period: only "
        "the sections changed since the last run; a new section joins its teacher's combined "
        "gradebook of that period, and its students are enrolled in the gradebook's Schoology "
        "section."
    ),
    params=CoursePeriodParams,
    run=course_periods,
    timeout_s=3600,
)
prune_type = JobType(
    name="lms.sync_log_pruning",
    pool="integration",
    title="LMS Sync Log Pruning",
    description=(
        "Prunes the LMS sync log (what the Schoology syncs did to each record) of rows older "
        "than the retention, in bounded batches, and informs the group that it was pruned."
    ),
    params=PruneParams,
    run=prune,
)
