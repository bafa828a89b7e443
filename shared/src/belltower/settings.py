"""Settings read from ``BELLTOWER_*`` environment variables and validated at start-up.

The defaults reach what ``make dev`` starts, so a developer needs to set nothing.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_NATS_PORT = 14222
DEV_POSTGRES_PORT = 15432
DEV_SMTP_PORT = 11025


class Settings(BaseSettings):
    """Connection and behaviour settings shared by every Belltower process."""

    model_config = SettingsConfigDict(env_prefix="BELLTOWER_", extra="ignore")

    nats_url: str = Field(
        default=f"nats://127.0.0.1:{DEV_NATS_PORT}",
        description="NATS server URL(s), comma separated",
    )
    nats_user: str | None = Field(
        default=None, description="NATS user of this service (with BELLTOWER_NATS_PASSWORD)"
    )
    nats_password: SecretStr | None = Field(default=None, description="NATS password")
    nats_creds: Path | None = Field(
        default=None,
        description="NATS decentralized-JWT .creds file, or an nkey seed file, instead of a user",
    )
    nats_tls_ca: Path | None = Field(
        default=None, description="CA bundle that verifies the NATS server (turns TLS on)"
    )
    nats_tls_cert: Path | None = Field(
        default=None, description="Client certificate for NATS servers that require one"
    )
    nats_tls_key: Path | None = Field(
        default=None, description="Private key of BELLTOWER_NATS_TLS_CERT"
    )
    database_url: str = Field(
        default=f"postgresql://belltower@127.0.0.1:{DEV_POSTGRES_PORT}/belltower",
        description="PostgreSQL URL for job definitions, the ledger and run history",
    )
    smtp_host: str = "127.0.0.1"
    smtp_port: int = DEV_SMTP_PORT
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    mail_from: str = "belltower@localhost"
    result_mail_only_failures: bool = Field(
        default=False,
        description="Send result e-mails only for unsuccessful runs, unless a job says otherwise",
    )
    result_mail_give_up_s: float = Field(
        default=24 * 3600,
        gt=0,
        description="How long a result e-mail is retried while the SMTP server is away",
    )
    console_url: str = Field(
        default="http://127.0.0.1:8080",
        description="Where the web console is reached; result e-mails link to runs there",
    )
    batch_folder: Path = Field(
        default=Path(".dev/batch"),
        description="Folder where exports are written and file drops are read",
    )
    outbound_allow_http: bool = Field(
        default=False,
        description="Let jobs fetch plain http:// addresses (https only by default)",
    )
    outbound_allow_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts or networks (CIDR) jobs may reach although private or loopback, "
        'e.g. ["lms.district.internal", "10.20.0.0/16"] (JSON list)',
    )
    stream_drift: Literal["migrate", "refuse"] = Field(
        default="migrate",
        description="When a stream's settings differ from the declared ones at start: update "
        "the stream, or refuse to start naming the differences",
    )
    stream_replicas: int = Field(default=1, ge=1, le=5)
    due_max_age_s: float = Field(default=7 * 86400, gt=0)
    runs_max_age_s: float = Field(default=7 * 86400, gt=0)
    duplicate_window_s: float = Field(
        default=3600,
        gt=0,
        description="JetStream de-duplication window for occurrence ids",
    )
    ack_wait_s: float = Field(default=30.0, gt=0)
    worker_concurrency: int = Field(default=64, ge=1)
    default_timeout_s: float = Field(default=3600.0, gt=0)
    request_timeout_s: float = Field(default=10.0, gt=0)
    health_host: str = Field(
        default="127.0.0.1",
        description="Address of the /livez, /readyz and /metrics endpoints (0.0.0.0 in a pod)",
    )
    health_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Port of the health and metrics endpoints; default per service "
        "(scheduler 9101, notifier-worker 9102, integration-worker 9103, history 9104); 0 picks a free one",
    )
    log_level: str = "INFO"
    log_json: bool | None = Field(
        default=None, description="JSON logs; default: when not a terminal"
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
