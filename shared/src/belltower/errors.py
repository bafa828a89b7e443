"""One exception root for Belltower, with errors that say what was wrong and how to fix it."""

from __future__ import annotations


class BelltowerError(Exception):
    """Root of every error Belltower raises on purpose."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


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

    @classmethod
    def from_reply(cls, field: str, message: str, accepted: str | None) -> InvalidInput:
        """Rebuild an error received from another process, keeping its exact wording."""
        exc = cls(field, message, accepted)
        exc.message = message
        exc.args = (message,)
        return exc


class NotFound(BelltowerError):
    """The thing asked for does not exist."""

    code = "not_found"


class Conflict(BelltowerError):
    """The request is valid but clashes with the current state (a run of the job is still going);
    the message says what it clashes with and how to proceed anyway."""

    code = "conflict"


class Unavailable(BelltowerError):
    """A service or server Belltower needs did not answer."""

    code = "unavailable"


class ConfigurationError(BelltowerError):
    """Settings are missing or wrong; the message names the environment variable to set."""

    code = "configuration"


class JobFailed(BelltowerError):
    """Raised by a job type to end its run as failed with a message for the operator.

    Anything else a handler raises also fails the run; this one says the failure is expected
    and its message is complete, so no traceback is attached to the output.
    """

    code = "job_failed"
