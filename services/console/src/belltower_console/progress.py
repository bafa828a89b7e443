"""A long request's progress as NDJSON lines (an import of 100,000 jobs takes a while)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import msgspec

from .http import PROBLEM_TYPES, status_and_errors

_encode = msgspec.json.Encoder().encode


async def ndjson_progress(
    work: Callable[[Callable[[int, int], Awaitable[None]]], Awaitable[object]],
) -> AsyncIterator[bytes]:
    """Lines of ``{"progress": {"done", "total"}}`` while ``work`` runs, then its
    ``{"result": ...}``, or ``{"problem": ...}`` (an RFC 9457 document) if it failed: a long
    import's progress for a client that asked for ``application/x-ndjson``."""
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def progress(done: int, total: int) -> None:
        await queue.put(_encode({"progress": {"done": done, "total": total}}) + b"\n")

    async def run() -> None:
        try:
            await queue.put(_encode({"result": await work(progress)}) + b"\n")
        except Exception as exc:  # the stream has begun: the refusal is its last line
            status, detail, errors = status_and_errors(exc)
            slug, title = PROBLEM_TYPES.get(status, ("error", "Error"))
            body = {"type": f"urn:belltower:problem:{slug}", "title": title, "status": status}
            body |= {"detail": detail, "errors": errors}
            await queue.put(_encode({"problem": body}) + b"\n")
        finally:
            await queue.put(None)

    task = asyncio.create_task(run())
    try:
        while (line := await queue.get()) is not None:
            yield line
    finally:
        await task
