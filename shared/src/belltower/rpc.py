"""Both ends of the management API: serving an operation and calling one.

Operations are declared once in :mod:`belltower.operations`. A service marks the method that
answers each with :func:`serves` and answers through an :class:`Endpoint`, which refuses to
start unless every operation of the service has its handler (:func:`belltower.broker.serve_api`
subscribes it); a client calls by the declaration
(``await api.call(JOBS_GET, JobRef(id=...))``) and gets the reply type back. Errors travel as
their code and are raised again from the :mod:`belltower.errors` table on the client.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, NoReturn, TypeVar, overload

import msgspec
import nats
from nats.aio.client import Client as NatsClient
from nats.errors import NoRespondersError, TimeoutError

from . import operations as ops
from .api import ErrorBody, Job, JobsPageRequest, NoRequest, Reply, encoder
from .errors import BelltowerError, InternalError, InvalidInput, Unavailable, error_class
from .operations import Operation, declared, is_declared
from .subjects import ApiService

log = logging.getLogger(__name__)
T = TypeVar("T")
Req = TypeVar("Req")
Rep = TypeVar("Rep")
H = TypeVar("H")


def decode_request(data: bytes, type_: type[T]) -> T:
    """Decode a request body, turning msgspec's complaint into an error that names the field."""
    try:
        return msgspec.json.decode(data or b"{}", type=type_)
    except msgspec.ValidationError as exc:
        raise invalid_from_msgspec(exc) from None
    except msgspec.DecodeError as exc:
        raise InvalidInput("body", f"is not valid JSON: {exc}", "a JSON object") from None


def invalid_from_msgspec(exc: msgspec.ValidationError, prefix: str = "") -> InvalidInput:
    text = str(exc)
    field = prefix.rstrip(".") or "body"
    if " - at `$." in text:
        text, _, path = text.partition(" - at `$.")
        field = prefix + path.rstrip("`")
    elif " - at `$`" in text:
        text = text.partition(" - at `$`")[0]
    return InvalidInput(field, text)


def ok_reply(result: Any) -> bytes:
    return encoder.encode(Reply(ok=True, result=result))


def error_reply(exc: Exception) -> bytes:
    """The error as its code, message and fields; anything not a BelltowerError is "internal"."""
    if not isinstance(exc, BelltowerError):
        log.exception("request failed", extra={"action": "api.error"})
        exc = InternalError(f"internal error: {type(exc).__name__}: {exc}")
    body = ErrorBody(code=exc.code, message=exc.message, **exc.wire_fields())
    return encoder.encode(Reply(ok=False, error=body))


def raise_error(error: ErrorBody | None) -> NoReturn:
    """Raise the class the error table names for the code, with the server's wording."""
    err = error or ErrorBody(code="internal", message="error without details")
    raise error_class(err.code).from_wire(err.message, err.field, err.accepted)


# -- the server side -----------------------------------------------------------------------

_OPERATION = "__belltower_operation__"


def serves(
    op: Operation[Req, Rep],
) -> Callable[[Callable[[H, Req], Awaitable[Rep]]], Callable[[H, Req], Awaitable[Rep]]]:
    """Mark a method as the handler of ``op``: it takes the decoded request, returns the reply."""
    if not is_declared(op):
        raise ValueError(f"{op!r} is not declared in belltower.operations; declare it there first")

    def mark(method: Callable[[H, Req], Awaitable[Rep]]) -> Callable[[H, Req], Awaitable[Rep]]:
        setattr(method, _OPERATION, op)
        return method

    return mark


def handlers_of(cls: type) -> dict[str, tuple[Operation[Any, Any], Callable[..., Awaitable[Any]]]]:
    """Operation name -> (declaration, method) for every method of ``cls`` marked with :func:`serves`."""
    found: dict[str, tuple[Operation[Any, Any], Callable[..., Awaitable[Any]]]] = {}
    for attr in dir(cls):
        method = getattr(cls, attr, None)
        op = getattr(method, _OPERATION, None)
        if op is None:
            continue
        if op.name in found:
            raise ValueError(
                f"{cls.__name__} has two handlers of {op!r}: {found[op.name][1].__name__}, {attr}"
            )
        found[op.name] = (op, method)  # type: ignore[assignment]
    return found


class Endpoint(Generic[H]):
    """The management operations one service answers, with the object whose methods answer them.

    Built from the handlers' class, so a service whose class misses a declared operation, or
    handles another service's, does not start. ``attach`` gives it the object once it exists;
    until then a request is answered "unavailable".
    """

    def __init__(self, service: ApiService, handlers: type[H]) -> None:
        self.service = service
        self.routes = handlers_of(handlers)
        foreign = [op for op, _ in self.routes.values() if op.service != service]
        if foreign:
            raise ValueError(
                f"{handlers.__name__} handles operations of another service: {foreign}"
            )
        missing = [op for op in declared(service) if op.name not in self.routes]
        if missing:
            raise ValueError(f"{handlers.__name__} has no handler for {missing}")
        self.routes = {op.name: self.routes[op.name] for op in declared(service)}
        self.target: H | None = None

    @property
    def operations(self) -> list[Operation[Any, Any]]:
        return [op for op, _ in self.routes.values()]

    def attach(self, target: H) -> None:
        self.target = target

    async def answer(self, op: Operation[Any, Any], data: bytes) -> bytes:
        """Decode the request, run its handler and encode the reply; failures become error replies."""
        try:
            if self.target is None:
                raise Unavailable(
                    f"the {self.service} is starting; try {op.name} again in a moment"
                )
            request = decode_request(data, op.request)
            return ok_reply(await self.routes[op.name][1](self.target, request))
        except Exception as exc:  # every failure must reach the caller as a reply
            return error_reply(exc)


# -- the client side -----------------------------------------------------------------------


@functools.cache
def _reply_decoder(op: Operation[Any, Rep]) -> msgspec.json.Decoder[Reply[Rep]]:
    """Decodes the reply of ``op`` with its result as the declared type, in one pass."""
    return msgspec.json.Decoder(Reply[op.reply])  # type: ignore[name-defined]


_untyped_reply = msgspec.json.Decoder(Reply)


async def _quiet(_: Exception) -> None:
    """The CLI reports connection problems itself, once, without nats-py's tracebacks."""


class ApiClient:
    """Calls the scheduler's and history's operations over NATS request-reply."""

    def __init__(self, nc: NatsClient, timeout: float = 10.0) -> None:
        self.nc = nc
        self.timeout = timeout

    @classmethod
    async def connect(
        cls, url: str, timeout: float = 10.0, options: Mapping[str, Any] | None = None
    ) -> ApiClient:
        """``options``: more ``nats.connect`` arguments (credentials, TLS, inbox prefix)."""
        try:
            nc = await nats.connect(
                url.split(","),
                connect_timeout=3,
                max_reconnect_attempts=1,
                allow_reconnect=False,
                error_cb=_quiet,
                **(options or {}),
            )
        except Exception as exc:
            raise Unavailable(
                f"cannot reach NATS at {url} ({type(exc).__name__}: {exc}); start everything with "
                "`make dev` or point BELLTOWER_NATS_URL at your NATS server"
            ) from None
        return cls(nc, timeout)

    async def close(self) -> None:
        await self.nc.close()

    @overload
    async def call(self, op: Operation[NoRequest, Rep], /) -> Rep: ...
    @overload
    async def call(self, op: Operation[Req, Rep], request: Req, /) -> Rep: ...
    async def call(self, op: Operation[Any, Any], *args: Any) -> Any:
        """Call ``op`` with ``request`` (none for operations taking :class:`NoRequest`) and
        return its reply, decoded as the declaration says; an error reply is raised as its class."""
        (request,) = args or (NoRequest(),)
        data = await self._request(op.service, op.subject, encoder.encode(request))
        reply = _reply_decoder(op).decode(data)
        if not reply.ok:
            raise_error(reply.error)
        return reply.result

    async def _request(self, service: str, subject: str, body: bytes) -> bytes:
        try:
            msg = await self.nc.request(subject, body, timeout=self.timeout)
        except NoRespondersError:
            raise Unavailable(
                f"no {service} is running (nobody answers {subject}); start it, e.g. with `make dev`"
            ) from None
        except TimeoutError:
            raise Unavailable(
                f"the {service} did not answer {subject} within {self.timeout:g}s"
            ) from None
        return msg.data


async def all_jobs(api: ApiClient) -> list[Job]:
    """Every job, page by page (``jobs.list`` never sends more than one NATS message holds)."""
    jobs: list[Job] = []
    after: str | None = None
    while True:
        page = await api.call(ops.JOBS_LIST, JobsPageRequest(after=after, limit=1_000))
        jobs.extend(page.jobs)
        if page.next is None:
            return jobs
        after = page.next
