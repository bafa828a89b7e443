"""A stand-in for the Mailchimp Marketing API 3.0 (audience members), built to its contract.

HTTP basic auth with the API key as the password (any user name); a wrong key is 401 "API Key
Invalid". ``POST /3.0/lists/{list_id}`` takes ``{"members": [...], "update_existing": bool}``,
at most 500 members (400 otherwise), each with ``email_address`` and ``status``; it answers 200
with ``new_members``, ``updated_members``, ``errors`` (one per member refused, e.g. an address
that looks fake) and the totals. Members are keyed by subscriber hash (MD5 of the lower-cased
address); ``PATCH /3.0/lists/{list_id}/members/{hash}`` changes one (404 when there is none,
400 when the new address is another member's). An unknown list is 404. Errors are problem
documents (``type``, ``title``, ``status``, ``detail``, ``instance``); ``throttle_first``
answers that many calls 429 with Retry-After.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .server import ThreadedServer

ERRORS_DOC = "https://mailchimp.com/developer/marketing/docs/errors/"


def problem(status: int, title: str, detail: str) -> JSONResponse:
    return JSONResponse(
        {"type": ERRORS_DOC, "title": title, "status": status, "detail": detail, "instance": str(uuid.uuid4())},
        status, media_type="application/problem+json",
    )  # fmt: skip


def member_hash(email: str) -> str:
    return hashlib.md5(email.lower().encode(), usedforsecurity=False).hexdigest()


class MailchimpStandIn(ThreadedServer):
    name = "Mailchimp stand-in"

    def __init__(self, key: str = "0123456789abcdef0123456789abcdef-us6", *, lists: tuple[str, ...] = ("a1b2c3",),
                 throttle_first: int = 0) -> None:  # fmt: skip
        self.key, self.throttle_first = key, throttle_first
        self.members: dict[str, dict[str, dict[str, Any]]] = {lst: {} for lst in lists}
        self.requests: list[tuple[str, str]] = []
        self.serve(Starlette(routes=[
            Route("/3.0/lists/{list_id:str}", self._batch, methods=["POST"]),
            Route("/3.0/lists/{list_id:str}/members/{hash:str}", self._member, methods=["GET", "PATCH"]),
        ]))  # fmt: skip

    def _refused(self, request: Request) -> Response | None:
        self.requests.append((request.method, request.url.path))
        if self.throttle_first > 0:
            self.throttle_first -= 1
            response = problem(
                429,
                "Too Many Requests",
                "You have exceeded the limit of 10 simultaneous connections.",
            )
            response.headers["Retry-After"] = "0"
            return response
        header = request.headers.get("authorization", "")
        given = (
            base64.b64decode(header[6:]).decode().split(":", 1)[-1]
            if header.startswith("Basic ")
            else ""
        )
        if given != self.key:
            return problem(
                401,
                "API Key Invalid",
                "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
            )
        if request.path_params["list_id"] not in self.members:
            return problem(404, "Resource Not Found", "The requested resource could not be found.")
        return None

    async def _batch(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        body = await request.json()
        members = body.get("members")
        if not isinstance(members, list) or len(members) > 500:
            return problem(400, "Invalid Resource", "members: a batch takes up to 500 members.")
        audience = self.members[request.path_params["list_id"]]
        new, updated, errors = [], [], []
        for m in members:
            email = str(m.get("email_address", ""))
            if "@" not in email or email.endswith(".invalid"):
                errors.append({"email_address": email, "error": f"{email} looks fake or invalid, please enter a real email address.",
                               "error_code": "ERROR_GENERIC", "field": "email_address", "field_message": ""})  # fmt: skip
                continue
            if m.get("status") not in (
                "subscribed",
                "unsubscribed",
                "cleaned",
                "pending",
                "transactional",
            ):
                errors.append({"email_address": email, "error": "status: the value is not one of the allowed ones",
                               "error_code": "ERROR_GENERIC", "field": "status", "field_message": ""})  # fmt: skip
                continue
            h = member_hash(email)
            record = {
                "id": h,
                "email_address": email,
                "status": m["status"],
                "merge_fields": m.get("merge_fields", {}),
            }
            if h in audience:
                if not body.get("update_existing"):
                    errors.append(
                        {
                            "email_address": email,
                            "error": f"{email} is already a list member.",
                            "error_code": "ERROR_CONTACT_EXISTS",
                        }
                    )
                    continue
                audience[h].update(record)
                updated.append(audience[h])
            else:
                audience[h] = record
                new.append(record)
        return JSONResponse({"new_members": new, "updated_members": updated, "errors": errors,
                             "total_created": len(new), "total_updated": len(updated), "error_count": len(errors)})  # fmt: skip

    async def _member(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        audience = self.members[request.path_params["list_id"]]
        current = audience.get(request.path_params["hash"])
        if current is None:
            return problem(404, "Resource Not Found", "The requested resource could not be found.")
        if request.method == "PATCH":
            change = await request.json()
            email = change.get("email_address", current["email_address"])
            h = member_hash(email)
            if h != current["id"] and h in audience:
                return problem(400, "Member Exists", f"{email} is already a list member.")
            del audience[current["id"]]
            current.update({**change, "id": h})
            audience[h] = current
        return JSONResponse(current)
