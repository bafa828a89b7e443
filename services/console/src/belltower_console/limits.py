"""What the console refuses before any handler sees a request: bodies over the size limit (413),
JSON nested too deep, text no name may hold, query strings with NUL or control characters and
YAML alias bombs (422 naming the field). Each refusal is a problem document. The pages' form
posts get the same text checks (:func:`form_problems`), answered as a page.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qsl

import yaml
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from belltower.api import FieldError
from belltower.errors import InvalidInput

from . import oneroster
from .http import problem

IMPORT_PATHS = frozenset({"/api/v1/import", "/transfer"})
"""Where job exports are uploaded: bounded by BELLTOWER_CONSOLE_MAX_IMPORT_BYTES."""
MAX_JSON_DEPTH = 32
MAX_YAML_DEPTH = 32
MAX_YAML_NODES = 100_000
"""A YAML import may hold this many values once every alias is expanded."""

NAME_FIELDS = frozenset({"title", "username", "name", "job_title"})
"""Keys whose values are one-line names: no control character at all (CR/LF included)."""


def bad_text(value: str, one_line: bool) -> str | None:
    """Why ``value`` cannot be stored as text, or None: NUL, a lone surrogate, or (in a name,
    or anywhere but tab/CR/LF) a control character."""
    for ch in value:
        code = ord(ch)
        if code == 0:
            return "contains a NUL character"
        if 0xD800 <= code <= 0xDFFF:
            return "contains a lone surrogate (not valid Unicode text)"
        if (one_line or ch not in "\t\r\n") and unicodedata.category(ch) == "Cc":
            return f"contains the control character U+{code:04X}"
        if one_line and ch in "\u2028\u2029":
            return f"contains the line separator U+{code:04X}"
    return None


def text_problems(value: Any, path: str = "", depth: int = 0) -> Iterator[FieldError]:
    """Every string in a parsed JSON value (keys too) that cannot be stored, by dotted path.
    Iterative over the nesting the depth check allows."""
    stack: list[tuple[Any, str, int]] = [(value, path, depth)]
    while stack:
        item, where, level = stack.pop()
        if level > MAX_JSON_DEPTH:
            yield FieldError(
                field=where or "body",
                message=f"is nested more than {MAX_JSON_DEPTH} levels deep",
                accepted=f"at most {MAX_JSON_DEPTH} levels of objects and lists",
            )
            continue
        if isinstance(item, str):
            leaf = where.rsplit(".", 1)[-1]
            reason = bad_text(item, leaf in NAME_FIELDS)
            if reason:
                accepted = (
                    "one line of printable text"
                    if leaf in NAME_FIELDS
                    else "text without NUL or control characters"
                )
                yield FieldError(field=where or "body", message=reason, accepted=accepted)
        elif isinstance(item, dict):
            for key, sub in item.items():
                name = f"{where}.{key}" if where else str(key)
                reason = bad_text(str(key), True)
                if reason:
                    yield FieldError(field=where or "body", message=f"a key {reason}")
                    continue
                stack.append((sub, name, level + 1))
        elif isinstance(item, list):
            for index, sub in enumerate(item):
                stack.append((sub, f"{where}.{index}" if where else str(index), level + 1))


def check_json(body: bytes) -> list[FieldError]:
    """Refusals for a JSON body; an unparsable body is left to the handler's own error."""
    try:
        parsed = json.loads(body)
    except RecursionError:
        return [
            FieldError(
                field="body",
                message=f"is nested more than {MAX_JSON_DEPTH} levels deep",
                accepted=f"at most {MAX_JSON_DEPTH} levels of objects and lists",
            )
        ]
    except ValueError:
        return []
    return list(text_problems(parsed))[:20]


def check_yaml(text: str) -> None:
    """Refuse YAML whose aliases expand past MAX_YAML_NODES values or whose nesting passes
    MAX_YAML_DEPTH, counting from the parser's events, before any object is built."""
    anchors: dict[str, int] = {}
    frames: list[list[Any]] = []  # [anchor, expanded size]
    total = 0

    def add(size: int) -> None:
        nonlocal total
        total += size
        if frames:
            frames[-1][1] += size
        if total > MAX_YAML_NODES:
            raise InvalidInput(
                "body",
                f"expands to more than {MAX_YAML_NODES} values (aliases counted in full)",
                "job documents without alias chains",
            )

    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                add(anchors.get(event.anchor or "", 1))
            elif isinstance(event, yaml.ScalarEvent):
                add(1)
                if event.anchor:
                    anchors[event.anchor] = 1
            elif isinstance(event, yaml.CollectionStartEvent):
                frames.append([event.anchor, 0])
                if len(frames) > MAX_YAML_DEPTH:
                    raise InvalidInput(
                        "body",
                        f"is nested more than {MAX_YAML_DEPTH} levels deep",
                        f"at most {MAX_YAML_DEPTH} levels of mappings and lists",
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                anchor, size = frames.pop()
                size += 1
                if anchor:
                    anchors[anchor] = size
                add(size)
    except yaml.YAMLError:
        return  # the importer reports the syntax error with its line


def form_problems(form: Iterable[tuple[str, Any]]) -> list[FieldError]:
    """Refusals for a posted HTML form's text fields (``FormData.multi_items()``), as
    :func:`check_json` finds them in a JSON body; uploaded files are left to their reader."""
    errors = []
    for key, value in form:
        reason = bad_text(key, True)
        if reason:
            errors.append(FieldError(field="form", message=f"a field name {reason}"))
            continue
        if not isinstance(value, str):
            continue
        one_line = key in NAME_FIELDS
        reason = bad_text(value, one_line)
        if reason:
            accepted = (
                "one line of printable text"
                if one_line
                else "text without NUL or control characters"
            )
            errors.append(FieldError(field=key, message=reason, accepted=accepted))
    return errors[:20]


def check_query(scope: Scope) -> list[FieldError]:
    errors = []
    path = scope.get("path", "")
    reason = bad_text(path, True)
    if reason:
        errors.append(FieldError(field="path", message=reason, accepted="printable text"))
    raw = scope.get("query_string", b"").decode("latin-1")
    for key, value in parse_qsl(raw, keep_blank_values=True):
        reason = bad_text(key, True) or bad_text(value, True)
        if reason:
            name = key if bad_text(key, True) is None else "query"
            errors.append(FieldError(field=name, message=reason, accepted="printable text"))
    return errors


class RequestLimits:
    """ASGI middleware: body size for every request; text, depth and YAML checks for the API."""

    def __init__(
        self, app: ASGIApp, max_body_bytes: int, max_import_bytes: int | None = None
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_import_bytes = max(max_body_bytes, max_import_bytes or max_body_bytes)

    def _limit(self, scope: Scope) -> tuple[int, str]:
        """The body limit of this request and the setting that sets it: imports of jobs have
        their own, larger one (a district's export), everything else the general one."""
        if scope.get("path", "") in IMPORT_PATHS:
            return self.max_import_bytes, "BELLTOWER_CONSOLE_MAX_IMPORT_BYTES"
        return self.max_body_bytes, "BELLTOWER_CONSOLE_MAX_BODY_BYTES"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        is_api = scope.get("path", "").startswith("/api/")
        errors = check_query(scope)
        if errors:
            await self._refuse(
                scope, send, 422, "the request's address holds text it cannot", errors
            )
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        declared = headers.get("content-length", "")
        limit, setting = self._limit(scope)
        if declared.isdigit() and int(declared) > limit:
            await self._too_large(scope, send, limit, setting)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._too_large(scope, send, limit, setting)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if is_api and body:
            kind = headers.get("content-type", "")
            try:
                if "json" in kind or body.lstrip()[:1] in (b"{", b"["):
                    errors = check_json(body)
                elif scope.get("path", "").endswith("/import"):
                    check_yaml(body.decode("utf-8", errors="replace"))
            except InvalidInput as exc:
                errors = [FieldError(field=exc.field, message=exc.reason, accepted=exc.accepted)]
            if errors:
                detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
                await self._refuse(scope, send, 422, detail, errors)
                return
        await self.app(scope, _replay(body, receive), send)

    async def _too_large(self, scope: Scope, send: Send, limit: int, setting: str) -> None:
        await self._refuse(
            scope, send, 413, f"the request body is larger than {limit} bytes ({setting})", []
        )

    async def _refuse(
        self, scope: Scope, send: Send, status: int, detail: str, errors: list[FieldError]
    ) -> None:
        response = problem(status, detail, errors)
        if scope.get("path", "").startswith(oneroster.PREFIX + "/"):
            # the OneRoster provider answers in its binding's imsx_StatusInfo
            field = errors[0].field if errors else ""
            minor = oneroster.MINOR.get(field, "invalid_data")
            response = oneroster.status_info(400 if status == 422 else status, minor, detail)
        await response(scope, _no_body, send)


def _replay(body: bytes, receive: Receive) -> Callable[[], Awaitable[Message]]:
    """The buffered body once, then the client's own messages (its disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}
