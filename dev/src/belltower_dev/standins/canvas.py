"""A stand-in for Canvas LMS's SIS Import API, built to its published contract, for tests.

It serves ``POST /api/v1/accounts/:account_id/sis_imports`` (a multipart ``attachment`` or a raw
zip body with ``extension=zip``, ``import_type=instructure_csv``, bearer token) and
``GET .../sis_imports/:id``, whose ``workflow_state`` moves from ``created`` to ``importing`` to
``imported`` over successive polls, as Canvas's does. A bundle that breaks the SIS CSV format is
accepted and then ends ``failed_with_messages`` with ``processing_errors``, as in Canvas.
Everything received is kept in ``imports`` for the test to inspect.
"""

from __future__ import annotations

import csv
import io
import threading
import zipfile
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from belltower_integration.canvas import REQUIRED_COLUMNS, ROLES, STATUSES

from .server import ThreadedServer


@dataclass
class ReceivedImport:
    id: int
    account_id: str
    params: dict[str, str]
    files: dict[str, list[dict[str, str]]]
    errors: list[list[str]]
    polls: int = 0
    states: list[str] = field(default_factory=list)


def _check_bundle(data: bytes) -> tuple[dict[str, list[dict[str, str]]], list[list[str]]]:
    """The CSV files of a zip bundle, and the processing errors Canvas would report for them."""
    files: dict[str, list[dict[str, str]]] = {}
    errors: list[list[str]] = []
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        return files, [["attachment", "The file is not a valid zip archive"]]
    for name in archive.namelist():
        if name not in REQUIRED_COLUMNS:
            errors.append([name, "Couldn't find Canvas CSV import headers"])
            continue
        text = archive.read(name).decode("utf-8")
        rows = list(csv.DictReader(io.StringIO(text)))
        header = next(csv.reader(io.StringIO(text)), [])
        missing = [c for c in REQUIRED_COLUMNS[name] if c not in header]
        if missing:
            errors.append([name, f"Missing required column(s): {', '.join(missing)}"])
        for line, row in enumerate(rows, 2):
            status = row.get("status", "")
            if status not in STATUSES[name]:
                errors.append([name, f"line {line}: improper status {status!r}"])
            if name == "enrollments.csv":
                if row.get("role") not in ROLES:
                    errors.append([name, f"line {line}: improper role {row.get('role')!r}"])
                if not (row.get("course_id") or row.get("section_id")):
                    errors.append([name, f"line {line}: no course_id or section_id"])
        files[name] = rows
    if not files and not errors:
        errors.append(["attachment", "The zip holds no CSV files"])
    return files, errors


class CanvasStandIn(ThreadedServer):
    """Runs the stand-in on a free local port in a thread; use as a context manager."""

    name = "Canvas stand-in"

    def __init__(
        self,
        token: str = "canvas-test-token",
        polls_until_done: int = 2,
        *,
        throttle_first: int = 0,
        fail_with: str | None = None,
        warn_with: str | None = None,
    ) -> None:
        """``throttle_first`` answers that many requests 429 (Canvas's rate limit) before serving;
        ``fail_with`` makes every import end ``failed_with_messages`` with that message, and
        ``warn_with`` makes it end ``imported_with_messages`` with that warning."""
        self.token = token
        self.polls_until_done = polls_until_done
        self.throttle_first = throttle_first
        self.fail_with = fail_with
        self.warn_with = warn_with
        self.imports: dict[int, ReceivedImport] = {}
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        app = Starlette(
            routes=[
                Route("/api/v1/accounts/{account_id}/sis_imports", self._create, methods=["POST"]),
                Route(
                    "/api/v1/accounts/{account_id}/sis_imports/{import_id:int}",
                    self._show,
                    methods=["GET"],
                ),
            ]
        )
        self.serve(app)

    def _unauthorized(self, request: Request) -> JSONResponse | None:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse(
                {"errors": [{"message": "Invalid access token."}]},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="canvas-lms"'},
            )
        return None

    async def _create(self, request: Request) -> JSONResponse:
        self.requests.append(("POST", request.url.path))
        if (refused := self._unauthorized(request)) is not None:
            return refused
        if self.throttle_first > 0:
            self.throttle_first -= 1
            return JSONResponse(
                {"errors": [{"message": "Rate Limit Exceeded"}]}, 429, headers={"Retry-After": "0"}
            )
        content_type = request.headers.get("content-type", "")
        params = dict(request.query_params)
        if content_type.startswith("multipart/form-data"):
            form = await request.form()
            upload = form.get("attachment")
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
            if upload is None or isinstance(upload, str):
                return JSONResponse({"errors": [{"message": "attachment required"}]}, 400)
            data = await upload.read()
        elif content_type in ("application/zip", "application/octet-stream"):
            if params.get("extension") != "zip":
                return JSONResponse(
                    {"errors": [{"message": "extension required for raw posts"}]}, 400
                )
            data = await request.body()
        else:
            return JSONResponse(
                {"errors": [{"message": f"unsupported content type {content_type!r}"}]}, 400
            )
        if params.get("import_type", "instructure_csv") != "instructure_csv":
            return JSONResponse({"errors": [{"message": "unknown import type"}]}, 400)
        files, errors = _check_bundle(data)
        if self.fail_with:
            errors.append(["sis_import", self.fail_with])
        with self._lock:
            new_id = len(self.imports) + 1
            received = ReceivedImport(
                new_id, request.path_params["account_id"], params, files, errors
            )
            self.imports[new_id] = received
        return JSONResponse(self._body(received, "created"))

    async def _show(self, request: Request) -> JSONResponse:
        self.requests.append(("GET", request.url.path))
        if (refused := self._unauthorized(request)) is not None:
            return refused
        received = self.imports.get(request.path_params["import_id"])
        if received is None or received.account_id != request.path_params["account_id"]:
            return JSONResponse(
                {"errors": [{"message": "The specified resource does not exist."}]}, 404
            )
        received.polls += 1
        if received.polls < self.polls_until_done:
            state = "importing"
        elif received.errors:
            state = "failed_with_messages"
        elif self.warn_with:
            state = "imported_with_messages"
        else:
            state = "imported"
        received.states.append(state)
        return JSONResponse(self._body(received, state))

    def _body(self, received: ReceivedImport, state: str) -> dict[str, Any]:
        done = state not in ("created", "importing")
        counts = {
            "users": len(received.files.get("users.csv", [])),
            "courses": len(received.files.get("courses.csv", [])),
            "sections": len(received.files.get("sections.csv", [])),
            "enrollments": len(received.files.get("enrollments.csv", [])),
            "error_count": len(received.errors),
            "warning_count": 0,
        }
        return {
            "id": received.id,
            "workflow_state": state,
            "progress": 100 if done else (0 if state == "created" else 50),
            "data": {
                "import_type": "instructure_csv",
                "supplied_batches": [n.removesuffix("s.csv") for n in received.files],
                "counts": counts if done else None,
            },
            "processing_errors": received.errors[:25] if done and received.errors else None,
            "processing_warnings": [["users.csv", self.warn_with]]
            if done and self.warn_with
            else None,
            "batch_mode": received.params.get("batch_mode") == "true",
        }
