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
        default=False, description="Mark the session cookie Secure (set it behind HTTPS)"
    )
    console_admin_user: str | None = Field(
        default=None, description="Create this admin at start if no user exists yet"
    )
    console_admin_password: str | None = Field(
        default=None, description="Password of BELLTOWER_CONSOLE_ADMIN_USER"
    )
