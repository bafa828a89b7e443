"""Telling people a job ran: a notification group's members and/or plain addresses, by e-mail."""

from __future__ import annotations

from belltower import sis
from belltower.errors import JobFailed, Unavailable
from belltower.jobtypes import JobContext

from .report import Tally


async def recipients(ctx: JobContext, group: str | None, addresses: list[str]) -> list[str]:
    """The e-mail addresses of ``group``'s members who want e-mail, plus ``addresses``."""
    found = list(addresses)
    if group:
        pool = await ctx.db.pool()
        for member in await sis.group_members(pool, group):
            if member.by_email and member.contact.email and member.contact.email not in found:
                found.append(member.contact.email)
    return found


async def send_results(ctx: JobContext, to: list[str], subject: str, tally: Tally) -> None:
    """Mail the run's output to ``to`` (one message); the output says whom it went to."""
    if not to:
        return
    try:
        await ctx.mailer.send(to, subject, ctx.output.text, ctx.output.html_text)
    except Unavailable as exc:
        raise JobFailed(
            f"the work is done but the results were not mailed: {exc.message}"
        ) from None
    ctx.output.line(f"results sent to {len(to)} recipient(s)")
