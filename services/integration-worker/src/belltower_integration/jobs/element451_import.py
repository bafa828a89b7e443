"""``people.element451_import``: the SONIS Element451 Import.

Imports the people of an Element451 segment (the prospects a school keeps in Element451, its
CRM) through Element451's Web Data Export API (:mod:`..element451`): e-mail, first and last
name of each user, 50 a request, following ``next_last_id``. Each becomes a person with
``status`` (``prospect`` by default) and their Element ID as ``person_external_ids`` (system
``element451``), unless the SIS has their e-mail or derived SIS id already, so the same
occurrence run again creates no one twice. One transaction; a dry run counts and rolls back;
the result can be mailed to a notification group.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from belltower.fences import PublicUrl
from belltower.jobtypes import JobContext, JobType

from .. import importing
from ..element451 import COLUMNS, ID_SLUG, Element451Client
from ..report import Tally
from ..secrets import SecretName, read_secret


class Element451ImportParams(msgspec.Struct, forbid_unknown_fields=True):
    base_url: Annotated[
        PublicUrl,
        msgspec.Meta(description="The school's Element451 API, https://<client>.api.451.io"),
    ]
    segment: Annotated[
        str,
        msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$",
                     description="Guid of the segment to import, e.g. school.segments.123"),
    ]  # fmt: skip
    feature_token_secret: Annotated[
        SecretName, msgspec.Meta(description="Secret holding the client's feature token")
    ] = "element451-feature"
    status: importing.Status = "prospect"
    max_users: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 10_000
    dry_run: Annotated[bool, msgspec.Meta(description="Check and count; create no one")] = False
    group: importing.Group | None = None
    notify: importing.Addresses = []


async def run(ctx: JobContext, params: Element451ImportParams) -> None:
    token = read_secret(params.feature_token_secret, "param.feature_token_secret")
    tally = Tally("Element451 import")
    people: list[importing.NewPerson] = []
    async with Element451Client(
        params.base_url, token, token_name=f"the secret {params.feature_token_secret!r}",
        settings=ctx.settings,
    ) as client:  # fmt: skip
        async for row in client.segment_users(params.segment, params.max_users):
            ident = str(row.get(ID_SLUG) or row.get("id") or "")
            text = {
                k: " ".join(str(row.get(slug) or "").split()) for k, (_, slug) in COLUMNS.items()
            }
            people.append(importing.NewPerson(
                f"user {ident or '(no Element ID)'}", text["first_name"], text["last_name"],
                text["email"], "element451", ident,
            ))  # fmt: skip
    pool = await ctx.db.pool()
    async with pool.acquire() as conn, importing.transaction(conn, params.dry_run):
        for person in people:
            if not person.external_id:
                tally.fail(person.record, "the row has no Element ID")
                continue
            await importing.add_once(conn, person, params.status, ctx.scheduled_for.date(), tally)
    tally.fact(f"segment {params.segment}: {len(people)} users read")
    summary = (
        f"Element451 import{' (dry run, nothing created)' if params.dry_run else ''}: "
        f"{tally.processed} created, {tally.skipped} skipped, {tally.failed} refused"
    )
    await importing.finish(ctx, tally, summary, params.group, params.notify)


job_type = JobType(
    name="people.element451_import",
    pool="integration",
    title="Element451 Import",
    description=(
        "Imports the people of an Element451 segment (prospects) through Element451's Web Data "
        "Export API as new people; people the SIS has already are skipped, so a repeat creates "
        "no one twice. Has a dry run and mails the result."
    ),
    params=Element451ImportParams,
    run=run,
    timeout_s=1800,
)
