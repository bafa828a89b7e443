"""Checks a OneRoster 1.2 CSV set against the binding before it leaves Belltower.

Every file: UTF-8, the binding's header in order (``metadata.*`` extension columns only to the
right), at least one data row, as many fields as the header, no line break inside a field; every
row: required values present, types (dates ``YYYY-MM-DD``, datetimes in UTC ``...Z``, years
``YYYY``, booleans ``true``/``false``), vocabularies, ``sourcedId`` unique in its file, ``status``
and ``dateLastModified`` blank in a bulk file and given in a delta one; across files: each
reference points at a record of the set (or, in a delta set, at one the receiver already has,
``known``); the manifest declares exactly the files sent. A problem names the file, the line
(the header is line 1) and the column.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

from belltower.errors import JobFailed

from .binding import (
    FILES,
    MANIFEST_FILES,
    MANIFEST_HEADER,
    MANIFEST_VERSION,
    MODES,
    ONEROSTER_VERSION,
    Column,
)

DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?Z$")
YEAR = re.compile(r"^\d{4}$")
SOURCED_ID = re.compile(r"^[^\s,]+$")
SHOWN = 20


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    column: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}, line {self.line}" + (
            f", column {self.column}" if self.column else ""
        )
        return f"{where}: {self.message}"


class InvalidExport(JobFailed):
    """The files would not pass the binding; nothing was written or sent."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        shown = "; ".join(str(p) for p in problems[:SHOWN])
        more = f" (and {len(problems) - SHOWN} more)" if len(problems) > SHOWN else ""
        super().__init__(
            f"the OneRoster export fails the CSV binding 1.2.1 in {len(problems)} place(s): "
            f"{shown}{more}"
        )


@dataclass
class _Parsed:
    rows: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    readable: bool = True  # False: the header is wrong, so its ids say nothing


def _type_problem(col: Column, value: str) -> str | None:
    kind = col.kind
    if kind in ("status", "enum"):
        if value not in col.vocabulary:
            return f"{value!r} is not one of {', '.join(sorted(col.vocabulary))}"
    elif kind == "bool":
        if value not in ("true", "false"):
            return f"{value!r} is not true or false"
    elif kind == "date":
        if not DATE.match(value) or not _parses(date.fromisoformat, value):
            return f"{value!r} is not a date YYYY-MM-DD"
    elif kind == "datetime":
        if not DATETIME.match(value) or not _parses(datetime.fromisoformat, value):
            return f"{value!r} is not a UTC date-time YYYY-MM-DDTHH:MM:SS[.sss]Z"
    elif kind == "year":
        if not YEAR.match(value):
            return f"{value!r} is not a year YYYY"
    elif kind in ("id", "ref") and not SOURCED_ID.match(value):
        return f"{value!r} is not a sourcedId (no spaces or commas)"
    elif kind == "refs" and not all(SOURCED_ID.match(v.strip()) for v in value.split(",")):
        return f"{value!r} is not a comma-separated list of sourcedIds"
    return None


def _parses(parse: object, value: str) -> bool:
    try:
        parse(value)  # type: ignore[operator]
    except ValueError:
        return False
    return True


def _read(name: str, data: bytes, problems: list[Problem]) -> tuple[list[str], list[list[str]]]:
    file = f"{name}.csv"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problems.append(Problem(file, 0, "", f"is not UTF-8 ({exc.reason})"))
        return [], []
    try:
        records = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        problems.append(Problem(file, 0, "", f"is not valid CSV: {exc}"))
        return [], []
    if not records:
        problems.append(Problem(file, 1, "", "is empty; the header line is required"))
        return [], []
    return records[0], records[1:]


def _check_header(
    file: str, got: list[str], spec: tuple[Column, ...], problems: list[Problem]
) -> bool:
    want = [c.name for c in spec]
    if got[: len(want)] != want:
        for i, name in enumerate(want):
            if i >= len(got) or got[i] != name:
                found = repr(got[i]) if i < len(got) else "nothing"
                problems.append(
                    Problem(file, 1, name, f"column {i + 1} must be {name!r}, found {found}")
                )
                break
        return False
    extra = [c for c in got[len(want) :] if not c.startswith("metadata.")]
    if extra:
        problems.append(Problem(file, 1, extra[0], "extension columns must be named metadata.*"))
    if len(set(got)) != len(got):
        problems.append(Problem(file, 1, "", "a column name is repeated"))
    return True


def _check_row(file: str, line: int, row: dict[str, str], spec: tuple[Column, ...], mode: str,
               problems: list[Problem]) -> None:  # fmt: skip
    for col in spec:
        value = row[col.name]
        if "\r" in value or "\n" in value:
            problems.append(Problem(file, line, col.name, "a line break inside a field"))
            continue
        if col.name in ("status", "dateLastModified"):
            if mode == "bulk" and value:
                problems.append(Problem(file, line, col.name, "must be blank in a bulk file"))
                continue
            if mode == "delta" and not value:
                problems.append(Problem(file, line, col.name, "is required in a delta file"))
                continue
        if not value:
            if col.required:
                problems.append(Problem(file, line, col.name, "is required and empty"))
            continue
        message = _type_problem(col, value)
        if message:
            problems.append(Problem(file, line, col.name, message))


def _check_file(name: str, data: bytes, mode: str, problems: list[Problem]) -> _Parsed:
    file = f"{name}.csv"
    spec = FILES[name]
    parsed = _Parsed()
    got, records = _read(name, data, problems)
    if not got or not _check_header(file, got, spec, problems):
        parsed.readable = False
        return parsed
    if not records:
        problems.append(Problem(file, 2, "", "has no data rows (send the file as absent instead)"))
    seen: dict[str, int] = {}
    for n, values in enumerate(records, start=2):
        if values:
            parsed.ids.add(values[0])
        if len(values) != len(got):
            problems.append(
                Problem(file, n, "", f"has {len(values)} fields, the header {len(got)}")
            )
            continue
        row = dict(zip(got, values, strict=True))
        _check_row(file, n, row, spec, mode, problems)
        key = values[0]
        if key in seen:
            problems.append(Problem(file, n, spec[0].name, f"{key!r} repeats line {seen[key]}"))
        else:
            seen[key] = n
        parsed.rows.append((n, row))
    return parsed


def _check_manifest(
    data: bytes | None, sent: Iterable[str], problems: list[Problem]
) -> dict[str, str]:
    file = "manifest.csv"
    if data is None:
        problems.append(Problem(file, 0, "", "is missing"))
        return {}
    got, records = _read("manifest", data, problems)
    if got and got != list(MANIFEST_HEADER):
        problems.append(Problem(file, 1, "", f"the header must be {','.join(MANIFEST_HEADER)}"))
        return {}
    props = {r[0]: (n, r[1] if len(r) > 1 else "") for n, r in enumerate(records, start=2) if r}
    for key, want in (
        ("manifest.version", MANIFEST_VERSION),
        ("oneroster.version", ONEROSTER_VERSION),
    ):
        if props.get(key, (0, ""))[1] != want:
            problems.append(
                Problem(file, props.get(key, (0, ""))[0], "value", f"{key} must be {want}")
            )
    modes: dict[str, str] = {}
    for name in MANIFEST_FILES:
        line, value = props.get(f"file.{name}", (0, ""))
        if value not in MODES:
            problems.append(
                Problem(file, line, "value", f"file.{name} must be one of {', '.join(MODES)}")
            )
        modes[name] = value
    sent = set(sent)
    for name in MANIFEST_FILES:
        declared = modes[name] in ("bulk", "delta")
        if declared != (name in sent):
            line = props.get(f"file.{name}", (0, ""))[0]
            say = "declared but not sent" if declared else "sent but declared absent"
            problems.append(Problem(file, line, "value", f"{name}.csv is {say}"))
    for key in ("source.systemName", "source.systemCode"):
        if key not in props:
            problems.append(Problem(file, 0, "propertyName", f"{key} is missing"))
    return modes


def _check_references(parsed: Mapping[str, _Parsed], known: Mapping[str, set[str]],
                      problems: list[Problem]) -> None:  # fmt: skip
    ids = {name: p.ids | set(known.get(name, ())) for name, p in parsed.items()}
    for name, p in parsed.items():
        refs = [
            c
            for c in FILES[name]
            if c.kind in ("ref", "refs") and (c.target not in parsed or parsed[c.target].readable)
        ]
        for line, row in p.rows:
            for col in refs:
                value = row[col.name]
                targets = [v.strip() for v in value.split(",")] if col.kind == "refs" else [value]
                pool = ids.get(col.target, set(known.get(col.target, ())))
                for target in targets:
                    if target and target not in pool:
                        problems.append(Problem(f"{name}.csv", line, col.name,
                                                f"{target!r} is not in {col.target}.csv"))  # fmt: skip


def problems_in(
    files: Mapping[str, bytes], known: Mapping[str, set[str]] | None = None
) -> list[Problem]:
    """Every problem in a OneRoster CSV set: ``files`` maps ``manifest.csv``, ``users.csv``... to
    their bytes; ``known`` gives, per file, the sourcedIds a delta set may refer to without
    sending them again."""
    problems: list[Problem] = []
    sent = {n.removesuffix(".csv") for n in files if n != "manifest.csv"}
    unknown = sorted(n for n in sent if n not in FILES)
    for name in unknown:
        problems.append(Problem(f"{name}.csv", 0, "", "is not a file this export may send"))
    modes = _check_manifest(files.get("manifest.csv"), sent, problems)
    parsed = {
        name: _check_file(name, files[f"{name}.csv"], modes.get(name, "bulk"), problems)
        for name in FILES
        if name in sent
    }
    _check_references(parsed, known or {}, problems)
    return problems


def check(files: Mapping[str, bytes], known: Mapping[str, set[str]] | None = None) -> None:
    """Raise ``InvalidExport`` naming each file, line and column that breaks the binding."""
    problems = problems_in(files, known)
    if problems:
        raise InvalidExport(problems)
