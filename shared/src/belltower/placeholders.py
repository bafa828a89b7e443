"""Placeholder texts: a short text built from a record's named parts, e.g. a section's title
``{course_code}-{section_code} {course_title}``.

They are data, not code, and never reach ``str.format`` or Jinja: the braces are read with
``string.Formatter().parse`` only, each field must be exactly one of the names the parameter
accepts (so ``{course_title.__class__}``, ``{period[0]}``, ``{0}``, ``{}``, a conversion ``!r``
and a format spec ``:>9999`` are all refused), and rendering is plain concatenation of the
literal text and the values. A parameter declares its names in its JSON Schema ``format``
(``belltower-placeholders:a,b,c``, see ``format_of``), so the scheduler refuses a bad text when
the job is saved, naming the parameter and the placeholders it accepts; the job parses it again
when it runs.
"""

from __future__ import annotations

import re
import string
from collections.abc import Collection, Mapping

from .errors import InvalidInput

FORMAT = "belltower-placeholders"
MAX_CHARS = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SPACES = re.compile(r"\s+")
_EDGES = " -\u2013\u2014,/|:"

Piece = tuple[str, str | None]
"""Literal text, then the placeholder that follows it (None at the end)."""


def format_of(names: Collection[str]) -> str:
    """The JSON Schema ``format`` of a parameter accepting these placeholders."""
    return f"{FORMAT}:{','.join(names)}"


def names_of(fmt: str) -> tuple[str, ...] | None:
    """The placeholders a ``format`` accepts, or None if it is not a placeholder format."""
    prefix, sep, names = fmt.partition(":")
    if prefix != FORMAT or not sep:
        return None
    return tuple(n for n in names.split(",") if n)


def form(names: Collection[str]) -> str:
    """What an editor may write, for error messages."""
    listed = ", ".join("{" + n + "}" for n in names)
    return (
        f"text with the placeholders {listed} (each exactly as written; '{{{{' and '}}}}' for "
        f"literal braces), at most {MAX_CHARS} characters"
    )


def parse(source: str, names: Collection[str], field: str) -> tuple[Piece, ...]:
    """The pieces of ``source``; refused naming ``field`` and the accepted placeholders if it
    uses anything but those names, plainly."""
    accepted = form(names)
    shown = source if len(source) <= 60 else source[:57] + "..."
    if not source.strip():
        raise InvalidInput(field, "the text is empty", accepted)
    if len(source) > MAX_CHARS:
        raise InvalidInput(field, f"the text is longer than {MAX_CHARS} characters", accepted)
    if _CONTROL.search(source):
        raise InvalidInput(field, f"{shown!r} contains a control character", accepted)
    try:
        parsed = list(string.Formatter().parse(source))
    except ValueError as exc:
        raise InvalidInput(field, f"{shown!r} does not parse: {exc}", accepted) from None
    pieces: list[Piece] = []
    for literal, name, spec, conversion in parsed:
        if name is None:
            pieces.append((literal, None))
            continue
        if name == "" or name.isdigit():
            why = "a positional placeholder {" + name + "} is not allowed"
        elif any(c in name for c in ".[]"):
            why = "{" + name + "} reaches into a value (attribute or index access is not allowed)"
        elif conversion is not None or spec:
            why = "{" + name + "} has a conversion or format spec (not allowed)"
        elif name not in names:
            why = "{" + name + "} is not a placeholder this text accepts"
        else:
            pieces.append((literal, name))
            continue
        raise InvalidInput(field, f"{shown!r}: {why}", accepted)
    return tuple(pieces)


def render(pieces: tuple[Piece, ...], values: Mapping[str, object]) -> str:
    """The text with each placeholder's value (a missing one: empty); runs of spaces become one,
    and spaces and separators (- – — , / | :) left at either end by a missing part are trimmed."""
    out: list[str] = []
    for literal, name in pieces:
        out.append(literal)
        if name is not None:
            value = values.get(name)
            out.append("" if value is None else str(value))
    return _SPACES.sub(" ", "".join(out)).strip(_EDGES)
