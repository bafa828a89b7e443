"""The web console's pages."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from .http import status_and_errors

router = APIRouter(include_in_schema=False)


def error_page(request: Request, exc: Exception) -> Any:
    status, message, _ = status_and_errors(exc)
    return HTMLResponse(f"<p>{message}</p>", status_code=status)
