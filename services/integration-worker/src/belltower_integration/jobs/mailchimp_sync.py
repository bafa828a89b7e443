"""``messaging.mailchimp_sync``: SONIS's Mailchimp Sync notifier, over the Marketing API 3.0.

"Synchronizes changes to Mailchimp designated lists and sends an alert to the members of the
notification group showing the status of the Mailchimp synchronization. It syncs all
individuals with an enabled list record along with those that have an email address or name
change." A list record is ``sis.mailing_list_members`` (person, Mailchimp list id, enabled).
Each run sends, per list, the people new to it and those whose email address or name changed
since it last sent them (``sis.directory_sync_records``), in batches of up to 500 members
(``POST /3.0/lists/{list_id}``); a changed address is moved on the member it was
(``PATCH .../members/{md5 of the old address}``) so no second member is made; a disabled list
record unsubscribes the person. A member Mailchimp refuses is sent again by the next run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import Annotated, Any

import msgspec

from belltower.errors import JobFailed
from belltower.fences import PublicUrl
from belltower.jobtypes import JobContext, JobType

from .. import directorysync
from ..mailchimp import BATCH_LIMIT, MailchimpClient, MailchimpError, api_root, subscriber_hash
from ..notify import recipients, send_results
from ..report import Tally
from ..safety import digest
from ..secrets import SecretName, read_secret

Meta = msgspec.Meta
ListId = Annotated[
    str, Meta(pattern=r"^[A-Za-z0-9]{1,32}$", description="a Mailchimp audience (list) id")
]
Group = Annotated[
    str,
    Meta(
        pattern=r"^[A-Za-z0-9_.-]{0,64}$",
        description="notification group told the results; empty: none",
    ),
]
Address = Annotated[str, Meta(pattern=r"^[^@\s<>,;]{1,64}@[A-Za-z0-9.-]{1,190}$", max_length=254)]


class MailchimpSyncParams(msgspec.Struct, forbid_unknown_fields=True):
    api_key_secret: Annotated[
        SecretName,
        Meta(
            description="Secret holding the Mailchimp API key (ends in its datacenter, e.g. -us6)"
        ),
    ] = "mailchimp-api-key"
    lists: Annotated[
        list[ListId],
        Meta(max_length=50, description="Lists to sync; empty: every list with a list record"),
    ] = []
    base_url: Annotated[
        PublicUrl | None,
        Meta(description="API address; empty: https://<datacenter>.api.mailchimp.com from the key"),
    ] = None
    group: Group = ""
    notify: Annotated[list[Address], Meta(max_length=50)] = []
    dry_run: Annotated[bool, Meta(description="Count what would be sent; send nothing")] = False


MEMBERS_SQL = """
SELECT m.list_id, m.enabled, p.id AS person_id, p.first_name, p.last_name,
       (SELECT e.address FROM sis.emails e WHERE e.person_id = p.id
         ORDER BY e.is_primary DESC, e.id LIMIT 1) AS email
  FROM sis.mailing_list_members m JOIN sis.people p ON p.id = m.person_id
 WHERE cardinality($1::text[]) = 0 OR m.list_id = ANY($1::text[])
 ORDER BY m.list_id, p.id
"""


@dataclass
class ListCounts:
    list_id: str
    subscribed: int = 0
    updated: int = 0
    moved: int = 0
    unsubscribed: int = 0
    failed: int = 0
    unchanged: int = 0
    taken: list[tuple[int, str, str]] = field(default_factory=list)


def _member(row: Any) -> dict[str, Any]:
    return {
        "email_address": row["email"].strip(),
        "status": "subscribed" if row["enabled"] else "unsubscribed",
        "merge_fields": {"FNAME": row["first_name"], "LNAME": row["last_name"]},
    }


async def _sync_list(mc: MailchimpClient | None, counts: ListCounts, rows: list[Any],
                     stored: directorysync.Stored, tally: Tally) -> None:  # fmt: skip
    batch: list[tuple[int, dict[str, Any]]] = []
    for row in rows:
        if not row["email"]:
            tally.skip(f"person {row['person_id']}", "no email address")
            continue
        member, was = _member(row), stored.get(row["person_id"])
        if was is None and not row["enabled"]:
            continue  # never sent and not wanted: nothing to unsubscribe
        if was is not None and was[1] == digest(member):
            counts.unchanged += 1
            continue
        new_hash = subscriber_hash(member["email_address"])
        if was is not None and was[0] != new_hash:  # the address changed: move the member
            if mc is None:
                counts.moved += 1
                continue
            try:
                moved = await mc.change(counts.list_id, was[0], member)
            except MailchimpError as exc:
                counts.failed += 1
                tally.fail(
                    f"{counts.list_id} {member['email_address']}", f"{exc.status}: {exc.detail}"
                )
                continue
            if moved:
                counts.moved += 1
                counts.taken.append((row["person_id"], new_hash, digest(member)))
                continue
        batch.append((row["person_id"], member))
    for start in range(0, len(batch), BATCH_LIMIT):
        await _send_batch(mc, counts, batch[start : start + BATCH_LIMIT], tally)


async def _send_batch(mc: MailchimpClient | None, counts: ListCounts,
                      chunk: list[tuple[int, dict[str, Any]]], tally: Tally) -> None:  # fmt: skip
    if mc is None:
        counts.subscribed += len(chunk)
        return
    try:
        answer = await mc.batch(counts.list_id, [m for _, m in chunk])
    except MailchimpError as exc:  # the whole batch refused: each member is tried next run
        counts.failed += len(chunk)
        tally.fail(f"{counts.list_id} batch of {len(chunk)}", f"{exc.status}: {exc.detail}")
        return
    new = {str(m.get("email_address", "")).lower() for m in answer.get("new_members", [])}
    changed = {str(m.get("email_address", "")).lower() for m in answer.get("updated_members", [])}
    errors = {str(e.get("email_address", "")).lower(): e for e in answer.get("errors", [])}
    for person_id, member in chunk:
        address = member["email_address"].lower()
        if address in errors:
            counts.failed += 1
            e = errors[address]
            tally.fail(
                f"{counts.list_id} {member['email_address']}",
                f"{e.get('error_code', '')}: {e.get('error', '')}"[:300],
            )
            continue
        if address not in new and address not in changed:
            counts.failed += 1
            tally.fail(f"{counts.list_id} {member['email_address']}", "not in Mailchimp's answer")
            continue
        if member["status"] == "unsubscribed":
            counts.unsubscribed += 1
        elif address in new:
            counts.subscribed += 1
        else:
            counts.updated += 1
        counts.taken.append((person_id, subscriber_hash(address), digest(member)))


async def run(ctx: JobContext, params: MailchimpSyncParams) -> None:
    key = read_secret(params.api_key_secret, "param.api_key_secret")
    base = params.base_url or api_root(key, params.api_key_secret)
    pool = await ctx.db.pool()
    tally = Tally("Mailchimp Sync")
    table: list[ListCounts] = []
    async with pool.acquire() as conn:
        rows = await conn.fetch(MEMBERS_SQL, params.lists)
        by_list: dict[str, list[Any]] = {}
        for r in rows:
            by_list.setdefault(r["list_id"], []).append(r)
        async with MailchimpClient(
            base, key, secret_name=params.api_key_secret, settings=ctx.settings
        ) as mc:
            for n, (list_id, members) in enumerate(sorted(by_list.items()), 1):
                counts = ListCounts(list_id)
                table.append(counts)
                stored = await directorysync.load(conn, ctx.job_id, list_id)
                try:
                    await _sync_list(None if params.dry_run else mc, counts, members, stored, tally)
                finally:  # what Mailchimp took is kept, whatever failed after
                    await directorysync.save(conn, ctx.job_id, list_id, counts.taken)
                await ctx.progress(n, len(by_list), f"list {list_id} synced")
    _write(ctx, params, table, tally)
    await send_results(
        ctx, await recipients(ctx, params.group or None, params.notify), ctx.output.summary, tally
    )
    if tally.failed:
        raise JobFailed(
            f"Mailchimp refused {tally.failed} member(s) (see the output); the rest was sent, and "
            "the next run sends the refused ones again"
        )


def _write(
    ctx: JobContext, params: MailchimpSyncParams, table: list[ListCounts], tally: Tally
) -> None:
    verb = "would send" if params.dry_run else "sent"
    sent = sum(c.subscribed + c.updated + c.moved + c.unsubscribed for c in table)
    tally.processed = sent
    tally.failed = sum(c.failed for c in table)
    for c in table:
        tally.fact(
            f"list {c.list_id}: {c.subscribed} subscribed, {c.updated} updated, {c.moved} address "
            f"changes, {c.unsubscribed} unsubscribed, {c.failed} failed, {c.unchanged} unchanged"
        )
    tally.write(
        ctx,
        f"Mailchimp Sync: {verb} {sent} member changes to {len(table)} list(s), {tally.failed} failed",
    )
    if params.dry_run:
        ctx.output.html("<p>" + escape("Dry run: nothing was sent to Mailchimp.") + "</p>")


job_type = JobType(
    name="messaging.mailchimp_sync",
    pool="integration",
    title="Mailchimp Sync",
    description=(
        "Synchronizes the SIS's Mailchimp list records with Mailchimp audiences through the "
        "Marketing API 3.0 (batch subscribe/update of up to 500 members, API key by secret "
        "reference): everyone with an enabled list record who is new to the list or whose email "
        "address or name changed; a disabled record unsubscribes. Mails the results to the "
        "notification group."
    ),
    params=MailchimpSyncParams,
    run=run,
    timeout_s=3600,
)
