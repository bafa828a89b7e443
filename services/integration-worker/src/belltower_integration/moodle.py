"""A client for Moodle's web services over the REST protocol.

Every call is ``POST <site>/webservice/rest/server.php`` with ``wstoken`` (the web-service
token, a secret by reference), ``wsfunction`` and ``moodlewsrestformat=json``, the function's
arguments form-encoded the PHP way (``users[0][username]=...``). Moodle answers a refusal with
HTTP 200 and ``{"exception": ..., "errorcode": ..., "message": ...}``: an unknown or expired
token (``invalidtoken``), a function the token's service does not include
(``accessexception``), an invalid argument (``invalidparameter``, e.g. a username that exists
already). Built against the external functions of Moodle 4.x (present since 2.x with these
arguments): ``core_user_create_users``, ``core_user_update_users``,
``core_user_get_users_by_field``, ``core_course_create_courses``,
``core_course_update_courses``, ``core_course_get_courses_by_field``,
``enrol_manual_enrol_users``, ``enrol_manual_unenrol_users``; for the attendance import also
core's ``core_course_get_contents`` and, from the Attendance activity plugin (``mod_attendance``,
not part of Moodle core), ``mod_attendance_get_sessions``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any
from urllib.parse import urlencode

import httpx
import msgspec

from belltower.errors import ConfigurationError, JobFailed
from belltower.fences import PublicUrl

from .secrets import SecretName
from .webapi import WebApi

REST_PATH = "/webservice/rest/server.php"
SiteUrl = Annotated[
    PublicUrl, msgspec.Meta(description="Moodle site address, e.g. https://moodle.school.edu")
]
TokenSecret = Annotated[
    SecretName, msgspec.Meta(description="Secret holding the web-service token (wstoken)")
]
FORM = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
TOKEN_ERRORS = frozenset({"invalidtoken", "accessexception", "servicenotavailable"})


class MoodleError(JobFailed):
    """Moodle refused a call (its error JSON); ``errorcode`` says which refusal."""

    def __init__(self, function: str, errorcode: str, message: str) -> None:
        super().__init__(f"Moodle refused {function}: {errorcode}: {message}")
        self.errorcode = errorcode
        self.reason = message


def form(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Arguments as Moodle's REST server reads them: ``users[0][username]=ada``."""
    if isinstance(value, Mapping):
        out: list[tuple[str, str]] = []
        for key, item in value.items():
            out += form(item, f"{prefix}[{key}]" if prefix else str(key))
        return out
    if isinstance(value, Sequence) and not isinstance(value, str):
        out = []
        for i, item in enumerate(value):
            out += form(item, f"{prefix}[{i}]")
        return out
    if isinstance(value, bool):
        return [(prefix, "1" if value else "0")]
    return [(prefix, "" if value is None else str(value))]


class MoodleClient(WebApi):
    """Calls web-service functions; retries network errors and 5xx with backoff."""

    vendor = "Moodle"

    def __init__(
        self, base_url: str, token: str, *, token_name: str = "the Moodle token", **options: Any
    ) -> None:
        super().__init__(base_url, **options)
        self._token = token
        self._token_name = token_name

    async def call(self, function: str, arguments: Mapping[str, Any] | None = None) -> Any:
        body = [
            ("wstoken", self._token),
            ("wsfunction", function),
            ("moodlewsrestformat", "json"),
            *form(arguments or {}),
        ]
        response = await self.send(
            "POST", REST_PATH, function, content=urlencode(body), headers=FORM
        )
        return self._result(function, response)

    def _result(self, function: str, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise JobFailed(f"Moodle answered {response.status_code} to {function}")
        try:
            body = response.json()
        except ValueError:
            raise JobFailed(
                f"Moodle answered {function} with something other than JSON; is base_url the "
                "Moodle site's address, with web services and the REST protocol enabled?"
            ) from None
        if isinstance(body, dict) and "exception" in body:
            code = str(body.get("errorcode", ""))
            message = str(body.get("message", ""))[:300]
            if body.get("debuginfo"):  # only when the site has debugging on: says which field
                message += f" ({str(body['debuginfo'])[:300]})"
            if code in TOKEN_ERRORS:
                raise ConfigurationError(
                    f"Moodle refused {function}: {code}: {message}; renew {self._token_name} "
                    "with a token of a service that includes this function"
                )
            raise MoodleError(function, code, message)
        return body

    # -- the functions the LMS export uses ------------------------------------------------------

    async def users_by_field(self, field: str, values: Sequence[str]) -> list[dict[str, Any]]:
        if not values:
            return []
        return await self.call(
            "core_user_get_users_by_field", {"field": field, "values": list(values)}
        )

    async def create_users(self, users: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return await self.call("core_user_create_users", {"users": list(users)})

    async def update_users(self, users: Sequence[Mapping[str, Any]]) -> Any:
        return await self.call("core_user_update_users", {"users": list(users)})

    async def course_by_idnumber(self, idnumber: str) -> dict[str, Any] | None:
        found = await self.call(
            "core_course_get_courses_by_field", {"field": "idnumber", "value": idnumber}
        )
        courses = found.get("courses") if isinstance(found, dict) else None
        return courses[0] if courses else None

    async def create_courses(self, courses: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return await self.call("core_course_create_courses", {"courses": list(courses)})

    async def update_courses(self, courses: Sequence[Mapping[str, Any]]) -> Any:
        return await self.call("core_course_update_courses", {"courses": list(courses)})

    async def enrol(self, enrolments: Sequence[Mapping[str, Any]]) -> Any:
        return await self.call("enrol_manual_enrol_users", {"enrolments": list(enrolments)})

    async def unenrol(self, enrolments: Sequence[Mapping[str, Any]]) -> Any:
        return await self.call("enrol_manual_unenrol_users", {"enrolments": list(enrolments)})

    # -- the functions the attendance import uses ---------------------------------------------

    async def course_contents(self, course_id: int) -> list[dict[str, Any]]:
        return await self.call("core_course_get_contents", {"courseid": course_id})

    async def attendance_sessions(self, attendance_id: int) -> list[dict[str, Any]]:
        """The sessions of an attendance activity (the plugin's function)."""
        return await self.call("mod_attendance_get_sessions", {"attendanceid": attendance_id})
