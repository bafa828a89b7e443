"""The job types the worker pools advertise, and validation of a job's parameters against them.

Workers write their pool's list into the catalog bucket when they start; the scheduler reads it,
so it never needs the handlers' code. Parameters typed on a command line arrive as strings and
are converted by the parameter's JSON Schema type before the schema is checked.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import msgspec
from jsonschema import Draft202012Validator
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError

from belltower.api import JobTypeInfo
from belltower.errors import InvalidInput
from belltower.fences import format_checker
from belltower.settings import get_settings
from belltower.subjects import CATALOG_BUCKET, POOLS

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


class Catalog:
    def __init__(self, js: JetStreamContext, cache_s: float = 2.0) -> None:
        self.js = js
        self.cache_s = cache_s
        self._cached: dict[str, JobTypeInfo] = {}
        self._at = 0.0

    async def types(self) -> dict[str, JobTypeInfo]:
        if time.monotonic() - self._at < self.cache_s:
            return self._cached
        bucket = await self.js.key_value(CATALOG_BUCKET)
        found: dict[str, JobTypeInfo] = {}
        for pool in POOLS:
            try:
                entry = await bucket.get(f"pool.{pool}")
            except KeyNotFoundError:
                continue
            for info in msgspec.json.decode(entry.value or b"[]", type=list[JobTypeInfo]):
                found[info.name] = info
        self._cached, self._at = found, time.monotonic()
        return found

    async def require(self, name: str) -> JobTypeInfo:
        types = await self.types()
        info = types.get(name)
        if info is None:
            if not types:
                raise InvalidInput(
                    "type",
                    f"unknown job type {name!r}: no worker has registered any job type yet",
                    "a type listed by `belltower job-types` (start the workers first, e.g. with `make dev`)",
                )
            raise InvalidInput(
                "type", f"unknown job type {name!r}", "one of " + ", ".join(sorted(types))
            )
        return info


def _properties(schema: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    defs = schema.get("$defs", {})
    root = schema
    ref = schema.get("$ref", "")
    if ref.startswith("#/$defs/"):
        root = defs[ref.removeprefix("#/$defs/")]
    return root.get("properties", {}), defs


def _types_of(prop: dict[str, Any], defs: dict[str, Any]) -> list[str]:
    if "$ref" in prop:
        prop = defs.get(prop["$ref"].removeprefix("#/$defs/"), {})
    if "anyOf" in prop:
        return [t for sub in prop["anyOf"] for t in _types_of(sub, defs)]
    kind = prop.get("type")
    if isinstance(kind, list):
        return kind
    if kind:
        return [kind]
    if "enum" in prop:
        return ["string"]
    return []


def _boolean(name: str, text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidInput(f"param.{name}", f"{text!r} is not true or false", "true/false, yes/no, 1/0")


def _convert(name: str, text: str, prop: dict[str, Any], defs: dict[str, Any]) -> Any:
    kinds = _types_of(prop, defs)
    if "string" in kinds or not kinds:
        return text
    if "null" in kinds and text.strip().lower() in {"", "null", "none"}:
        return None
    value = text.strip()
    if "integer" in kinds:
        try:
            return int(value)
        except ValueError:
            if "number" not in kinds:
                raise InvalidInput(
                    f"param.{name}", f"{text!r} is not a whole number", "e.g. 7"
                ) from None
    if "number" in kinds:
        try:
            return float(value)
        except ValueError:
            raise InvalidInput(f"param.{name}", f"{text!r} is not a number", "e.g. 2.5") from None
    if "boolean" in kinds:
        return _boolean(name, text)
    if "array" in kinds:
        items = prop.get("items", {})
        return [_convert(name, part, items, defs) for part in value.split(",") if part.strip()]
    if "object" in kinds:
        try:
            return msgspec.json.decode(value)
        except msgspec.DecodeError:
            raise InvalidInput(
                f"param.{name}", f"{text!r} is not a JSON object", '{"key": "value"}'
            ) from None
    return text


def validate_params(info: JobTypeInfo, params: dict[str, Any]) -> dict[str, Any]:
    """Convert string values by the schema and check the result; errors name ``param.<name>``."""
    props, defs = _properties(info.params_schema)
    converted: dict[str, Any] = {}
    for name, value in params.items():
        if name not in props:
            accepted = ", ".join(sorted(props)) or f"none: {info.name} takes no parameters"
            raise InvalidInput(f"param.{name}", f"{info.name} has no parameter {name!r}", accepted)
        converted[name] = (
            _convert(name, value, props[name], defs) if isinstance(value, str) else value
        )
    validator = Draft202012Validator(info.params_schema, format_checker=_fences())
    errors = sorted(validator.iter_errors(converted), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        path = ".".join(str(p) for p in err.absolute_path)
        field = f"param.{path}" if path else "params"
        fence = _fence_refusal(err)
        if fence is not None:  # a fence (path, URL, template): its own reason and form
            raise InvalidInput(field, fence.reason, fence.accepted)
        raise InvalidInput(field, err.message, _describe_at(props, defs, list(err.absolute_path)))
    return converted


def _fence_refusal(err: Any) -> InvalidInput | None:
    """The fence's refusal behind a schema error, also inside ``anyOf`` (an optional path)."""
    if isinstance(err.cause, InvalidInput):
        return err.cause
    for sub in err.context or ():
        found = _fence_refusal(sub)
        if found is not None:
            return found
    return None


@functools.lru_cache(maxsize=1)
def _fences() -> Any:
    """The checker of fenced parameters (batch paths, public URLs, templates), per the site's
    outbound settings."""
    settings = get_settings()
    return format_checker(
        allow_http=settings.outbound_allow_http, allow_hosts=settings.outbound_allow_hosts
    )


def _describe_at(props: dict[str, Any], defs: dict[str, Any], path: list[Any]) -> str | None:
    """The accepted form of the value at ``path``: an array's item (``param.codes.0``) is
    described by the array's ``items``, not as "array"."""
    if not path:
        return None
    prop: dict[str, Any] | None = props.get(str(path[0]))
    for step in path[1:]:
        if prop is None or not isinstance(step, int):
            break
        items = prop.get("items")
        prop = (
            defs.get(items["$ref"].removeprefix("#/$defs/")) if items and "$ref" in items else items
        )
    described = _describe(prop, defs)
    return f"each item {described}" if described and len(path) > 1 else described


def _describe(prop: dict[str, Any] | None, defs: dict[str, Any]) -> str | None:
    if not prop:
        return None
    parts = [" or ".join(_types_of(prop, defs))]
    for key, word in (
        ("minimum", "at least"),
        ("maximum", "at most"),
        ("minLength", "length at least"),
    ):
        if key in prop:
            parts.append(f"{word} {prop[key]}")
    if "enum" in prop:
        parts.append("one of " + ", ".join(map(str, prop["enum"])))
    if "pattern" in prop:
        parts.append("matching " + prop["pattern"].replace("(?!\\n)", ""))
    return ", ".join(p for p in parts if p) or None
