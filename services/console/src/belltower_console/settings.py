"""The console's settings: where it listens, how long sessions and tokens last, the first admin."""

from __future__ import annotations

from pydantic import Field

from belltower.settings import Settings


class ConsoleSettings(Settings):
    """``BELLTOWER_CONSOLE_*`` on top of the settings every Belltower process reads."""

    console_host: str = Field(default="127.0.0.1", description="Address the console listens on")
    console_port: int = Field(default=8080, ge=0, le=65535, description="Port of the console")
    console_session_hours: float = Field(
        default=8.0, gt=0, description="A console login lasts this long"
    )
    console_secure_cookies: bool = Field(
        default=False,
        description="Always mark the session cookie Secure; it is Secure anyway on a request "
        "that came over HTTPS (directly, or per X-Forwarded-Proto from a trusted proxy)",
    )
    console_trusted_proxies: str = Field(
        default="",
        description="Comma-separated addresses or networks (CIDR) of the reverse proxies in "
        "front of the console: only from these are X-Forwarded-For and X-Forwarded-Proto "
        "believed, so the audit records the real client",
    )
    console_max_body_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        description="A request body larger than this is refused with 413",
    )
    console_max_import_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        description="An import (POST /api/v1/import, the Import/export page) larger than this is "
        "refused with 413; 64 MiB holds about 200,000 exported jobs as JSON",
    )
    console_admin_user: str | None = Field(
        default=None, description="Create this admin at start if no user exists yet"
    )
    console_admin_password: str | None = Field(
        default=None, description="Password of BELLTOWER_CONSOLE_ADMIN_USER"
    )
