"""A stand-in for Jotform's REST API, built to its documented contract for form submissions.

``GET /form/{formID}/submissions`` with the API key as the ``APIKEY`` header or the ``apiKey``
query parameter; ``offset``, ``limit`` (1 to 1,000; default 20), ``filter`` (JSON; the
``created_at:gt`` / ``created_at:lt`` conditions), ``orderby`` (``created_at``, ``id``).
Answers ``{"responseCode", "message", "content", "duration", "resultSet": {"offset",
"limit", "count"}, "limit-left"}``. A wrong key, or a form the account does not hold, is 401
(``You're not authorized to use (/form-id-submissions)``); a bad parameter is 400.
``throttle_first`` answers that many calls 429 (the plan's API limit) with ``Retry-After: 0``;
``fail_first`` that many 503. Tests add submissions with ``submit``.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .server import ThreadedServer


def answer(status: int, message: str, content: Any = "", **more: Any) -> JSONResponse:
    body = {"responseCode": status, "message": message, "content": content, "duration": "3ms"}
    headers = {"Retry-After": "0"} if status == 429 else None
    return JSONResponse({**body, **more}, status, headers=headers)


class JotformStandIn(ThreadedServer):
    name = "Jotform stand-in"

    def __init__(self, api_key: str = "jf-test-key", *, throttle_first: int = 0,
                 fail_first: int = 0) -> None:  # fmt: skip
        self.api_key = api_key
        self.throttle_first, self.fail_first = throttle_first, fail_first
        self.forms: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[dict[str, str]] = []
        self.limit_left = 1000
        self._ids = itertools.count(5_900_000_000_000_000_001)
        self.serve(Starlette(routes=[
            Route("/form/{form:str}/submissions", self._submissions, methods=["GET"]),
        ]))  # fmt: skip

    def submit(self, form: str, created_at: str, answers: dict[str, dict[str, Any]],
               status: str = "ACTIVE") -> str:  # fmt: skip
        sid = str(next(self._ids))
        self.forms.setdefault(form, []).append(
            {"id": sid, "form_id": form, "ip": "203.0.113.9", "created_at": created_at,
             "status": status, "new": "1", "flag": "0", "notes": "", "updated_at": None,
             "answers": answers}
        )  # fmt: skip
        return sid

    async def _submissions(self, request: Request) -> Response:
        self.requests.append(dict(request.query_params))
        if self.fail_first > 0:
            self.fail_first -= 1
            return Response("Service Unavailable", 503)
        if self.throttle_first > 0:
            self.throttle_first -= 1
            return answer(429, "You have exceeded your daily API call limit")
        key = request.headers.get("apikey") or request.query_params.get("apiKey")
        form = request.path_params["form"]
        if key != self.api_key or form not in self.forms:
            return answer(401, "You're not authorized to use (/form-id-submissions) ")
        q = request.query_params
        try:
            offset, limit = int(q.get("offset", "0")), int(q.get("limit", "20"))
            conditions = json.loads(q["filter"]) if "filter" in q else {}
        except ValueError:
            return answer(400, "Invalid parameter")
        if not 1 <= limit <= 1000 or offset < 0 or not isinstance(conditions, dict):
            return answer(400, "limit must be between 1 and 1000")
        items = list(self.forms[form])
        if "created_at:gt" in conditions:
            items = [s for s in items if s["created_at"] > conditions["created_at:gt"]]
        if "created_at:lt" in conditions:
            items = [s for s in items if s["created_at"] < conditions["created_at:lt"]]
        if q.get("orderby") in ("created_at", "id"):
            items.sort(key=lambda s: s[q["orderby"]])
        page = items[offset : offset + limit]
        self.limit_left -= 1
        return answer(
            200, "success", page, resultSet={"offset": offset, "limit": limit, "count": len(page)},
            **{"limit-left": self.limit_left},
        )  # fmt: skip
