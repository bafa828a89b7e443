"""``people.jotform_import``: the SONIS Auto Jotform Import.

Reads the submissions of a Jotform form (:mod:`..jotform`) made in the last ``lookback_days``
and creates a person for each new one (status ``prospect`` by default): name, e-mail, and when
the form asks them, cell phone and birth date. Fields are found by their Jotform type (the
form's full-name, e-mail, phone and birth-date fields) or, with ``fields``, by the questions'
unique names. The person's SIS id is derived from the e-mail address (as Import Names does) and
the submission id is kept as their ``person_external_ids`` entry (system ``jotform``). A
submission whose e-mail or SIS id the SIS has already is skipped, so the same occurrence run
again (or the next run over the same days) creates no one twice. Deleted submissions are left
out. One transaction; a dry run counts and rolls back; the result can be mailed.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any

import msgspec

from belltower.fences import PublicUrl
from belltower.jobtypes import JobContext, JobType

from .. import importing
from ..jotform import JotformClient
from ..report import Tally
from ..secrets import SecretName, read_secret

QuestionName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_]{1,100}$")]
TYPES = {"control_fullname": "name", "control_email": "email", "control_phone": "phone",
         "control_birthdate": "birth_date"}  # fmt: skip


class Fields(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Which question holds each SIS field, by the question's unique name (unset: by type)."""

    name: QuestionName | None = None
    first_name: QuestionName | None = None
    last_name: QuestionName | None = None
    email: QuestionName | None = None
    phone: QuestionName | None = None
    birth_date: QuestionName | None = None

    def named(self) -> dict[str, str]:
        return {f: v for f in self.__struct_fields__ if (v := getattr(self, f)) is not None}


class JotformImportParams(msgspec.Struct, forbid_unknown_fields=True):
    form_id: Annotated[str, msgspec.Meta(pattern=r"^\d{1,20}$", description="The form's id")]
    base_url: Annotated[
        PublicUrl,
        msgspec.Meta(description="https://api.jotform.com (or eu-api / hipaa-api.jotform.com)"),
    ] = "https://api.jotform.com"
    api_key_secret: Annotated[
        SecretName, msgspec.Meta(description="Secret holding the Jotform API key")
    ] = "jotform-api-key"
    fields: Fields = msgspec.field(default_factory=Fields)
    status: importing.Status = "prospect"
    lookback_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] = 30
    max_submissions: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 5000
    dry_run: Annotated[bool, msgspec.Meta(description="Check and count; create no one")] = False
    group: importing.Group | None = None
    notify: importing.Addresses = []


def _text(value: Any) -> str:
    return " ".join(str(value or "").split())


def values(submission: dict[str, Any], fields: dict[str, str]) -> dict[str, str]:
    """first_name, last_name, email, phone, birth_date (YYYY-MM-DD) of one submission."""
    by_name = {v.get("name"): v for v in (submission.get("answers") or {}).values()}
    found: dict[str, Any] = {}
    for answer in (submission.get("answers") or {}).values():
        kind = TYPES.get(str(answer.get("type")))
        if kind and kind not in found:
            found[kind] = answer.get("answer")
    for field, question in fields.items():
        found[field] = (by_name.get(question) or {}).get("answer")
    out: dict[str, str] = {}
    name = found.get("name")
    if isinstance(name, dict):
        out["first_name"], out["last_name"] = _text(name.get("first")), _text(name.get("last"))
    for field in ("first_name", "last_name", "email"):
        if field in found:
            out[field] = _text(found[field])
    phone = found.get("phone")
    out["phone"] = _text(phone.get("full") if isinstance(phone, dict) else phone)
    born = found.get("birth_date")
    if isinstance(born, dict):
        try:
            out["birth_date"] = date(int(born["year"]), int(born["month"]),
                                     int(born["day"])).isoformat()  # fmt: skip
        except (KeyError, ValueError, TypeError):
            out["birth_date"] = "?"
    return out


async def run(ctx: JobContext, params: JotformImportParams) -> None:
    key = read_secret(params.api_key_secret, "param.api_key_secret")
    since = (ctx.scheduled_for - timedelta(days=params.lookback_days)).strftime("%Y-%m-%d %H:%M:%S")
    tally = Tally("Jotform import")
    submissions: list[dict[str, Any]] = []
    async with JotformClient(params.base_url, key, key_name=f"the secret {params.api_key_secret!r}",
                             settings=ctx.settings) as client:  # fmt: skip
        async for item in client.submissions(params.form_id, since, params.max_submissions):
            submissions.append(item)
    pool = await ctx.db.pool()
    async with pool.acquire() as conn, importing.transaction(conn, params.dry_run):
        await _create(ctx, conn, params, submissions, tally)
    tally.fact(
        f"form {params.form_id}: {len(submissions)} submissions since {since} (Jotform's time)"
    )
    summary = (
        f"Jotform import{' (dry run, nothing created)' if params.dry_run else ''}: "
        f"{tally.processed} created, {tally.skipped} skipped, {tally.failed} refused"
    )
    await importing.finish(ctx, tally, summary, params.group, params.notify)


async def _create(ctx: JobContext, conn: Any, params: JotformImportParams,
                  submissions: list[dict[str, Any]], tally: Tally) -> None:  # fmt: skip
    for s in submissions:
        record = f"submission {s.get('id')}"
        if s.get("status", "ACTIVE") != "ACTIVE":
            continue
        v = values(s, params.fields.named())
        if v.get("birth_date") == "?":
            tally.fail(record, "the birth date is not a date")
            continue
        born = date.fromisoformat(v["birth_date"]) if v.get("birth_date") else None
        person = importing.NewPerson(
            record, v.get("first_name", ""), v.get("last_name", ""), v.get("email", ""),
            "jotform", str(s.get("id")), phone=v.get("phone", ""), birth_date=born,
        )  # fmt: skip
        await importing.add_once(conn, person, params.status, ctx.scheduled_for.date(), tally)


job_type = JobType(
    name="people.jotform_import",
    pool="integration",
    title="Auto Jotform Import",
    description=(
        "Imports the recent submissions of a Jotform form through Jotform's API as new people "
        "(prospects by default): name, e-mail, phone, birth date; people the SIS has already "
        "are skipped, so a repeat creates no one twice. Has a dry run and mails the result."
    ),
    params=JotformImportParams,
    run=run,
    timeout_s=1800,
)
