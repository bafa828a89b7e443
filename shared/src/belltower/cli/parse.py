"""The job flags other than the schedule (parameters, retention, result mail, retries, chaining)
read into the values a JobSpec holds; each refusal names the flag."""

from __future__ import annotations

from collections.abc import Sequence

from ..api import After, RetryBackoff
from ..errors import InvalidInput
from ..events import EmailOn
from ..schedule import parse_every


def parse_params(pairs: Sequence[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(
                "param", f"{pair!r} is not KEY=VALUE", "KEY=VALUE, e.g. --param days=7"
            )
        params[key.strip()] = value
    return params


def parse_keep(text: str | None) -> int | None:
    if text is None or text.strip().lower() in {"forever", "never"}:
        return None
    named = {"week": 7, "month": 31, "year": 366}
    if text.strip().lower() in named:
        return named[text.strip().lower()]
    try:
        days = int(text)
    except ValueError:
        days = 0
    if days < 1:
        raise InvalidInput(
            "keep_history",
            f"{text!r} is not a number of days",
            "days (e.g. 30), week, month, year or forever",
        )
    return days


def parse_emails(values: list[str]) -> list[str]:
    """Addresses from repeated ``--email`` flags, each of which may hold a comma-separated list."""
    return [a.strip() for v in values for a in v.replace(";", ",").split(",") if a.strip()]


def parse_email_on(text: str) -> EmailOn:
    value = text.strip().lower()
    if value not in ("default", "always", "failure"):
        raise InvalidInput("email_on", f"{text!r} is not a choice", "always, failure or default")
    return value  # type: ignore[return-value]


def parse_backoff(text: str) -> RetryBackoff:
    """``INITIAL,FACTOR,MAX`` as in ``10s,2,10m``."""
    parts = [p.strip() for p in text.split(",")]
    try:
        if len(parts) != 3:
            raise ValueError
        return RetryBackoff(
            initial_s=float(parse_every(parts[0])) if parts[0] not in ("0", "0s") else 0.0,
            factor=float(parts[1]),
            max_s=float(parse_every(parts[2])),
        )
    except (ValueError, InvalidInput):
        raise InvalidInput(
            "retry_backoff", f"{text!r} is not INITIAL,FACTOR,MAX", "e.g. 10s,2,10m"
        ) from None


def parse_after(text: str) -> After:
    """``JOB_ID[:on][+delay]``, e.g. ``3f2a...:succeeded+10m``."""
    head, _, delay = text.partition("+")
    job, _, on = head.partition(":")
    on = on.strip() or "succeeded"
    if on not in ("succeeded", "failed", "finished"):
        raise InvalidInput(
            "after", f"{on!r} is not when to run", "JOB_ID[:succeeded|failed|finished][+DELAY]"
        )
    if not job.strip():
        raise InvalidInput(
            "after", f"{text!r} names no job", "JOB_ID[:on][+DELAY], e.g. ID:succeeded+10m"
        )
    return After(
        job=job.strip(),
        on=on,  # type: ignore[arg-type]
        delay_s=float(parse_every(delay.strip())) if delay.strip() else 0.0,
    )
