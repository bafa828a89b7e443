"""The one mechanism every notifier is built on.

A notifier declares what it selects (an async query over the SIS returning rows), the columns a
message shows, who is told (the notification group in its parameters, and optionally the student
each row is about or the section's lead faculty member), the message templates (Jinja2, rendered
to text and HTML) and its repeat policy:

- ``every_run``: whatever matches now is told, every run;
- ``since_last_run``: only what was added since the job last ran successfully (a watermark per
  job in ``notifier.watermarks``, moved only when the run succeeds; the window starts a few
  minutes before the watermark, and the sent-items ledger keeps that overlap from repeating);
- ``once_per_item``: each (recipient, item) is told once ever (the ``notifier.sent_items`` ledger).

Every recipient gets one message per run listing all of their rows, by e-mail and/or as an in-app
reminder (``sis.reminders``). Each delivery is recorded under the run's occurrence id, so a
redelivered occurrence tells nobody twice. The run's output counts rows processed, recipients
notified, what was skipped and what failed, as text and HTML.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Generic, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
import jinja2
import msgspec
from jinja2.sandbox import ImmutableSandboxedEnvironment

from belltower import sis, templates
from belltower.db import migrate
from belltower.errors import InvalidInput, JobFailed
from belltower.jobtypes import JobContext, JobType, counted
from belltower.mail import MailSession

from . import rate

Repeat = Literal["every_run", "since_last_run", "once_per_item"]
Channel = Literal["email", "reminder", "both"]
Role = Literal["group", "student", "faculty", "guardian"]

STATE_SCHEMA = "notifier"
SINCE_LAST_RUN_OVERLAP = timedelta(minutes=5)
"""How far before its watermark a since-last-run notifier looks again (see ``_open_window``)."""
SENT_ITEMS_KEPT_SINCE_LAST_RUN = timedelta(days=1)
"""A since-last-run job needs its sent-items ledger only for the overlap; older entries go."""
_LEDGERED = ("once_per_item", "since_last_run")
MAX_ROWS_IN_OUTPUT = 200
PROGRESS_EVERY = 100
"""Report progress after this many messages, so a long mailing shows how far it got."""
SEND_CONCURRENCY = 8
"""SMTP connections a run sends through at once, each carrying many messages."""

MAX_SEND_RATE = 1_000.0
"""E-mails per second a notifier's ``send_rate`` may ask for (see ``rate.py``)."""

Codes = Annotated[list[str], msgspec.Meta(description="codes to limit to; empty: no limit")]


Group = Annotated[
    str,
    msgspec.Meta(description="code of the notification group told about every row; empty: none"),
]


class NotifierParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Parameters every notifier takes; each notifier's own Struct adds to them."""

    group: Group = ""
    divisions: Codes = []
    campuses: Codes = []
    departments: Codes = []
    levels: Codes = []
    subject: Annotated[
        templates.TemplateText,
        msgspec.Meta(
            description="subject of the group's message (Jinja2); empty: the notifier's own"
        ),
    ] = ""
    message: Annotated[
        templates.TemplateText,
        msgspec.Meta(description="a paragraph added to every message (Jinja2)"),
    ] = ""
    time_zone: Annotated[
        str, msgspec.Meta(description="the school's time zone: what 'today' means")
    ] = "UTC"
    as_of: Annotated[
        date | None,
        msgspec.Meta(
            description="the day the run counts as today; default: the day it is scheduled for"
        ),
    ] = None
    notify_guardians: Annotated[
        bool,
        msgspec.Meta(
            description="also e-mail each student's guardians about the student's rows "
            "(only those the school may contact about that student)"
        ),
    ] = False
    guardian_relationships: sis.GuardianRelationships = ("parent", "guardian")
    guardian_primary_only: Annotated[
        bool, msgspec.Meta(description="only each student's primary contact (priority 1)")
    ] = False
    send_rate: (
        Annotated[
            float,
            msgspec.Meta(
                gt=0,
                le=MAX_SEND_RATE,
                description="at most this many e-mails per second through the mail relay "
                "(shared by the runs in one worker process); empty: as fast as it takes them",
            ),
        ]
        | None
    ) = None


P = TypeVar("P", bound=NotifierParams)


@dataclass(frozen=True, slots=True)
class Row:
    """One thing a notifier found: about ``person_id``; ``item`` identifies it for that person."""

    person_id: int
    item: str
    values: dict[str, Any]
    faculty_id: int | None = None
    tell_person: bool = True
    """False for rows the group is told about but the person is not (e.g. a skipped student)."""

    @property
    def key(self) -> str:
        return f"{self.person_id}:{self.item}"


@dataclass(frozen=True, slots=True)
class Query(Generic[P]):
    """What a notifier's select function gets: a connection, its parameters and its window."""

    conn: asyncpg.Connection
    params: P
    today: date
    since: datetime | None
    until: datetime
    job_id: str
    occurrence_id: str

    def demographics(self, statuses: Sequence[sis.PersonStatus] = ("student",)) -> sis.Demographics:
        """The parameters' limits; module statuses from the parameters when it has them."""
        p = self.params
        return sis.Demographics(
            statuses=list(getattr(p, "statuses", None) or statuses),
            divisions=p.divisions,
            campuses=p.campuses,
            departments=p.departments,
            levels=p.levels,
        )

    def where(
        self,
        args: list[Any],
        person: str = "p",
        statuses: Sequence[sis.PersonStatus] = ("student",),
    ) -> str:
        """SQL conditions limiting the people row ``person`` by the parameters."""
        return self.demographics(statuses).where(person, args)


Select = Callable[[Query[Any]], Awaitable[list[Row]]]


@dataclass(frozen=True)
class Notifier(Generic[P]):
    """A notifier declared once: selection, columns, templates, repeat policy."""

    name: str
    title: str
    description: str
    params: type[P]
    select: Select
    columns: tuple[tuple[str, str], ...]
    subject: str
    intro: str
    student_subject: str = ""
    student_intro: str = ""
    faculty_subject: str = ""
    faculty_intro: str = ""
    guardian_subject: str = ""
    guardian_intro: str = ""
    """A guardian's message: by default the group's subject and opening, listing only the rows
    about the guardian's own students."""
    repeat: Repeat = "every_run"
    timeout_s: float | None = None
    student_table: bool = True
    """Whether the student's message lists their rows (a greeting or timed e-mail does not)."""
    prepare: Callable[[asyncpg.Connection, P, date], Awaitable[None]] | None = None
    """Work done before the selection window opens, e.g. assigning indicators the SIS derives."""

    def job_type(self) -> JobType[P]:
        return JobType(
            self.name,
            "notifier",
            self.title,
            self.description,
            self.params,
            self.run,
            self.timeout_s,
        )

    async def run(self, ctx: JobContext, params: P) -> None:
        await _run(self, ctx, params)


# Rendering ----------------------------------------------------------------------------------


def render(source: str, field_name: str, **context: Any) -> str:
    """Render a template in the sandbox; a broken, forbidden or runaway one is refused naming
    the parameter it came from (see ``belltower.templates``)."""
    return templates.render(source, field_name, context).strip()


def show(value: Any) -> str:
    """A value as a message shows it."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return f"{value:,.2f}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def text_table(columns: Sequence[tuple[str, str]], rows: Sequence[Row]) -> str:
    cells = [[show(r.values.get(key)) for key, _ in columns] for r in rows]
    widths = [
        max([len(header)] + [len(line[i]) for line in cells])
        for i, (_, header) in enumerate(columns)
    ]
    lines = ["  ".join(h.ljust(w) for (_, h), w in zip(columns, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells
    ]
    return "\n".join(lines)


# Built in, not an editor's, but rendered in the same sandbox: the cells are SIS data.
_HTML_TABLE = ImmutableSandboxedEnvironment(autoescape=True).from_string(
    '<table border="1" cellpadding="4" cellspacing="0">'
    "<thead><tr>{% for h in headers %}<th>{{ h }}</th>{% endfor %}</tr></thead><tbody>"
    "{% for row in cells %}<tr>{% for c in row %}<td>{{ c }}</td>{% endfor %}</tr>{% endfor %}"
    "</tbody></table>"
)


def html_table(columns: Sequence[tuple[str, str]], rows: Sequence[Row]) -> str:
    return _HTML_TABLE.render(
        headers=[h for _, h in columns],
        cells=[[show(r.values.get(key)) for key, _ in columns] for r in rows],
    )


# Planning and delivery ----------------------------------------------------------------------


@dataclass
class Part:
    """What one message says to its reader in one role (group member, student, lead faculty)."""

    role: Role
    rows: list[Row]


_ROLE_ORDER: dict[Role, int] = {"group": 0, "faculty": 1, "student": 2, "guardian": 3}


@dataclass
class Message:
    """One person's message for this run: every row of theirs in every role they have, on their
    channels. A group member who also leads a reported section gets one message with both parts."""

    contact: sis.Contact
    channels: set[Literal["email", "reminder"]]
    parts: list[Part] = field(default_factory=list)
    kind: Literal["person", "guardian"] = "person"
    """A guardian is not a person of the school: ``contact.person_id`` is their guardian id."""

    @property
    def recipient(self) -> str:
        return f"{self.kind}:{self.contact.person_id}"

    @property
    def rows(self) -> list[Row]:
        """Every row the message carries, once each."""
        seen: dict[str, Row] = {}
        for part in self.parts:
            for row in part.rows:
                seen.setdefault(row.key, row)
        return list(seen.values())


@dataclass
class Tally:
    processed: int = 0
    notified: int = 0
    emails: int = 0
    reminders: int = 0
    rows_skipped: int = 0
    recipients_skipped: list[str] = field(default_factory=list)
    already_delivered: int = 0
    failed: list[str] = field(default_factory=list)


def _channels(choice: str) -> set[Literal["email", "reminder"]]:
    if choice == "both":
        return {"email", "reminder"}
    if choice == "email":
        return {"email"}
    return {"reminder"}


def today_for(ctx: JobContext, params: NotifierParams) -> date:
    if params.as_of is not None:
        return params.as_of
    try:
        zone = ZoneInfo(params.time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            "param.time_zone",
            f"unknown time zone {params.time_zone!r}",
            "an IANA name such as America/Chicago",
        ) from None
    return ctx.scheduled_for.astimezone(zone).date()


async def _open_window(
    conn: asyncpg.Connection, ctx: JobContext, params: NotifierParams
) -> tuple[datetime, datetime]:
    """The (since, until) of a since-last-run notifier; a redelivered occurrence gets the same one."""
    row = await conn.fetchrow(
        """INSERT INTO notifier.watermarks AS w (job_id, job_type, pending_occurrence, pending_until)
           VALUES ($1, $2, $3, clock_timestamp())
           ON CONFLICT (job_id) DO UPDATE
              SET pending_occurrence = EXCLUDED.pending_occurrence,
                  pending_until = EXCLUDED.pending_until, updated_at = now()
            WHERE w.pending_occurrence IS DISTINCT FROM EXCLUDED.pending_occurrence
           RETURNING mark, pending_until""",
        ctx.job_id,
        ctx.job_type,
        ctx.occurrence_id,
    )
    if row is None:  # this occurrence opened the window before: reuse it
        row = await conn.fetchrow(
            "SELECT mark, pending_until FROM notifier.watermarks WHERE job_id = $1", ctx.job_id
        )
    until: datetime = row["pending_until"]
    if row["mark"] is not None:
        # Look a little before the mark: a row stamped just before the last window closed but
        # committed after that run selected would otherwise never be seen. The sent-items
        # ledger keeps the overlap from telling anyone twice.
        return row["mark"] - SINCE_LAST_RUN_OVERLAP, until
    days = getattr(params, "first_run_look_back_days", 1)
    return until - timedelta(days=days), until


async def _close_window(pool: asyncpg.Pool, ctx: JobContext) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """UPDATE notifier.watermarks SET mark = pending_until, pending_occurrence = NULL, updated_at = now()
                WHERE job_id = $1 AND pending_occurrence = $2""",
            ctx.job_id,
            ctx.occurrence_id,
        )
        await conn.execute(
            "DELETE FROM notifier.sent_items WHERE job_id = $1 AND sent_at < now() - $2::interval",
            ctx.job_id,
            SENT_ITEMS_KEPT_SINCE_LAST_RUN,
        )


async def _plan(
    spec: Notifier[Any],
    conn: asyncpg.Connection,
    ctx: JobContext,
    params: NotifierParams,
    rows: list[Row],
    tally: Tally,
) -> list[Message]:
    """Who gets which rows: the group all, each student theirs, each lead faculty member theirs;
    less what the ledger says was told before, and what this occurrence already delivered."""
    messages = await _recipients(conn, params, rows)
    if spec.repeat in _LEDGERED and messages:
        await _drop_told(conn, ctx, messages, rows, tally)
    return await _undelivered(conn, ctx, messages, tally)


async def _recipients(
    conn: asyncpg.Connection, params: NotifierParams, rows: list[Row]
) -> dict[str, Message]:
    messages: dict[str, Message] = {}

    def add(contact: sis.Contact, role: Role, channels: set[Any], mine: list[Row]) -> None:
        if not mine:
            return
        kind: Literal["person", "guardian"] = "guardian" if role == "guardian" else "person"
        message = messages.setdefault(
            f"{kind}:{contact.person_id}", Message(contact, set(), kind=kind)
        )
        message.channels |= channels
        message.parts.append(Part(role, mine))
        message.parts.sort(key=lambda part: _ROLE_ORDER[part.role])

    if params.group:
        for member in await sis.group_members(conn, params.group):
            channels = {"email"} if member.by_email else set()
            channels |= {"reminder"} if member.by_reminder else set()
            add(member.contact, "group", channels, list(rows))
    by_student: dict[int, list[Row]] = defaultdict(list)
    by_faculty: dict[int, list[Row]] = defaultdict(list)
    for row in rows:
        if row.tell_person and getattr(params, "notify_students", False):
            by_student[row.person_id].append(row)
        if row.faculty_id is not None and getattr(params, "notify_faculty", False):
            by_faculty[row.faculty_id].append(row)
    people = await sis.contacts(conn, [*by_student, *by_faculty])
    student_channels = _channels(getattr(params, "student_channel", "email"))
    faculty_channels = _channels(getattr(params, "faculty_channel", "email"))
    for person, mine in by_student.items():
        if person in people:
            add(people[person], "student", student_channels, mine)
    for person, mine in by_faculty.items():
        if person in people:
            add(people[person], "faculty", faculty_channels, mine)
    for contact, mine in await _guardian_rows(conn, params, rows):
        add(contact, "guardian", {"email"}, mine)
    return messages


async def _guardian_rows(
    conn: asyncpg.Connection, params: NotifierParams, rows: list[Row]
) -> list[tuple[sis.Contact, list[Row]]]:
    """Each guardian to tell (``notify_guardians``) with the rows about all of their students:
    a parent of two reported siblings gets one message. Guardians are reached by e-mail only
    (in-app reminders are for the school's people)."""
    if not params.notify_guardians:
        return []
    by_student: dict[int, list[Row]] = defaultdict(list)
    for row in rows:
        if row.tell_person:
            by_student[row.person_id].append(row)
    found = await sis.guardians_of(
        conn, by_student, params.guardian_relationships, primary_only=params.guardian_primary_only
    )
    contacts: dict[int, sis.Contact] = {}
    theirs: dict[int, list[Row]] = defaultdict(list)
    for student, guardians in found.items():
        for g in guardians:
            contacts[g.guardian_id] = sis.Contact(
                g.guardian_id, g.sis_id, g.first_name, g.last_name, g.email, g.phone, g.sms_ok
            )
            theirs[g.guardian_id] += by_student[student]
    return [(contacts[gid], theirs[gid]) for gid in sorted(contacts)]


async def _drop_told(
    conn: asyncpg.Connection,
    ctx: JobContext,
    messages: dict[str, Message],
    rows: list[Row],
    tally: Tally,
) -> None:
    """Remove the rows each recipient was told about before (the sent-items ledger)."""
    told = await conn.fetch(
        """SELECT recipient, item_key FROM notifier.sent_items
            WHERE job_id = $1 AND recipient = ANY($2::text[])""",
        ctx.job_id,
        sorted({m.recipient for m in messages.values()}),
    )
    seen = {(r["recipient"], r["item_key"]) for r in told}
    kept_keys: set[str] = set()
    for m in messages.values():
        for part in m.parts:
            part.rows = [r for r in part.rows if (m.recipient, r.key) not in seen]
            kept_keys.update(r.key for r in part.rows)
        m.parts = [part for part in m.parts if part.rows]
    tally.rows_skipped = sum(1 for r in rows if r.key not in kept_keys)


async def _undelivered(
    conn: asyncpg.Connection, ctx: JobContext, messages: dict[str, Message], tally: Tally
) -> list[Message]:
    """The messages still to send on some channel: not delivered by this occurrence before
    (a redelivery), and with an address for e-mail."""
    delivered = await conn.fetch(
        "SELECT recipient, channel FROM notifier.deliveries WHERE occurrence_id = $1",
        ctx.occurrence_id,
    )
    done = {(r["recipient"], r["channel"]) for r in delivered}
    planned = []
    for m in messages.values():
        if not m.parts:
            continue
        before = len(m.channels)
        m.channels = {c for c in m.channels if (m.recipient, c) not in done}
        tally.already_delivered += before - len(m.channels)
        if "email" in m.channels and not m.contact.email:
            m.channels.discard("email")
            tally.recipients_skipped.append(
                f"{m.contact.name} ({m.contact.sis_id}): no e-mail address"
            )
        if m.channels:
            planned.append(m)
    return planned


def _context(
    spec: Notifier[Any], ctx: JobContext, params: NotifierParams, today: date, contact: sis.Contact,
    part: Part, since: datetime | None, until: datetime,
) -> dict[str, Any]:  # fmt: skip
    c = contact
    return {
        "params": params, "today": today, "since": since, "until": until,
        "count": len(part.rows), "rows": [r.values for r in part.rows],
        "role": part.role, "first_name": c.first_name, "last_name": c.last_name,
        "name": c.name, "sis_id": c.sis_id, "job_title": ctx.job_title, "title": spec.title,
        "days_before": lambda n: today - timedelta(days=n),
    }  # fmt: skip


def _compose(
    spec: Notifier[Any], ctx: JobContext, params: NotifierParams, today: date, message: Message,
    since: datetime | None, until: datetime,
) -> tuple[str, str, str]:  # fmt: skip
    """Subject, text body and HTML body of one message: the subject of its first part, then
    each part's opening paragraph and rows."""
    esc = jinja2.utils.markupsafe.escape
    greeting = f"Dear {message.contact.first_name},"
    texts, htmls = [greeting], [f"<p>{esc(greeting)}</p>"]
    subject = ""
    for part in message.parts:
        context = _context(spec, ctx, params, today, message.contact, part, since, until)
        subject_source, intro_source = {
            "group": (params.subject or spec.subject, spec.intro),
            "student": (spec.student_subject or spec.subject, spec.student_intro or spec.intro),
            "faculty": (spec.faculty_subject or spec.subject, spec.faculty_intro or spec.intro),
            "guardian": (spec.guardian_subject or spec.subject, spec.guardian_intro or spec.intro),
        }[part.role]
        if not subject:
            field_name = "param.subject" if part.role == "group" and params.subject else "subject"
            subject = render(subject_source, field_name, **context)
        intro = render(intro_source, "intro", **context)
        texts.append(intro)
        htmls.append(f"<p>{esc(intro)}</p>")
        if spec.student_table or part.role != "student":
            texts.append(text_table(spec.columns, part.rows))
            htmls.append(html_table(spec.columns, part.rows))
    if params.message:
        first = _context(spec, ctx, params, today, message.contact, message.parts[0], since, until)
        extra = render(params.message, "param.message", **first)
        texts.append(extra)
        htmls.append(f"<p>{esc(extra)}</p>")
    footer = f'Sent by Belltower: "{ctx.job_title}" ({spec.title}), {today.isoformat()}.'
    texts.append("-- \n" + footer)
    htmls.append(f"<p><small>{esc(footer)}</small></p>")
    return subject, "\n\n".join(t for t in texts if t) + "\n", "".join(htmls)


async def _deliver(
    spec: Notifier[Any],
    pool: asyncpg.Pool,
    mail: MailSession,
    ctx: JobContext,
    params: NotifierParams,
    today: date,
    message: Message,
    since: datetime | None,
    until: datetime,
    tally: Tally,
) -> None:
    subject, text, html = _compose(spec, ctx, params, today, message, since, until)
    try:
        for channel in sorted(message.channels):
            if channel == "email":
                assert message.contact.email is not None
                await mail.send([message.contact.email], subject, text, html)
            else:
                reminder = sis.Reminder(
                    person_id=message.contact.person_id, source=spec.name, title=subject,
                    body_text=text, body_html=html, job_id=ctx.job_id, occurrence_id=ctx.occurrence_id,
                )  # fmt: skip
                await sis.add_reminders(pool, [reminder])
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    """INSERT INTO notifier.deliveries
                              (occurrence_id, recipient, channel, job_id, address, items)
                       VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING""",
                    ctx.occurrence_id, message.recipient, channel, ctx.job_id,
                    message.contact.email if channel == "email" else None, len(message.rows),
                )  # fmt: skip
                if spec.repeat in _LEDGERED:
                    await conn.execute(
                        """INSERT INTO notifier.sent_items (job_id, recipient, item_key, occurrence_id)
                           SELECT $1, $2, unnest($3::text[]), $4 ON CONFLICT DO NOTHING""",
                        ctx.job_id, message.recipient, [r.key for r in message.rows], ctx.occurrence_id,
                    )  # fmt: skip
            if channel == "email":
                tally.emails += 1
            else:
                tally.reminders += 1
    except Exception as exc:
        text_error = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        tally.failed.append(f"{message.contact.name} ({message.contact.sis_id}): {text_error}")
        return
    tally.notified += 1


async def _check(conn: asyncpg.Connection, params: NotifierParams) -> None:
    """Refuse bad parameters before anything is selected, let alone changed (Auto Waitlist Enroll
    acts before it tells): unknown codes or group, templates that do not parse."""
    await sis.check_demographics(conn, sis.Demographics(
        divisions=params.divisions, campuses=params.campuses,
        departments=params.departments, levels=params.levels,
    ))  # fmt: skip
    if params.group:
        await sis.group_members(conn, params.group)
    for name in ("subject", "message", "greeting"):
        source = getattr(params, name, "")
        if source:
            templates.check_template(source, f"param.{name}")


_state_ready: set[str] = set()
"""Database URLs whose ``notifier`` schema this process has brought up to date."""


async def _ensure_state(ctx: JobContext, pool: asyncpg.Pool) -> None:
    """Migrate the notifiers' own schema on first use, so the worker starts without the database."""
    if ctx.db.url in _state_ready:
        return
    await migrate(pool, STATE_SCHEMA, "belltower_notifier")
    _state_ready.add(ctx.db.url)


async def _run(spec: Notifier[Any], ctx: JobContext, params: NotifierParams) -> None:
    pool = await ctx.db.pool()
    await _ensure_state(ctx, pool)
    try:
        await _notify(spec, ctx, params, pool)
    except asyncpg.UndefinedTableError as exc:
        raise JobFailed(
            f"the SIS schema is missing from the database ({exc}): map the school's SIS onto the "
            "reference schema (docs/sis-schema.md), create the empty reference schema with "
            "`python -m belltower.sis`, or load the demo school with `python -m belltower_dev.demo`"
        ) from None


async def _notify(
    spec: Notifier[Any], ctx: JobContext, params: NotifierParams, pool: asyncpg.Pool
) -> None:
    today = today_for(ctx, params)
    tally = Tally()
    async with pool.acquire() as conn:
        await _check(conn, params)
        if spec.prepare is not None:
            await spec.prepare(conn, params, today)
        since: datetime | None = None
        until: datetime = await conn.fetchval("SELECT clock_timestamp()")
        if spec.repeat == "since_last_run":
            since, until = await _open_window(conn, ctx, params)
        query = Query(conn, params, today, since, until, ctx.job_id, ctx.occurrence_id)
        rows = await spec.select(query)
        tally.processed = len(rows)
        messages = await _plan(spec, conn, ctx, params, rows, tally)
    if getattr(params, "dry_run", False):
        # A notifier that declares ``dry_run``: the rows and who would be told, nothing sent,
        # no ledger entry, no delivery recorded, the window not moved.
        _report(spec, ctx, rows, tally, since, until, today)
        would = f"dry run: {counted(len(messages), 'message')} would be sent, nothing sent"
        ctx.output.summary = f"{would}; {ctx.output.summary}"
        ctx.output.line(would)
        return
    waiting = list(reversed(messages))
    done = 0
    limiter = rate.bucket(ctx.mailer, params.send_rate)
    if limiter is not None:
        ctx.output.line(
            f"send rate: at most {params.send_rate:g} e-mails per second through "
            f"{rate.relay_of(ctx.mailer)} (shared by this worker's runs)"
        )

    async def sender() -> None:
        nonlocal done
        async with ctx.mailer.session() as mail:
            while waiting:
                message = waiting.pop()
                if limiter is not None and "email" in message.channels:
                    await limiter.acquire()
                await _deliver(spec, pool, mail, ctx, params, today, message, since, until, tally)
                done += 1
                if done % PROGRESS_EVERY == 0:
                    await ctx.progress(done, len(messages), "messages delivered")

    await asyncio.gather(*(sender() for _ in range(min(SEND_CONCURRENCY, len(messages)))))
    _report(spec, ctx, rows, tally, since, until, today)
    if tally.failed:
        raise JobFailed(
            f"{counted(len(tally.failed), 'message')} could not be delivered "
            f"(first: {tally.failed[0]}); the next run tries again"
        )
    if spec.repeat == "since_last_run":
        await _close_window(pool, ctx)


def _report(
    spec: Notifier[Any], ctx: JobContext, rows: list[Row], tally: Tally,
    since: datetime | None, until: datetime, today: date,
) -> None:  # fmt: skip
    out = ctx.output
    skipped = tally.rows_skipped + len(tally.recipients_skipped)
    summary = (
        f"{counted(tally.processed, 'row')} processed, {counted(tally.notified, 'recipient')} notified "
        f"({counted(tally.emails, 'e-mail')}, {counted(tally.reminders, 'reminder')}), "
        f"{skipped} skipped, {len(tally.failed)} failed"
    )
    out.summary = summary
    out.line(f"{spec.title} for {today.isoformat()}")
    if since is not None:
        out.line(f"window: added after {show(since)} up to {show(until)}")
    out.line(summary)
    if tally.rows_skipped:
        out.line(f"{counted(tally.rows_skipped, 'row')} already notified before: not told again")
    if tally.already_delivered:
        out.line(
            f"{counted(tally.already_delivered, 'delivery', 'deliveries')} already made by this occurrence before"
        )
    for line in tally.recipients_skipped:
        out.line(f"skipped: {line}")
    for line in tally.failed:
        out.line(f"failed: {line}")
    shown = rows[:MAX_ROWS_IN_OUTPUT]
    if shown:
        out.line()
        out.line(text_table(spec.columns, shown))
        if len(rows) > len(shown):
            out.line(f"... and {len(rows) - len(shown)} more rows")
    esc = jinja2.utils.markupsafe.escape
    out.html(f"<h3>{esc(spec.title)} for {today.isoformat()}</h3><p>{esc(summary)}</p>")
    problems = [f"skipped: {x}" for x in tally.recipients_skipped] + [
        f"failed: {x}" for x in tally.failed
    ]
    if problems:
        out.html("<ul>" + "".join(f"<li>{esc(p)}</li>" for p in problems) + "</ul>")
    if shown:
        out.html(html_table(spec.columns, shown))
        if len(rows) > len(shown):
            out.html(f"<p>... and {len(rows) - len(shown)} more rows</p>")
