"""Both ends of the management API: serving an operation and calling one."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import msgspec
import nats
from nats.aio.client import Client as NatsClient
from nats.errors import NoRespondersError, TimeoutError

from .api import ErrorBody, Reply, encoder
from .errors import BelltowerError, Conflict, InvalidInput, NotFound, Unavailable
from .subjects import api_subject

log = logging.getLogger(__name__)
T = TypeVar("T")


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
    if isinstance(exc, InvalidInput):
        body = ErrorBody(code=exc.code, message=exc.message, field=exc.field, accepted=exc.accepted)
    elif isinstance(exc, BelltowerError):
        body = ErrorBody(code=exc.code, message=exc.message)
    else:
        log.exception("request failed", extra={"action": "api.error"})
        body = ErrorBody(code="internal", message=f"internal error: {type(exc).__name__}: {exc}")
    return encoder.encode(Reply(ok=False, error=body))


async def serve(handler: Callable[[bytes], Awaitable[Any]], data: bytes) -> bytes:
    """Run one API operation and encode its reply; errors become error replies, never crashes."""
    try:
        return ok_reply(await handler(data))
    except Exception as exc:  # every failure must reach the caller as a reply
        return error_reply(exc)


_reply_decoder = msgspec.json.Decoder(Reply)


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

    async def call(
        self, service: str, operation: str, payload: Any = None, result_type: Any = Any
    ) -> Any:
        subject = api_subject(service, operation)  # type: ignore[arg-type]
        body = encoder.encode(payload) if payload is not None else b"{}"
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
        reply = _reply_decoder.decode(msg.data)
        if not reply.ok:
            err = reply.error or ErrorBody(code="internal", message="error without details")
            if err.code == "invalid":
                raise InvalidInput.from_reply(err.field or "body", err.message, err.accepted)
            if err.code == "not_found":
                raise NotFound(err.message)
            if err.code == "unavailable":
                raise Unavailable(err.message)
            if err.code == "conflict":
                raise Conflict(err.message)
            raise BelltowerError(err.message)
        if result_type is Any:
            return reply.result
        return msgspec.convert(reply.result, result_type)
