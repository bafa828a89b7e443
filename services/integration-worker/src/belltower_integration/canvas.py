"""A client for Canvas LMS's SIS Import API, and the CSV bundle it takes.

Canvas takes SIS data as a zip of CSV files (``users.csv``, ``courses.csv``, ``sections.csv``,
``enrollments.csv``, ...) posted to ``POST /api/v1/accounts/:account_id/sis_imports`` with
``import_type=instructure_csv``; it answers with an import whose ``workflow_state`` moves on
(``created``, ``importing``, ...) until it ends ``imported``, ``imported_with_messages``,
``failed_with_messages``, ``failed`` or ``aborted``. Rows are keyed by SIS ids, so posting the same
bundle twice changes nothing the second time: an export redelivered after a crash is harmless.
"""

from __future__ import annotations

import asyncio
import io
import time
import zipfile
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from belltower.errors import ConfigurationError, JobFailed, Unavailable
from belltower.settings import Settings

from .batchfiles import csv_text
from .webapi import WebApi

TERMINAL_STATES = frozenset(
    {"imported", "imported_with_messages", "failed_with_messages", "failed", "aborted"}
)
SUCCESS_STATES = frozenset({"imported", "imported_with_messages"})

# Columns Canvas requires in each file of the SIS CSV format, and the statuses it accepts.
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "users.csv": ("user_id", "login_id", "status"),
    "courses.csv": ("course_id", "short_name", "long_name", "status"),
    "sections.csv": ("section_id", "course_id", "name", "status"),
    "enrollments.csv": ("user_id", "role", "status"),
    "terms.csv": ("term_id", "name", "status"),
}
STATUSES: dict[str, frozenset[str]] = {
    "users.csv": frozenset({"active", "suspended", "deleted"}),
    "courses.csv": frozenset({"active", "deleted", "completed", "published"}),
    "sections.csv": frozenset({"active", "deleted"}),
    "enrollments.csv": frozenset(
        {"active", "deleted", "completed", "inactive", "deleted_last_completed"}
    ),
    "terms.csv": frozenset({"active", "deleted"}),
}
ROLES = frozenset({"student", "teacher", "ta", "observer", "designer"})


@dataclass
class CsvFile:
    name: str
    header: Sequence[str]
    rows: Sequence[Sequence[object]]


def bundle(files: Iterable[CsvFile]) -> bytes:
    """A zip of the given CSV files, checked against the SIS CSV format before anything is sent."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for f in files:
            required = REQUIRED_COLUMNS.get(f.name)
            if required is None:
                raise ValueError(f"{f.name} is not a Canvas SIS CSV file name")
            missing = [c for c in required if c not in f.header]
            if missing:
                raise ValueError(f"{f.name} lacks required column(s) {', '.join(missing)}")
            archive.writestr(f.name, csv_text(f.header, f.rows))
    return buffer.getvalue()


class CanvasClient(WebApi):
    """Posts SIS import bundles and follows them to the end, with backoff between polls."""

    vendor = "Canvas"

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout_s: float = 60.0,
        token_name: str = "the Canvas token",
        settings: Settings | None = None,
    ) -> None:
        super().__init__(
            base_url,
            timeout_s=timeout_s,
            settings=settings,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )
        self._token_name = token_name

    async def _request(self, method: str, path: str, attempts: int = 4, **kw: Any) -> Any:
        """One API call; retries network errors, 429 and 5xx with backoff, fails clearly on 4xx."""
        delay = 1.0
        for attempt in range(1, attempts + 1):
            try:
                response = await self._http.request(method, path, **kw)
            except httpx.TransportError as exc:
                if attempt == attempts:
                    raise Unavailable(
                        f"Canvas at {self.base_url} did not answer {method} {path} ({exc!r}); "
                        "check the job's base_url parameter and the network"
                    ) from None
            else:
                if response.status_code == 401:
                    raise ConfigurationError(
                        f"Canvas refused the access token ({_errors(response)}); "
                        f"renew {self._token_name} with a token allowed to run SIS imports"
                    )
                if response.status_code in (429,) or response.status_code >= 500:
                    if attempt == attempts:
                        raise Unavailable(
                            f"Canvas answered {response.status_code} to {method} {path} "
                            f"{attempts} times: {_errors(response)}"
                        )
                    retry_after = response.headers.get("Retry-After", "")
                    if retry_after.isdigit():
                        delay = max(delay, float(retry_after))
                elif response.status_code >= 400:
                    raise JobFailed(
                        f"Canvas refused {method} {path} with {response.status_code}: {_errors(response)}"
                    )
                else:
                    return response.json()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
        raise AssertionError("unreachable")

    async def start_import(
        self,
        account_id: str,
        data: bytes,
        *,
        batch_mode: bool = False,
        batch_mode_term_id: str | None = None,
        diffing_data_set_identifier: str | None = None,
    ) -> dict[str, Any]:
        """Upload a zip bundle as a multipart ``attachment``; returns the created SIS import."""
        form: dict[str, str] = {"import_type": "instructure_csv", "extension": "zip"}
        if batch_mode:
            form["batch_mode"] = "true"
            if batch_mode_term_id:
                form["batch_mode_term_id"] = batch_mode_term_id
        if diffing_data_set_identifier:
            form["diffing_data_set_identifier"] = diffing_data_set_identifier
        return await self._request(
            "POST",
            f"/api/v1/accounts/{account_id}/sis_imports",
            data=form,
            files={"attachment": ("belltower_sis.zip", data, "application/zip")},
        )

    async def get_import(self, account_id: str, import_id: int | str) -> dict[str, Any]:
        return await self._request("GET", f"/api/v1/accounts/{account_id}/sis_imports/{import_id}")

    async def wait(
        self,
        account_id: str,
        import_id: int | str,
        *,
        timeout_s: float,
        first_delay_s: float = 1.0,
        max_delay_s: float = 30.0,
        on_poll: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
    ) -> dict[str, Any]:
        """Poll the import until it reaches a terminal state, backing off from 1 s to 30 s."""
        deadline = time.monotonic() + timeout_s
        delay = first_delay_s
        while True:
            state = await self.get_import(account_id, import_id)
            if on_poll is not None:
                await on_poll(state)
            if state.get("workflow_state") in TERMINAL_STATES:
                return state
            if time.monotonic() + delay > deadline:
                raise JobFailed(
                    f"Canvas SIS import {import_id} was still {state.get('workflow_state')!r} after "
                    f"{timeout_s:g}s; it goes on in Canvas (see Admin > SIS Import); raise poll_timeout_s to wait longer"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 1.6, max_delay_s)


def _errors(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        return "; ".join(
            str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in body["errors"]
        )
    if isinstance(body, dict) and "message" in body:
        return str(body["message"])
    return str(body)[:200]
