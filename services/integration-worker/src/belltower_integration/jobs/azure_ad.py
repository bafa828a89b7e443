"""``exports.azure_ad_account_update``: SONIS's Azure AD SAMAccountName Update, over Microsoft
Graph v1.0.

The seed: "The SAMAccountName attribute is a value used in the Azure Active Directory sync
process. This notifier sends an alert to the members of the notification group showing the
results of the SAMAccountName update with Azure AD." Through Graph, ``onPremisesSamAccountName``
is read-only: it is synced from on-premises Active Directory by Entra Connect, and no API call
can set it. So this job updates what Graph can: for a cloud-only user, ``PATCH /v1.0/users/{id}``
sets ``mailNickname`` (the cloud account name) to the SIS login id and ``employeeId`` to the SIS
id; for a user synced from on-premises AD (whose attributes Graph refuses to change) it compares
``onPremisesSamAccountName`` with the SIS login id and reports each one that differs, to be
changed in on-premises AD. The results go to the notification group.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from belltower import sis
from belltower.errors import JobFailed
from belltower.fences import PublicUrl
from belltower.jobtypes import JobContext, JobType

from .. import directorysync
from ..graph import GraphClient, GraphError
from ..notify import recipients, send_results
from ..report import Tally
from ..safety import digest
from ..secrets import SecretName, read_secret
from .mailchimp_sync import Address, Group

Meta = msgspec.Meta
GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
DOMAIN = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}\.)+[A-Za-z]{2,63}"
SYSTEM = "azure_ad"


class AzureAdParams(msgspec.Struct, forbid_unknown_fields=True):
    tenant_id: Annotated[
        str, Meta(pattern=f"^(?:{GUID}|{DOMAIN})$", description="Entra tenant id or domain")
    ]
    client_id: Annotated[
        str,
        Meta(pattern=f"^{GUID}$", description="Application (client) id of the app registration"),
    ]
    client_secret: Annotated[
        SecretName, Meta(description="Secret holding the app registration's client secret")
    ] = "azure-ad-client-secret"
    upn_domain: Annotated[
        str,
        Meta(
            pattern=f"^(?:{DOMAIN})?$",
            description="Users are found as <login id>@<this domain> unless the SIS has their Entra id",
        ),
    ] = ""
    statuses: Annotated[
        list[sis.PersonStatus], Meta(description="People of these statuses are updated")
    ] = msgspec.field(default_factory=lambda: ["student", "faculty", "staff"])
    graph_url: PublicUrl = "https://graph.microsoft.com"
    login_url: PublicUrl = "https://login.microsoftonline.com"
    group: Group = ""
    notify: Annotated[list[Address], Meta(max_length=50)] = []
    dry_run: Annotated[
        bool, Meta(description="Read the users and report what would change; change nothing")
    ] = False


PEOPLE_SQL = """
SELECT p.id, p.sis_id, p.login_id, x.value AS entra_id
  FROM sis.people p LEFT JOIN sis.person_external_ids x ON x.person_id = p.id AND x.system = $2
 WHERE p.login_id IS NOT NULL AND p.status = ANY($1::text[])
 ORDER BY p.id
"""


class _Run:
    def __init__(
        self, ctx: JobContext, params: AzureAdParams, graph: GraphClient, tally: Tally
    ) -> None:
        self.ctx, self.params, self.graph, self.tally = ctx, params, graph, tally
        self.taken: list[tuple[int, str, str]] = []
        self.linked: list[tuple[int, str]] = []
        self.updated = self.matched = self.on_premises = 0

    async def person(self, p: Any, wanted: str) -> None:
        key = p["entra_id"] or (
            f"{p['login_id']}@{self.params.upn_domain}" if self.params.upn_domain else None
        )
        if key is None:
            self.tally.skip(
                p["sis_id"], "no Entra id in the SIS and no upn_domain to find the user by"
            )
            return
        try:
            user = await self.graph.user(key)
            if user is None:
                self.tally.fail(p["sis_id"], f"no Entra user {key}")
                return
            await self._user(p, user, wanted)
        except GraphError as exc:
            self.tally.fail(p["sis_id"], f"{exc.status} {exc.graph_code}: {exc.reason}")

    async def _user(self, p: Any, user: dict[str, Any], wanted: str) -> None:
        if not p["entra_id"]:
            self.linked.append((p["id"], str(user["id"])))
        if user.get("onPremisesSyncEnabled"):
            if (user.get("onPremisesSamAccountName") or "").lower() == p["login_id"].lower():
                self.matched += 1
                self.taken.append((p["id"], str(user["id"]), wanted))
                return
            self.on_premises += 1
            self.tally.skip(
                p["sis_id"],
                f"synced from on-premises AD: SAMAccountName is {user.get('onPremisesSamAccountName')!r}, the SIS "
                f"login id is {p['login_id']!r}; change it in on-premises AD (read-only through Graph)",
            )
            return
        changes = {
            k: v
            for k, v in (("mailNickname", p["login_id"]), ("employeeId", p["sis_id"]))
            if user.get(k) != v
        }
        if not changes:
            self.matched += 1
        elif not self.params.dry_run:
            await self.graph.update(str(user["id"]), changes)
            self.updated += 1
            self.tally.ok(p["sis_id"], "set " + ", ".join(f"{k}={v}" for k, v in changes.items()))
        else:
            self.updated += 1
            self.tally.ok(
                p["sis_id"], "would set " + ", ".join(f"{k}={v}" for k, v in changes.items())
            )
            return
        self.taken.append((p["id"], str(user["id"]), wanted))


async def run(ctx: JobContext, params: AzureAdParams) -> None:
    secret = read_secret(params.client_secret, "param.client_secret")
    tally = Tally("Azure AD SAMAccountName Update")
    pool = await ctx.db.pool()
    async with pool.acquire() as conn:
        people = await conn.fetch(PEOPLE_SQL, list(params.statuses), SYSTEM)
        stored = await directorysync.load(conn, ctx.job_id)
        async with GraphClient(params.graph_url, params.login_url, params.tenant_id, params.client_id, secret,
                               secret_name=params.client_secret, settings=ctx.settings) as graph:  # fmt: skip
            job = _Run(ctx, params, graph, tally)
            unchanged = 0
            try:
                for p in people:
                    wanted = digest(
                        [p["login_id"], p["sis_id"], p["entra_id"] or params.upn_domain]
                    )
                    if p["id"] in stored and stored[p["id"]][1] == wanted:
                        unchanged += 1
                        continue
                    await job.person(p, wanted)
            finally:  # what Graph took is kept, whatever failed after
                if not params.dry_run:
                    await directorysync.save(conn, ctx.job_id, "", job.taken)
                    await conn.executemany(
                        "INSERT INTO sis.person_external_ids (person_id, system, value) VALUES ($1, $2, $3)"
                        " ON CONFLICT (person_id, system) DO UPDATE SET value = EXCLUDED.value",
                        [(pid, SYSTEM, uid) for pid, uid in job.linked],
                    )
    tally.processed = job.updated
    verb = "would update" if params.dry_run else "updated"
    tally.fact(
        f"{verb} {job.updated} cloud account(s) (mailNickname, employeeId); {job.matched} already matched; {unchanged} unchanged since the last run"
    )
    tally.fact(f"{job.on_premises} account(s) synced from on-premises AD need their SAMAccountName changed there: "
               "onPremisesSamAccountName is read-only through Microsoft Graph")  # fmt: skip
    tally.write(
        ctx,
        f"Azure AD SAMAccountName Update: {verb} {job.updated}, {job.on_premises} to change on-premises, {tally.failed} failed",
    )
    await send_results(
        ctx, await recipients(ctx, params.group or None, params.notify), ctx.output.summary, tally
    )
    if tally.failed:
        raise JobFailed(
            f"{tally.failed} account(s) could not be read or updated (see the output); the next run tries them again"
        )


job_type = JobType(
    name="exports.azure_ad_account_update",
    pool="integration",
    title="Azure AD SAMAccountName Update",
    description=(
        "Brings Entra ID (Azure AD) accounts in line with the SIS login ids through Microsoft "
        "Graph (PATCH /v1.0/users/{id}, client-credentials token): sets mailNickname and "
        "employeeId of cloud-only users. onPremisesSamAccountName is read-only through Graph "
        "(it is synced from on-premises Active Directory), so for users synced from there the job "
        "reports each SAMAccountName that differs from the SIS, to change in on-premises AD. "
        "Mails the results to the notification group."
    ),
    params=AzureAdParams,
    run=run,
    timeout_s=3600,
)
