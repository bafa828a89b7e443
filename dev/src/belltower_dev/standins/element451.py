"""A stand-in for Element451's Web Data Export API, built to its published description.

``POST /v2/users/export`` with the client's feature token in the ``Feature`` header and
``{"item": {...}}``: user-list mode (``users``, at most 50) or segment mode (``segment`` guid,
``per_page`` at most 50, default 50; ``last_id`` from the previous page's ``meta.next_last_id``),
a ``template`` whose ``columns`` each have ``field``, ``mode`` and, in slug mode, ``slug``, and
``options.column_key`` (``field``, the default, or ``slug``). Rows carry the requested columns
keyed by field or slug, with the Element ID first (``user-elementid`` under slug keys, ``id``
otherwise); ``meta.next_last_id`` is empty on the last page. The document gives no error body,
so refusals here are ``{"message"}`` with 401 (no or a wrong feature token), 400 (a bad request)
and 404 (an unknown segment). ``throttle_first`` answers that many calls 429 with
``Retry-After: 0``; ``fail_first`` that many 503.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .server import ThreadedServer


def refuse(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status,
                        headers={"Retry-After": "0"} if status == 429 else None)  # fmt: skip


class Element451StandIn(ThreadedServer):
    name = "Element451 stand-in"

    def __init__(self, feature: str = "e451-feature-token", *, throttle_first: int = 0,
                 fail_first: int = 0) -> None:  # fmt: skip
        self.feature = feature
        self.throttle_first, self.fail_first = throttle_first, fail_first
        self.users: dict[str, dict[str, Any]] = {}  # Element ID -> slug -> value
        self.segments: dict[str, list[str]] = {}  # guid -> Element IDs, in order
        self.requests: list[dict[str, Any]] = []
        self.serve(Starlette(routes=[Route("/v2/users/export", self._export, methods=["POST"])]))

    def add_user(self, segment: str, element_id: str, **slugs: str) -> None:
        self.users[element_id] = slugs
        self.segments.setdefault(segment, []).append(element_id)

    async def _export(self, request: Request) -> Response:
        if self.fail_first > 0:
            self.fail_first -= 1
            return Response("Service Unavailable", 503)
        if self.throttle_first > 0:
            self.throttle_first -= 1
            return refuse(429, "Too Many Requests")
        if request.headers.get("feature") != self.feature:
            return refuse(401, "Invalid feature token")
        try:
            item = (await request.json())["item"]
        except (ValueError, KeyError, TypeError):
            return refuse(400, 'The body must be {"item": {...}}')
        self.requests.append(item)
        columns = (item.get("template") or {}).get("columns") or []
        if not columns or any(not c.get("field") or c.get("mode") not in ("slug", "field")
                              or (c["mode"] == "slug" and not c.get("slug")) for c in columns):  # fmt: skip
            return refuse(400, "Every template column needs field, mode and slug")
        by_slug = (item.get("options") or {}).get("column_key") == "slug"
        if "users" in item:
            if len(item["users"]) > 50:
                return refuse(400, "At most 50 users per request")
            ids, more = [u for u in item["users"] if u in self.users], ""
        else:
            per_page = int(item.get("per_page") or 50)
            if not 1 <= per_page <= 50:
                return refuse(400, "per_page cannot be more than 50")
            members = self.segments.get(str(item.get("segment")))
            if members is None:
                return refuse(404, f"Segment {item.get('segment')} not found")
            start = members.index(item["last_id"]) + 1 if item.get("last_id") in members else 0
            ids = members[start : start + per_page]
            more = ids[-1] if ids and start + per_page < len(members) else ""
        rows = []
        for uid in ids:
            row: dict[str, Any] = {"user-elementid" if by_slug else "id": uid}
            for c in columns:
                row[c["slug"] if by_slug else c["field"]] = self.users[uid].get(c.get("slug"), "")
            rows.append(row)
        return JSONResponse({"data": rows, "meta": {"next_last_id": more}})
