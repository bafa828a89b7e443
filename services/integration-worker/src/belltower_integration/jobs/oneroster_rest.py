"""``rostering.oneroster_rest_push``: the OneRoster roster pushed to a OneRoster 1.2 REST service.

Reads the same records the CSV export reads (:func:`.oneroster_export.read_records`), checks
them against the CSV binding's required fields and vocabularies (the REST objects carry the same
fields), shapes them as the Rostering Service REST/JSON Binding 1.2's objects
(:mod:`..oneroster.rest`) and compares with what the service last took from this job
(``sis.lms_sync_records``, kinds ``org`` ... ``enrollment``). The safety hold judges that change
before anything is sent. Then, in dependency order (orgs, academicSessions, courses, classes,
users, enrollments), every new or changed record is PUT, and afterwards what is gone is DELETEd
the other way round. Each record is saved as the service takes it, so a run cut short or with
refused records sends only what is still missing next time, and a repeated occurrence that
succeeded sends nothing. 429 (after ``Retry-After``) and 5xx are tried again. ``dry_run``
computes and reports the change without a token or a request.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from belltower.fences import PublicUrl
from belltower.jobtypes import JobContext, JobType

from .. import lmssync, report, safety
from ..oneroster import package, rest, validate
from ..oneroster.delta import Records, plan, stamp
from ..report import Tally
from ..secrets import SecretName, read_secret
from .oneroster_export import InstitutionId, InstitutionName, Terms, UpcomingDays, read_records

WHAT = "OneRoster REST push"


class OneRosterRestParams(msgspec.Struct, forbid_unknown_fields=True):
    base_url: Annotated[
        PublicUrl,
        msgspec.Meta(
            description="The service's address; requests go to <base_url>/ims/oneroster/"
            "rostering/v1p2/..."
        ),
    ]
    token_url: Annotated[
        PublicUrl, msgspec.Meta(description="OAuth 2 token endpoint (client credentials)")
    ]
    client_id_secret: Annotated[
        SecretName, msgspec.Meta(description="Secret holding the OAuth 2 client id")
    ] = "oneroster-client-id"
    client_secret_secret: Annotated[
        SecretName, msgspec.Meta(description="Secret holding the OAuth 2 client secret")
    ] = "oneroster-client-secret"
    scope: Annotated[
        str,
        msgspec.Meta(
            max_length=1000,
            pattern=r"^[\x21\x23-\x5b\x5d-\x7e]+( [\x21\x23-\x5b\x5d-\x7e]+)*$|^$",
            description="OAuth 2 scopes asked for (space separated; empty: none)",
        ),
    ] = rest.SCOPES
    terms: Terms = []
    upcoming_days: UpcomingDays = 30
    institution_id: InstitutionId = "institution"
    institution_name: InstitutionName = ""
    delete_removed: Annotated[
        bool, msgspec.Meta(description="DELETE records no longer in the roster (false: keep them)")
    ] = True
    dry_run: Annotated[
        bool, msgspec.Meta(description="Compute and report the change; send nothing")
    ] = False
    safety: safety.SafetyParams = msgspec.field(default_factory=safety.SafetyParams)


def check(records: Records, ctx: JobContext) -> None:
    """The records as a bulk CSV set must pass the CSV binding 1.2.1 (required fields, types,
    vocabularies, references): the same checks the export makes, before anything leaves."""
    rows = plan(records, None, ctx.scheduled_for).rows
    validate.check(package.files(rows, "bulk", "Belltower", "belltower"), None)


class _Push:
    def __init__(self, ctx: JobContext, client: rest.OneRosterClient, conn: Any,
                 wanted: dict[str, dict[str, rest.Payload]], stamp: str, tally: Tally) -> None:  # fmt: skip
        self.ctx, self.client, self.conn, self.wanted = ctx, client, conn, wanted
        self.stamp, self.tally = stamp, tally
        self.counts: dict[str, dict[str, int]] = {
            c: {"created": 0, "replaced": 0, "deleted": 0, "refused": 0} for c in rest.ORDER
        }

    async def put(self, collection: str, keys: list[str]) -> None:
        kind = rest.KIND[collection]
        taken: list[tuple[str, str | None, str]] = []
        for n, sid in enumerate(keys, 1):
            record = {**self.wanted[collection][sid], "dateLastModified": self.stamp}
            try:
                made = await self.client.put(collection, sid, record)
            except rest.OneRosterError as exc:
                self.counts[collection]["refused"] += 1
                self.tally.fail(f"{kind} {sid}", f"{exc.status}: {exc.reason}")
                continue
            self.counts[collection]["created" if made else "replaced"] += 1
            self.tally.processed += 1
            taken.append((sid, sid, safety.digest(self.wanted[collection][sid])))
            if len(taken) >= SAVE_EVERY:
                await lmssync.save(self.conn, self.ctx.job_id, kind, taken)
                taken = []
            await report.every(self.ctx, n, len(keys), f"{collection} sent")
        await lmssync.save(self.conn, self.ctx.job_id, kind, taken)

    async def delete(self, collection: str, keys: list[str]) -> None:
        kind = rest.KIND[collection]
        gone: list[str] = []
        for sid in keys:
            try:
                await self.client.delete(collection, sid)
            except rest.OneRosterError as exc:
                self.counts[collection]["refused"] += 1
                self.tally.fail(f"{kind} {sid} (delete)", f"{exc.status}: {exc.reason}")
                continue
            self.counts[collection]["deleted"] += 1
            self.tally.processed += 1
            gone.append(sid)
        await lmssync.forget(self.conn, self.ctx.job_id, kind, gone)


SAVE_EVERY = 200


def parents_first(records: dict[str, rest.Payload], keys: list[str]) -> list[str]:
    """``keys`` with each record after its ``parent`` (orgs, academicSessions refer to their
    own kind); the reverse is the order to delete in."""

    def depth(sid: str) -> int:
        seen: set[str] = set()
        while (parent := (records.get(sid) or {}).get("parent")) and sid not in seen:
            seen.add(sid)
            sid = parent["sourcedId"]
        return len(seen)

    return sorted(keys, key=lambda k: (depth(k), k))


def _counts(change: safety.Change) -> str:
    return "; ".join(
        f"{c}: {len(change[rest.KIND[c]].added)} new, {len(change[rest.KIND[c]].changed)} "
        f"changed, {len(change[rest.KIND[c]].deleted)} gone"
        for c in rest.ORDER
    )


async def run(ctx: JobContext, params: OneRosterRestParams) -> None:
    records = await read_records(
        ctx, params.terms, params.upcoming_days, params.institution_id, params.institution_name,
        demographics=False, guardians=False,
    )  # fmt: skip
    check(records, ctx)
    wanted = rest.Shaper(params.base_url).records(records)
    pool = await ctx.db.pool()
    async with pool.acquire() as conn:
        stored = await lmssync.load(conn, ctx.job_id)
    stored = {k: v for k, v in stored.items() if k in rest.KIND.values()}
    digests = {
        rest.KIND[c]: {sid: safety.digest(v) for sid, v in rows.items()}
        for c, rows in wanted.items()
    }
    change = lmssync.change(stored, digests)
    for c in rest.ORDER:
        change.setdefault(rest.KIND[c], safety.KindChange())
    if not params.delete_removed:
        for kc in change.values():
            kc.deleted = []
    tally = Tally(WHAT)
    tally.fact("to send: " + _counts(change))
    if params.dry_run:
        tally.write(ctx, f"{WHAT} (dry run, nothing sent): " + _counts(change))
        return
    released = await safety.guard(ctx, params.safety, change)
    if released:
        tally.fact(released)
    if not any(kc.added or kc.changed or kc.deleted for kc in change.values()):
        tally.write(ctx, f"{WHAT}: nothing changed since the last run; nothing sent")
        return
    client_id = read_secret(params.client_id_secret, "param.client_id_secret")
    secret = read_secret(params.client_secret_secret, "param.client_secret_secret")
    names = f"the secrets {params.client_id_secret!r} and {params.client_secret_secret!r}"
    async with rest.OneRosterClient(
        params.base_url, params.token_url, client_id, secret, scope=params.scope,
        secret_names=names, settings=ctx.settings,
    ) as client, pool.acquire() as conn:  # fmt: skip
        push = _Push(ctx, client, conn, wanted, stamp(ctx.scheduled_for), tally)
        steps = len(rest.ORDER) * 2
        for n, c in enumerate(rest.ORDER, 1):
            await ctx.progress(n, steps, f"sending {c}")
            kc = change[rest.KIND[c]]
            await push.put(c, parents_first(wanted[c], kc.added + kc.changed))
        for n, c in enumerate(reversed(rest.ORDER), len(rest.ORDER) + 1):
            await ctx.progress(n, steps, f"deleting {c} gone from the roster")
            gone = change[rest.KIND[c]].deleted  # their last values are not kept: by key only
            await push.delete(c, gone)
    for c in rest.ORDER:
        k = push.counts[c]
        tally.fact(
            f"{c}: {k['created']} created, {k['replaced']} replaced, {k['deleted']} deleted, "
            f"{k['refused']} refused"
        )
    summary = f"{WHAT} to {params.base_url}: {tally.processed} sent, {tally.failed} refused"
    lmssync.finish(ctx, tally, summary, "The OneRoster service")


job_type = JobType(
    name="rostering.oneroster_rest_push",
    pool="integration",
    title="OneRoster REST Push",
    description=(
        "Pushes the OneRoster 1.2 roster (orgs, academic sessions, courses, classes, users with "
        "their roles, enrollments: the same records as the OneRoster CSV export) to a OneRoster "
        "REST service with OAuth 2 client credentials, in dependency order, only what changed "
        "since the last run, with a safety hold on large deletions or changes and a dry run."
    ),
    params=OneRosterRestParams,
    run=run,
    timeout_s=3600,
)
