"""Templates an editor writes (a notifier's subject, message, greeting), rendered as data.

They run in Jinja2's immutable sandbox: no attribute that starts with an underscore, no
method that changes a value, no access to Python's internals, so
``{{ cycler.__init__.__globals__.os }}`` is refused when the job is saved (a 422 naming the
parameter) and fails inert if it reaches a worker some other way. A render is also bounded:
by its output size, by its running time and by how deeply its loops nest, so a template cannot
keep a worker busy or fill a mailbox.
"""

from __future__ import annotations

import contextvars
import functools
import time
from collections.abc import Mapping
from typing import Annotated, Any

import jinja2
import msgspec
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from .errors import InvalidInput
from .jobtypes import counted

MAX_SOURCE_CHARS = 10_000
MAX_OUTPUT_CHARS = 100_000
MAX_RENDER_S = 2.0
MAX_LOOP_DEPTH = 3

TEMPLATE = "belltower-template"
"""The JSON Schema ``format`` of a template parameter: the scheduler checks it when a job is saved."""

TEMPLATE_FORM = (
    "Jinja2 text such as 'Hello {{ first_name }}': variables, filters, if and for "
    f"(loops nested at most {MAX_LOOP_DEPTH} deep), no names starting with '_', "
    f"at most {MAX_SOURCE_CHARS:,} characters"
)

TemplateText = Annotated[
    str, msgspec.Meta(max_length=MAX_SOURCE_CHARS, extra_json_schema={"format": TEMPLATE})
]
"""A parameter holding a template an editor writes."""

_deadline: contextvars.ContextVar[float] = contextvars.ContextVar("template_deadline", default=0.0)


class RenderLimit(SecurityError):
    """A render ran longer or produced more than a template may."""


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with the render's deadline checked on every call and lookup."""

    def _tick(self) -> None:
        deadline = _deadline.get()
        if deadline and time.monotonic() > deadline:
            raise RenderLimit(f"the template ran longer than {MAX_RENDER_S:g} s")

    def call(self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        self._tick()
        return super().call(__context, __obj, *args, **kwargs)

    def getattr(self, obj: Any, attribute: str) -> Any:
        self._tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        self._tick()
        return super().getitem(obj, argument)


def _environment(autoescape: bool) -> _Sandbox:
    env = _Sandbox(undefined=jinja2.StrictUndefined, autoescape=autoescape)
    env.filters["counted"] = counted  # {{ count | counted('student') }}: "1 student", "3 students"
    return env


_ENVIRONMENTS = {False: _environment(False), True: _environment(True)}


def _loop_depth(node: nodes.Node, depth: int = 0) -> int:
    here = depth + 1 if isinstance(node, nodes.For) else depth
    return max([here, *(_loop_depth(child, here) for child in node.iter_child_nodes())])


def _refuse(field: str, source: str, why: str) -> InvalidInput:
    shown = source if len(source) <= 80 else source[:77] + "..."
    return InvalidInput(field, f"template {shown!r} {why}", TEMPLATE_FORM)


def check_template(source: str, field: str) -> None:
    """Refuse, before anything runs, a template that does not parse or reaches for what the
    sandbox forbids: names or attributes starting with '_', deep loops, huge source."""
    why = _problem(source)
    if why is not None:
        raise _refuse(field, source, why)


@functools.lru_cache(maxsize=1024)
def _problem(source: str) -> str | None:
    if len(source) > MAX_SOURCE_CHARS:
        return f"is longer than {MAX_SOURCE_CHARS:,} characters"
    if "\x00" in source:
        return "contains a NUL character"
    try:
        tree = _ENVIRONMENTS[False].parse(source)
    except jinja2.TemplateSyntaxError as exc:
        return f"does not parse: {exc.message} (line {exc.lineno})"
    for node in tree.find_all((nodes.Getattr, nodes.Name, nodes.Getitem)):
        name = getattr(node, "attr", None) or getattr(node, "name", None)
        if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            name = node.arg.value
        if isinstance(name, str) and name.startswith("_"):
            return f"uses {name!r}: names starting with '_' are not allowed"
    if _loop_depth(tree) > MAX_LOOP_DEPTH:
        return f"nests loops more than {MAX_LOOP_DEPTH} deep"
    return None


@functools.lru_cache(maxsize=512)
def _compiled(source: str, html: bool) -> jinja2.Template:
    return _ENVIRONMENTS[html].from_string(source)


def render(
    source: str,
    field: str,
    context: Mapping[str, Any],
    *,
    html: bool = False,
    max_chars: int = MAX_OUTPUT_CHARS,
    max_seconds: float = MAX_RENDER_S,
) -> str:
    """Render ``source`` in the sandbox; a template that is broken, forbidden or over a limit is
    refused as InvalidInput naming ``field`` (the run fails with that message, nothing is sent)."""
    check_template(source, field)
    token = _deadline.set(time.monotonic() + max_seconds)
    try:
        parts: list[str] = []
        size = 0
        for chunk in _compiled(source, html).generate(dict(context)):
            size += len(chunk)
            if size > max_chars:
                raise RenderLimit(f"the template produced more than {max_chars:,} characters")
            parts.append(chunk)
            _ENVIRONMENTS[html]._tick()
        return "".join(parts)
    except RenderLimit as exc:
        raise _refuse(field, source, f"was stopped: {exc}") from None
    except SecurityError as exc:
        raise _refuse(field, source, f"was refused by the sandbox: {exc}") from None
    except jinja2.TemplateError as exc:
        raise _refuse(field, source, f"does not render: {exc}") from None
    finally:
        _deadline.reset(token)
