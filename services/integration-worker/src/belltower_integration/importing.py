"""What the imports into the SIS share: validated mail parameters, one transaction that a dry
run rolls back, and the end of a run (its output, then the result mailed)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Literal

import msgspec

from belltower import sis
from belltower.jobtypes import JobContext

from .notify import recipients, send_results
from .report import Tally

Email = Annotated[
    str, msgspec.Meta(pattern=r"^[^@\s,<>\"]{1,64}@[A-Za-z0-9.-]{1,253}$", max_length=254)
]
Addresses = Annotated[list[Email], msgspec.Meta(max_length=50, description="Addresses to mail")]
Group = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,99}$", description="Notification group to mail"
    ),
]


@asynccontextmanager
async def transaction(conn: Any, dry_run: bool) -> AsyncIterator[None]:
    """One transaction for the whole import: committed, or rolled back for a dry run (and on
    any error)."""
    tr = conn.transaction()
    await tr.start()
    try:
        yield
    except BaseException:
        await tr.rollback()
        raise
    await (tr.rollback() if dry_run else tr.commit())


async def finish(ctx: JobContext, tally: Tally, summary: str, group: str | None,
                 notify: list[str]) -> None:  # fmt: skip
    """Write the run's output and mail it to the group's members and the addresses."""
    tally.write(ctx, summary)
    await send_results(ctx, await recipients(ctx, group, notify), summary, tally)


Status = Literal["student", "faculty", "staff", "prospect", "alumni"]


def generated_sis_id(email: str) -> str:
    """A stable SIS id for a record that brings none, so a re-import finds the same person."""
    return "N" + hashlib.sha256(email.strip().lower().encode()).hexdigest()[:11].upper()


@dataclass(frozen=True)
class NewPerson:
    """A person an outside system holds: ``system`` and ``external_id`` name them there."""

    record: str
    first_name: str
    last_name: str
    email: str
    system: str
    external_id: str
    phone: str = ""
    birth_date: date | None = None


BY_EXTERNAL_SQL = """
SELECT p.sis_id FROM sis.person_external_ids x JOIN sis.people p ON p.id = x.person_id
 WHERE x.system = $1 AND x.value = $2
"""


async def add_once(conn: Any, person: NewPerson, status: str, starts_on: date,
                   tally: Tally) -> None:  # fmt: skip
    """Create ``person`` unless the SIS has their outside id, e-mail (any case) or derived SIS id; a record
    without names or an e-mail address is refused. The outside id is kept in
    ``person_external_ids``."""
    email = person.email.strip()
    if not person.first_name or not person.last_name or "@" not in email:
        tally.fail(person.record, "a first and last name and an e-mail address are required")
        return
    sis_id = generated_sis_id(email)
    existing = await conn.fetchval(BY_EXTERNAL_SQL, person.system, person.external_id)
    if existing is not None:  # the same outside record, its e-mail changed since
        tally.skip(person.record, f"already in the SIS as {existing} (by {person.system} id)")
        return
    existing = await sis.existing_person(conn, sis_id, email)
    if existing is not None:
        tally.skip(person.record, f"already in the SIS as {existing}")
        return
    made = await sis.add_person(
        conn, sis_id, person.first_name, person.last_name, status=status,  # type: ignore[arg-type]
        email=email, starts_on=starts_on, birth_date=person.birth_date, phone=person.phone,
    )  # fmt: skip
    await conn.execute(
        "INSERT INTO sis.person_external_ids (person_id, system, value) VALUES ($1, $2, $3)",
        made, person.system, person.external_id,
    )  # fmt: skip
    tally.ok(person.record, f"created {sis_id} ({status})")
