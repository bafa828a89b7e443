"""One exception root for Belltower, with errors that say what was wrong and how to fix it.

The errors that cross the management API each declare their ``code`` and are entered in one
table (:func:`on_the_wire`): the server sends the code, the client raises the class the table
names for it (:func:`error_class`), so both ends agree without an if-chain.
"""

from __future__ import annotations

from typing import ClassVar, Self, TypedDict, TypeVar

E = TypeVar("E", bound="type[BelltowerError]")

_BY_CODE: dict[str, type[BelltowerError]] = {}
"""Error code on the wire -> the exception class a client raises for it."""


class WireFields(TypedDict, total=False):
    """What an error carries on the wire besides its code and message."""

    field: str | None
    accepted: str | None


def on_the_wire(cls: E) -> E:
    """Enter an exception class in the code table; a second class for one code is refused."""
    known = _BY_CODE.setdefault(cls.code, cls)
    if known is not cls:
        raise TypeError(
            f"error code {cls.code!r} is already {known.__name__}'s, not {cls.__name__}'s"
        )
    return cls


def error_class(code: str) -> type[BelltowerError]:
    """The class to raise for an error code from another process; an unknown code is the root."""
    return _BY_CODE.get(code, BelltowerError)


def wire_codes() -> dict[str, type[BelltowerError]]:
    """Every code that crosses the management API, with its class (a copy)."""
    return dict(_BY_CODE)


@on_the_wire
class BelltowerError(Exception):
    """Root of every error Belltower raises on purpose."""

    code: ClassVar[str] = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def wire_fields(self) -> WireFields:
        """What the error carries besides its code and message (``field``, ``accepted``)."""
        return {}

    @classmethod
    def from_wire(cls, message: str, field: str | None = None, accepted: str | None = None) -> Self:
        """Rebuild an error received from another process, keeping its exact wording."""
        exc = cls.__new__(cls)
        BelltowerError.__init__(exc, message)
        return exc


@on_the_wire
class InvalidInput(BelltowerError):
    """A value given by a user or a client is not acceptable; nothing was stored.

    ``field`` names the offending field (dotted for nested ones) and ``accepted``
    describes the form that would have been accepted.
    """

    code = "invalid"

    def __init__(self, field: str, message: str, accepted: str | None = None) -> None:
        text = f"{field}: {message}"
        if accepted:
            text += f" (accepted: {accepted})"
        super().__init__(text)
        self.field = field
        self.reason = message
        self.accepted = accepted

    def wire_fields(self) -> WireFields:
        return {"field": self.field, "accepted": self.accepted}

    @classmethod
    def from_wire(cls, message: str, field: str | None = None, accepted: str | None = None) -> Self:
        exc = cls(field or "body", message, accepted)
        exc.message = message
        exc.args = (message,)
        return exc


@on_the_wire
class NotFound(BelltowerError):
    """The thing asked for does not exist."""

    code = "not_found"


@on_the_wire
class Conflict(BelltowerError):
    """The request is valid but clashes with the current state (a run of the job is still going);
    the message says what it clashes with and how to proceed anyway."""

    code = "conflict"


@on_the_wire
class Unavailable(BelltowerError):
    """A service or server Belltower needs did not answer."""

    code = "unavailable"


@on_the_wire
class ConfigurationError(BelltowerError):
    """Settings are missing or wrong; the message names the environment variable to set."""

    code = "configuration"


@on_the_wire
class JobFailed(BelltowerError):
    """Raised by a job type to end its run as failed with a message for the operator.

    Anything else a handler raises also fails the run; this one says the failure is expected
    and its message is complete, so no traceback is attached to the output.
    """

    code = "job_failed"


class RunHeld(BelltowerError):
    """Raised by a roster sync that stopped before sending: what it would change is over the
    job's safety thresholds. The run ends ``held`` (not failed, not retried); its message gives
    the counts and how to release it."""


@on_the_wire
class InternalError(BelltowerError):
    """A service failed on something it did not expect; the message names the exception."""

    code = "internal"
