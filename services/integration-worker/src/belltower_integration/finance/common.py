"""What the billing and aid jobs share: parameter types, the batch paths, the term chosen."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import msgspec

from belltower import sis
from belltower.errors import InvalidInput
from belltower.jobtypes import JobContext

from .. import batchfiles

Meta = msgspec.Meta
FileName = Annotated[
    str,
    Meta(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._{}-]{0,99}$",
        description="a file name in the folder; {date} and {stamp} are the occurrence's day "
        "(YYYYMMDD) and instant (YYYYMMDDHHMMSS)",
    ),
]
Pattern = Annotated[
    str, Meta(pattern=r"^[A-Za-z0-9*?._-]{1,100}$", description="a file name pattern (glob)")
]
Code = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]{1,32}$")]
Codes = Annotated[list[Code], Meta(max_length=200, description="codes; empty: no limit")]
Settle = Annotated[
    float,
    Meta(ge=0, le=86400, description="seconds a drop must be unchanged before it is read"),
]
DryRun = Annotated[bool, Meta(description="report what would be written; write nothing")]
TermCode = Annotated[
    str, Meta(pattern=r"^[A-Za-z0-9_.-]{0,32}$", description="terms.code; empty: the current term")
]
Statuses = Annotated[
    list[sis.PersonStatus], Meta(max_length=5, description="module statuses to include")
]
SEED_000 = "the SONIS Timed Task Scheduler (seed 000)"


class Limits(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Who a file is about: module statuses and the demographics, by code."""

    statuses: Statuses = msgspec.field(default_factory=lambda: ["student"])
    divisions: Codes = []
    campuses: Codes = []
    departments: Codes = []
    levels: Codes = []

    def demographics(self) -> sis.Demographics:
        return sis.Demographics(
            statuses=list(self.statuses), divisions=self.divisions, campuses=self.campuses,
            departments=self.departments, levels=self.levels,
        )  # fmt: skip


def file_in(ctx: JobContext, folder: str, name: str) -> Path:
    """``folder/name`` inside the batch folder, the name's placeholders filled in."""
    base = Path(ctx.settings.batch_folder)
    at = ctx.scheduled_for
    filled = name.replace("{date}", at.strftime("%Y%m%d")).replace("{stamp}", batchfiles.stamp(at))
    return batchfiles.within(
        base, batchfiles.inside(base, folder, "param.folder") / filled, "param.file_name"
    )


def folder_of(ctx: JobContext, folder: str) -> Path:
    return batchfiles.inside(Path(ctx.settings.batch_folder), folder, "param.folder")


async def term(db: asyncpg.Pool | asyncpg.Connection, code: str, today: date) -> asyncpg.Record:
    """The term named by ``code``, or the one in progress on ``today`` (else the next one)."""
    if code:
        row = await db.fetchrow("SELECT * FROM sis.terms WHERE code = $1", code)
        if row is None:
            known = [
                r["code"] for r in await db.fetch("SELECT code FROM sis.terms ORDER BY starts_on")
            ]
            raise InvalidInput("param.term", f"no term {code!r}", "one of " + ", ".join(known))
        return row
    row = await db.fetchrow(
        """SELECT * FROM sis.terms WHERE ends_on >= $1 ORDER BY starts_on <= $1 DESC, starts_on LIMIT 1""",
        today,
    )
    if row is None:
        raise InvalidInput(
            "param.term", f"no term is in progress or ahead on {today}", "a term code"
        )
    return row


def award_year(day: date) -> str:
    """The federal award year a day falls in (July to June): 2026-27."""
    start = day.year if day.month >= 7 else day.year - 1
    return f"{start}-{(start + 1) % 100:02d}"


async def people_ids(conn: asyncpg.Connection, ids: list[str]) -> dict[str, int]:
    """The people a partner file names, by SIS id or by billing account's Nelnet customer id."""
    rows = await conn.fetch(
        """SELECT p.sis_id AS key, p.id FROM sis.people p WHERE p.sis_id = ANY($1::text[])
           UNION ALL
           SELECT a.nelnet_customer_id, a.person_id FROM sis.billing_accounts a
            WHERE a.nelnet_customer_id = ANY($1::text[])""",
        ids,
    )
    return {r["key"]: r["id"] for r in rows}


async def term_ids(conn: asyncpg.Connection) -> dict[str, int]:
    return {r["code"]: r["id"] for r in await conn.fetch("SELECT code, id FROM sis.terms")}


CUSTOMER = "coalesce(ba.nelnet_customer_id, p.sis_id) AS customer_id"
EMAIL = (
    "coalesce(ba.statement_email, (SELECT e.address FROM sis.emails e WHERE e.person_id = p.id "
    "ORDER BY e.is_primary DESC, e.id LIMIT 1)) AS email"
)


def where(limits: Limits, args: list[Any], person: str = "p") -> str:
    return limits.demographics().where(person, args)
