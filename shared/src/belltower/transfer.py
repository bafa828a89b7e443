"""Export and import of job definitions as YAML or JSON documents.

One format for the console, the HTTP API and ``belltower jobs export/import``: a list of job
documents (the job spec plus its id, so a round trip changes nothing). YAML files hold one
document per ``---`` section or one list; JSON files hold a list or ``{"jobs": [...]}``.
Validation and applying happen in the scheduler's ``jobs.import`` operation, all or nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

import msgspec
import yaml

from .api import Job, JobDocument
from .errors import InvalidInput

Format = Literal["yaml", "json"]
FORMATS: tuple[Format, ...] = ("yaml", "json")


def document_of(job: Job) -> dict[str, Any]:
    """The exportable document of a stored job: every field a :class:`JobDocument` takes."""
    fields: dict[str, Any] = {}
    for name in JobDocument.__struct_fields__:
        if hasattr(job, name):
            fields[name] = getattr(job, name)
    doc = msgspec.convert(fields, JobDocument, from_attributes=True)
    return _plain(doc)


def documents_of(jobs: Iterable[Job]) -> list[dict[str, Any]]:
    """Every job's document, in a stable order (title, then id) so exports diff cleanly."""
    return [document_of(j) for j in sorted(jobs, key=lambda j: (j.title.lower(), j.id))]


def _plain(doc: JobDocument) -> dict[str, Any]:
    builtins = msgspec.to_builtins(doc)
    ordered = {"id": builtins.pop("id"), "title": builtins.pop("title")}
    ordered.update(builtins)
    return ordered


def dump(documents: Iterable[dict[str, Any]], fmt: Format) -> str:
    """Serialise documents; YAML as one document per job, JSON as a list."""
    docs = list(documents)
    if fmt == "json":
        return json.dumps(docs, indent=2, ensure_ascii=False) + "\n"
    if fmt == "yaml":
        if not docs:
            return "# no jobs\n"
        return yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True)
    raise InvalidInput("format", f"{fmt!r} is not an export format", "yaml or json")


def load(text: str, fmt: Format | None = None) -> list[Any]:
    """Parse an export back into a list of raw documents; the scheduler checks each one."""
    fmt = fmt or guess_format(text)
    try:
        if fmt == "json":
            data: Any = json.loads(text)
        elif fmt == "yaml":
            parsed = [d for d in yaml.safe_load_all(text) if d is not None]
            data = parsed[0] if len(parsed) == 1 and isinstance(parsed[0], list | dict) else parsed
        else:
            raise InvalidInput("format", f"{fmt!r} is not an import format", "yaml or json")
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise InvalidInput(
            "file", f"is not valid {fmt.upper()}: {exc}", "the output of an export"
        ) from None
    if isinstance(data, dict) and isinstance(data.get("jobs"), list):
        data = data["jobs"]
    elif isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise InvalidInput(
            "file", "holds neither a job document nor a list of them", "the output of an export"
        )
    return [_stringify_datetimes(d) for d in data]


def guess_format(text: str) -> Format:
    return "json" if text.lstrip()[:1] in ("[", "{") else "yaml"


def _stringify_datetimes(value: Any) -> Any:
    """YAML reads ISO timestamps as datetimes; the API decodes strings, so give it strings."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _stringify_datetimes(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stringify_datetimes(v) for v in value]
    return value
