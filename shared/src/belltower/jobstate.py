"""Job state shared by the CLI, the console and the scheduler: the pause note's check."""

from __future__ import annotations

import unicodedata

from .api import PAUSE_NOTE_MAX
from .errors import InvalidInput

MAX_RUNS_LIMIT = 10_000
"""Each dispatch of a job with max runs counts its occurrences in the ledger: bounded, so is that."""
MAX_FAILURES_LIMIT = 1_000
"""The most consecutive failed runs ``alert_after_failures`` / ``pause_after_failures`` may wait for."""

NOTE_FORM = (
    f"one line of printable text, at most {PAUSE_NOTE_MAX} characters, "
    "e.g. 'SIS upgrade until Monday'"
)


def check_pause_note(note: str | None) -> str | None:
    """The note stripped, None when empty; refuses one too long or with a control character."""
    if note is None or not note.strip():
        return None
    note = note.strip()
    if len(note) > PAUSE_NOTE_MAX:
        raise InvalidInput(
            "note",
            f"is {len(note)} characters long",
            NOTE_FORM,
        )
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") for ch in note):
        raise InvalidInput(
            "note",
            "contains a control or format character (NUL, CR, LF, a bidi override, ...)",
            NOTE_FORM,
        )
    return note
