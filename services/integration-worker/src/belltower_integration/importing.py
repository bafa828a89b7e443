"""What the imports into the SIS share: validated mail parameters, one transaction that a dry
run rolls back, and the end of a run (its output, then the result mailed)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import msgspec

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
