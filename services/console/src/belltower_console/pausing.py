"""The body of ``POST /jobs/{id}/pause``: why the job is paused (optional)."""

from __future__ import annotations

from typing import Any

import msgspec

from belltower.api import PAUSE_NOTE_MAX
from belltower.errors import InvalidInput


class PauseBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Why the job is paused: one line shown with the pause in the console and `jobs show`."""

    note: str | None = None


def pause_note_of(body: Any) -> str | None:
    """The note of a pause request's body (none, ``{}`` or ``{"note": ...}``); the scheduler
    checks its content, this refuses what is not that shape."""
    if body is None:
        return None
    try:
        note = msgspec.convert(body, PauseBody).note
    except msgspec.ValidationError as exc:
        raise InvalidInput(
            "note",
            str(exc),
            f'a body {{"note": "..."}} of one line, at most {PAUSE_NOTE_MAX} characters',
        ) from None
    return note
