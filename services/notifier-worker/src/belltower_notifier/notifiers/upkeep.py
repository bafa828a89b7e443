"""SONIS notifiers and timed tasks that change the SIS: Address Check, PIN/Password Expiration,
Purge Saved ISIRs, NMTRACK Delete Task, Prospect Import Notifier. Each acts through
``acting.act``, so a redelivered occurrence changes nothing twice and reports what it did."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from belltower import sis

from ..notify import Group, Notifier, NotifierParams, Query, Row
from .acting import act, cutoff, done, record
from .common import NAME, STUDENT_COLUMNS, Channel, Meta, Statuses

AddressKind = Literal["home", "mailing", "billing", "campus", "work"]
Days = Annotated[int, Meta(ge=0, le=3650, description="older than this many days; 0: before today")]


class AddressCheckParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    address_kind: Annotated[
        AddressKind, Meta(description="the address type everyone with a street address must have")
    ] = "mailing"
    statuses: Annotated[Statuses, Meta(description="module statuses to check; empty: all")] = []


async def _address_check(q: Query[AddressCheckParams]) -> list[Row]:
    args: list[Any] = [q.params.address_kind]
    where = q.where(args, statuses=sis.PERSON_STATUSES)
    change = f"""
        WITH copied AS (
            INSERT INTO sis.addresses (person_id, kind, preferred, line1, line2, city, region, postal_code, country)
            SELECT a.person_id, $1, false, a.line1, a.line2, a.city, a.region, a.postal_code, a.country
              FROM sis.addresses a JOIN sis.people p ON p.id = a.person_id
             WHERE a.preferred AND btrim(a.line1) <> ''
               AND NOT EXISTS (SELECT 1 FROM sis.addresses b WHERE b.person_id = a.person_id AND b.kind = $1)
               AND {where}
            RETURNING id, person_id, kind, line1, city)
        SELECT c.id AS address_id, c.person_id, {NAME}, p.status, c.kind, c.line1, c.city,
               (SELECT a.kind FROM sis.addresses a WHERE a.person_id = c.person_id AND a.preferred) AS copied_from
          FROM copied c JOIN sis.people p ON p.id = c.person_id ORDER BY name"""
    return await act(
        q, "notifier.address_check", change, args, lambda v: f"address:{v['address_id']}"
    )


address_check = Notifier(
    name="notifier.address_check",
    title="Notifier: Address Check",
    description=(
        "The Address Check Notifier verifies that every user that has a street address defined in "
        "their preferred address record also has an address type of the value selected. The persons "
        "being looked at can be limited by their status, if desired. For anyone who does not have "
        "the selected address defined, their preferred address record will be copied to the "
        "selected address type with the preferred address record left as the preferred address."
    ),
    params=AddressCheckParams,
    select=_address_check,
    columns=(
        *STUDENT_COLUMNS,
        ("status", "Status"),
        ("copied_from", "Preferred address"),
        ("kind", "Copied to"),
        ("line1", "Street"),
        ("city", "City"),
    ),
    subject="{{ count | counted('address', 'addresses') }} copied to {{ params.address_kind }}",
    intro="These people had no {{ params.address_kind }} address; their preferred address was "
    "copied to one (it stays their preferred address):",
)


class PinPasswordParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    pin_days: Annotated[
        int,
        Meta(ge=0, le=3650, description="expire PINs set more than this many days ago; 0: never"),
    ] = 0
    password_days: Annotated[
        int,
        Meta(
            ge=0, le=3650, description="expire passwords set more than this many days ago; 0: never"
        ),
    ] = 180
    statuses: Annotated[Statuses, Meta(description="module statuses to expire; empty: all")] = []
    notify_students: Annotated[
        bool, Meta(description="tell each person their PIN or password must be changed")
    ] = False
    student_channel: Channel = "email"


async def _pin_password(q: Query[PinPasswordParams]) -> list[Row]:
    p = q.params
    args: list[Any] = [
        cutoff(q, p.pin_days),
        cutoff(q, p.password_days),
        p.pin_days,
        p.password_days,
    ]
    where = q.where(args, statuses=sis.PERSON_STATUSES)
    change = f"""
        UPDATE sis.login_credentials c SET expired_at = now()
          FROM sis.people p
         WHERE p.id = c.person_id AND c.expired_at IS NULL
           AND ((c.kind = 'pin' AND $3 > 0 AND c.set_at < $1)
                OR (c.kind = 'password' AND $4 > 0 AND c.set_at < $2))
           AND {where}
        RETURNING c.person_id, {NAME}, p.status, c.kind, c.set_at"""
    return await act(q, "notifier.pin_password_expiration", change, args,
                     lambda v: f"{v['kind']}:{v['person_id']}")  # fmt: skip


pin_password_expiration = Notifier(
    name="notifier.pin_password_expiration",
    title="PIN/Password Expiration",
    description=(
        "The PIN/Password timed task triggers the expiration of PINs and passwords that have "
        "passed the set threshold: each is marked expired, to be changed at the next sign-in. "
        "This task should run at least daily."
    ),
    params=PinPasswordParams,
    select=_pin_password,
    columns=(*STUDENT_COLUMNS, ("status", "Status"), ("kind", "Expired"), ("set_at", "Set")),
    subject="{{ count | counted('PIN or password', 'PINs and passwords') }} expired",
    intro="These PINs and passwords passed their threshold and were expired:",
    student_subject="Your SIS PIN or password has expired",
    student_intro="Please choose a new one the next time you sign in:",
)


class RetentionParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    """What the deleting tasks take: how old a record must be to go."""

    older_than_days: Days = 30


async def _purge_isirs(q: Query[RetentionParams]) -> list[Row]:
    change = """
        DELETE FROM sis.isirs WHERE person_id IS NULL AND saved_at < $1
        RETURNING id, NULL::bigint AS person_id, award_year, transaction_number, name_id,
                  student_last_name || ', ' || student_first_name AS name, saved_at"""
    return await act(q, "notifier.purge_saved_isirs", change, [cutoff(q, q.params.older_than_days)],
                     lambda v: f"isir:{v['id']}")  # fmt: skip


purge_saved_isirs = Notifier(
    name="notifier.purge_saved_isirs",
    title="Purge Saved ISIRs",
    description=(
        "Administrators can save unmatched ISIR records for import at a later date. The Purge "
        "Saved ISIRs timed task deletes these records automatically on a set schedule: every "
        "saved, still unmatched ISIR saved more than the given number of days ago."
    ),
    params=RetentionParams,
    select=_purge_isirs,
    columns=(
        ("name", "Student (ISIR)"),
        ("award_year", "Award year"),
        ("transaction_number", "Transaction"),
        ("saved_at", "Saved"),
    ),
    subject="{{ count | counted('saved ISIR') }} purged",
    intro="These saved, unmatched ISIRs were deleted:",
)


async def _nmtrack(q: Query[RetentionParams]) -> list[Row]:
    change = f"""
        WITH gone AS (DELETE FROM sis.page_visits WHERE visited_at < $1 RETURNING person_id, visited_at)
        SELECT g.person_id, {NAME}, count(*)::int AS deleted, min(g.visited_at) AS oldest,
               max(g.visited_at) AS newest
          FROM gone g JOIN sis.people p ON p.id = g.person_id
         GROUP BY g.person_id, p.last_name, p.first_name, p.sis_id ORDER BY name"""
    return await act(q, "notifier.nmtrack_delete", change, [cutoff(q, q.params.older_than_days)],
                     lambda v: f"visits:{v['person_id']}")  # fmt: skip


nmtrack_delete = Notifier(
    name="notifier.nmtrack_delete",
    title="Notifier: NMTRACK Delete Task",
    description=(
        "The NMTRACK Delete Task notifier is used to delete breadcrumbs records: the record of "
        "every page an admin user visited, which can become very large over time. Records older "
        "than the given number of days are deleted; the group is told how many, per user."
    ),
    params=RetentionParams,
    select=_nmtrack,
    columns=(*STUDENT_COLUMNS, ("deleted", "Deleted"), ("oldest", "Oldest"), ("newest", "Newest")),
    subject="{{ rows | sum(attribute='deleted') }} breadcrumb records deleted",
    intro="Breadcrumb records older than {{ params.older_than_days }} days were deleted:",
)


class ProspectImportParams(NotifierParams, kw_only=True, forbid_unknown_fields=True):
    group: Group = "ADMISSIONS"


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _problem(request: dict[str, Any]) -> str | None:
    if not request["first_name"].strip() or not request["last_name"].strip():
        return "a first and a last name are required"
    if not _EMAIL.match(request["email"].strip()):
        return f"{request['email']!r} is not an e-mail address"
    return None


async def _prospect_import(q: Query[ProspectImportParams]) -> list[Row]:
    """Import every waiting Prospect Inquiry Card request as a prospect; one the SIS already
    knows (same e-mail) or that lacks a name or e-mail is refused and says why."""
    conn = q.conn
    by = f"belltower:{q.occurrence_id}"
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('notifier.prospect_import'))")
        waiting = await conn.fetch(
            """SELECT * FROM sis.prospect_requests WHERE imported_at IS NULL AND problem IS NULL
                ORDER BY received_at, id FOR UPDATE"""
        )
        entries: list[tuple[str, int | None, dict[str, Any]]] = []
        for request in map(dict, waiting):
            email = request["email"].strip()
            name = f"{request['last_name'].strip()}, {request['first_name'].strip()}"
            sis_id = f"R{request['id']:07d}"
            problem = _problem(request)
            if problem is None and (known := await sis.existing_person(conn, sis_id, email)):
                problem = f"already in the SIS as {known}"
            person = None
            if problem is None:
                person = await sis.add_person(
                    conn, sis_id, request["first_name"].strip(), request["last_name"].strip(),
                    status="prospect", email=email, starts_on=q.today,
                    birth_date=request["birth_date"], phone=request["phone"].strip(),
                )  # fmt: skip
            await conn.execute(
                """UPDATE sis.prospect_requests SET imported_at = CASE WHEN $2::bigint IS NULL THEN NULL ELSE now() END,
                          person_id = $2, problem = $3, imported_by = $4 WHERE id = $1""",
                request["id"], person, problem, by,
            )  # fmt: skip
            result = "imported" if problem is None else f"not imported: {problem}"
            values = {"name": name, "sis_id": sis_id if person else "", "email": email,
                      "interest": request["interest"], "result": result}  # fmt: skip
            entries.append((f"request:{request['id']}", None, values))
        await record(q, entries)
    return await done(q)


prospect_import = Notifier(
    name="notifier.prospect_import",
    title="Notifier: Prospect Import Notifier",
    description=(
        "The Prospect Import notifier imports all prospect request records received through the "
        "Prospect Inquiry Card and sends an alert to members of the notifier group of the "
        "individuals that have been added. It also indicates within the alert if there are any "
        "individuals who could not be imported (and why)."
    ),
    params=ProspectImportParams,
    select=_prospect_import,
    columns=(*STUDENT_COLUMNS, ("email", "E-mail"), ("interest", "Interest"), ("result", "Result")),
    subject="{{ rows | selectattr('result', 'equalto', 'imported') | list | length | counted('prospect') }} imported"
    "{% set refused = rows | rejectattr('result', 'equalto', 'imported') | list | length %}"
    "{% if refused %}, {{ refused }} not imported{% endif %}",
    intro="Prospect Inquiry Card requests imported since the last run:",
)
