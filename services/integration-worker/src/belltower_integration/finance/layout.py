"""Partner file layouts declared as data: a list of fields (name, width or format, SIS source).

Each partner's layout lives in one module under ``finance/layouts/``, so a partner's published
specification can replace Belltower's own without touching the jobs. The same declaration
writes a file, reads one back with every row validated (an error names the file, the row and
the field), and prints itself as the table in docs/billing-and-aid.md.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

Kind = Literal["text", "int", "money", "date", "code"]

MAX_ROWS = 200_000
"""A partner file larger than this is refused rather than read into memory."""


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a record: its name in the file, where its value comes from or goes to."""

    name: str
    source: str
    """The key of the row a job builds (an SIS column, usually ``table.column`` in the docs)."""
    kind: Kind = "text"
    width: int = 0
    """Characters in a fixed-width file; 0 in a delimited one."""
    required: bool = True
    choices: tuple[str, ...] = ()
    doc: str = ""


class LayoutError(ValueError):
    """A value does not fit its field; the message names the row and the field."""


@dataclass(frozen=True, slots=True)
class Layout:
    """A file of one record type: delimited with a header line, or fixed width."""

    partner: str
    kind: str
    title: str
    fields: tuple[Field, ...]
    delimiter: str | None = ","
    """None: fixed width (each field padded to its width, one record per line)."""
    own: bool = True
    """Belltower's own layout (the partner publishes no specification)."""
    version: str = "belltower-1"

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    # Writing -------------------------------------------------------------------------------

    def render(
        self, rows: Iterable[Mapping[str, Any]], fields: Iterable[Field] | None = None
    ) -> str:
        """The file's text (CRLF line ends); ``fields`` chooses and orders a custom subset."""
        chosen = tuple(fields) if fields is not None else self.fields
        if self.delimiter is None:
            lines = []
            for n, row in enumerate(rows, 1):
                lines.append("".join(_fixed(f, row.get(f.source), n) for f in chosen))
            return "".join(f"{line}\r\n" for line in lines)
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=self.delimiter, lineterminator="\r\n")
        writer.writerow([f.name for f in chosen])
        for n, row in enumerate(rows, 1):
            writer.writerow([_text(f, row.get(f.source), n) for f in chosen])
        return buffer.getvalue()

    # Reading -------------------------------------------------------------------------------

    def parse(self, text: str, file_name: str) -> tuple[list[dict[str, Any]], list[str]]:
        """The rows (keyed by each field's ``source``, values typed) and every problem found."""
        records, problems = self._split(text, file_name)
        rows: list[dict[str, Any]] = []
        for line, values in records:
            row: dict[str, Any] = {"_line": line}
            for f, raw in zip(self.fields, values, strict=True):
                try:
                    row[f.source] = _value(f, raw.strip())
                except LayoutError as exc:
                    problems.append(f"{file_name} row {line} field {f.name}: {exc}")
            rows.append(row)
        return rows, problems

    def _split(self, text: str, file_name: str) -> tuple[list[tuple[int, list[str]]], list[str]]:
        lines = text.splitlines()
        if len(lines) > MAX_ROWS + 1:
            return [], [f"{file_name}: {len(lines)} lines, more than {MAX_ROWS} records"]
        out: list[tuple[int, list[str]]] = []
        problems: list[str] = []
        if self.delimiter is None:
            width = sum(f.width for f in self.fields)
            for n, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                if len(line) != width:
                    problems.append(
                        f"{file_name} row {n}: {len(line)} characters, expected {width}"
                    )
                    continue
                values, at = [], 0
                for f in self.fields:
                    values.append(line[at : at + f.width])
                    at += f.width
                out.append((n, values))
            return out, problems
        reader = csv.reader(lines, delimiter=self.delimiter)
        try:
            header = [h.strip() for h in next(reader, [])]
            if header != self.names:
                return [], [
                    f"{file_name} row 1: header {self.delimiter.join(header)!r}, "
                    f"expected {self.delimiter.join(self.names)!r}"
                ]
            for values in reader:
                n = reader.line_num
                if not any(v.strip() for v in values):
                    continue
                if len(values) != len(self.fields):
                    problems.append(
                        f"{file_name} row {n}: {len(values)} fields, expected {len(self.fields)}"
                    )
                    continue
                out.append((n, values))
        except csv.Error as exc:
            problems.append(f"{file_name} row {reader.line_num}: not valid delimited text ({exc})")
        return out, problems

    # Documentation -------------------------------------------------------------------------

    def markdown(self) -> str:
        """The layout as a Markdown table (docs/billing-and-aid.md is built from these)."""
        shape = (
            "fixed width"
            if self.delimiter is None
            else f"delimited by {self.delimiter!r}, header line"
        )
        owner = (
            "Belltower's own layout (no public partner specification)"
            if self.own
            else "partner's layout"
        )
        head = f"**{self.title}** ({shape}; {owner}, version `{self.version}`)\n\n"
        cols = "| # | field | format | width | required | source | notes |\n|---|---|---|---|---|---|---|\n"
        body = "".join(
            f"| {i} | `{f.name}` | {f.kind}{' (' + ', '.join(f.choices) + ')' if f.choices else ''} "
            f"| {f.width or ''} | {'yes' if f.required else 'no'} | `{f.source}` | {f.doc} |\n"
            for i, f in enumerate(self.fields, 1)
        )
        return head + cols + body


def _plain(f: Field, value: Any, row: int, *, fixed: bool) -> str:
    """A value as the field's text, before any padding."""
    if value is None or value == "":
        if f.required:
            raise LayoutError(f"row {row} field {f.name}: a value is required")
        return ""
    if f.kind == "money":
        return f"{Decimal(value).quantize(Decimal('0.01'))}"
    if f.kind == "date":
        day = value.date() if isinstance(value, datetime) else value
        return day.strftime("%Y%m%d") if fixed else day.isoformat()
    text = " ".join(str(value).split()) if f.kind == "text" else str(value)
    if f.choices and text not in f.choices:
        raise LayoutError(
            f"row {row} field {f.name}: {text!r} is not one of {', '.join(f.choices)}"
        )
    return text


def _text(f: Field, value: Any, row: int) -> str:
    return _plain(f, value, row, fixed=False)


def _fixed(f: Field, value: Any, row: int) -> str:
    text = _plain(f, value, row, fixed=True)
    if f.kind in ("money", "int"):
        if len(text) > f.width:
            raise LayoutError(f"row {row} field {f.name}: {text} does not fit {f.width} characters")
        return text.rjust(f.width)
    return text[: f.width].ljust(f.width)


def _value(f: Field, raw: str) -> Any:
    """A field's text read back as its kind; LayoutError says what was wrong."""
    if raw == "":
        if f.required:
            raise LayoutError("a value is required")
        return None
    if f.kind == "money":
        try:
            amount = Decimal(raw)
        except InvalidOperation:
            raise LayoutError(f"{raw!r} is not an amount (like 125.00 or -40.50)") from None
        if (
            not amount.is_finite()
            or amount != amount.quantize(Decimal("0.01"))
            or abs(amount) >= 10**10
        ):
            raise LayoutError(f"{raw!r} is not an amount with at most two decimals")
        return amount
    if f.kind == "int":
        if not raw.lstrip("-").isdigit() or len(raw) > 9:
            raise LayoutError(f"{raw!r} is not a whole number")
        return int(raw)
    if f.kind == "date":
        for form in ("%Y-%m-%d", "%Y%m%d"):
            try:
                return datetime.strptime(raw, form).date()
            except ValueError:
                continue
        raise LayoutError(f"{raw!r} is not a date (YYYY-MM-DD or YYYYMMDD)")
    if f.choices and raw not in f.choices:
        raise LayoutError(f"{raw!r} is not one of {', '.join(f.choices)}")
    if any(ord(c) < 32 or ord(c) == 127 for c in raw) or len(raw) > 200:
        raise LayoutError("control characters or more than 200 characters")
    return raw


__all__ = ["MAX_ROWS", "Field", "Layout", "LayoutError", "date"]
