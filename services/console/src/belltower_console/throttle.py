"""Login throttling by address and by account, with exponential back-off (HTTP 429).

A few failed logins are free; after that each further failure doubles the wait before the next
try is heard, counted from the last failure. The wait for an account is capped low (a stranger
can slow a login down, never lock anyone out); the wait for an address grows much longer, so
guessing from one place is slow. Failures are read from the audit log, so every replica of the
console sees the same count. A successful login, or an admin setting a new password, starts the
account's count afresh. A refused (throttled) try is recorded but is not a failure: waiting out
the back-off is enough.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from .errors import Throttled

if TYPE_CHECKING:
    from .actions import Console

WINDOW = timedelta(hours=1)
"""Failures older than this are forgotten."""
ACCOUNT_FREE, ACCOUNT_BASE_S, ACCOUNT_MAX_S = 5, 1.0, 60.0
ADDRESS_FREE, ADDRESS_BASE_S, ADDRESS_MAX_S = 20, 1.0, 900.0


def backoff(failures: int, free: int, base_s: float, max_s: float) -> float:
    """Seconds to wait after ``failures`` failures: none for the free ones, then doubling."""
    if failures < free:
        return 0.0
    return min(base_s * 2 ** (failures - free), max_s)


async def check(console: Console, username: str, client: str | None, action: str = "login") -> None:
    """Raise Throttled, and audit the refusal, when this account or this address must wait
    before trying again (``action``: the failures counted, e.g. ``oneroster.token`` for the
    OneRoster clients' token requests)."""
    store = console.store
    now = datetime.now(UTC)
    waits = []
    count, last = await store.failed_logins_for_account(username, WINDOW, action)
    if last is not None:
        wait = backoff(count, ACCOUNT_FREE, ACCOUNT_BASE_S, ACCOUNT_MAX_S)
        waits.append(((last + timedelta(seconds=wait)) - now).total_seconds())
    if client:
        count, last = await store.failed_logins_from(client, WINDOW, action)
        if last is not None:
            wait = backoff(count, ADDRESS_FREE, ADDRESS_BASE_S, ADDRESS_MAX_S)
            waits.append(((last + timedelta(seconds=wait)) - now).total_seconds())
    longest = max(waits, default=0.0)
    if longest > 0:
        seconds = math.ceil(longest)
        what = "logins" if action == "login" else "tries"
        await console.audit(
            None,
            client,
            action,
            actor=username,
            outcome="denied",
            detail=f"throttled after repeated failed {what}: retry in {seconds} s",
        )
        raise Throttled(
            f"too many failed {what}: try again in {seconds} s"
            + (" (an admin can set a new password)" if action == "login" else ""),
            seconds,
        )
