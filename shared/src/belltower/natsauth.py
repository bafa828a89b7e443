"""Who may do what on NATS: one identity per Belltower role, least privilege by subject.

The permissions are declared once here. :func:`server_config` renders them as a nats-server
``authorization`` block (``make dev``, tests), :func:`chart_users` as the Helm chart's
``files/nats-users.json`` (kept equal by a test); :mod:`belltower.natsclient` connects every
Belltower process with the credentials and TLS of its settings.

No service may create, change or delete a stream or bucket: the ``provisioner`` identity does
that, once per install and upgrade (``belltower-streams apply``, :mod:`belltower.streams`), and
may touch no message. The services may read the streams' info, run their own consumers and read
and write the keys they own.

Each role gets its own reply-inbox prefix (``_INBOX.<role>``) so no identity can read the
replies meant for another. Services that answer requests (scheduler, history, the integration
worker) reply through ``allow_responses``, never by a publish right on the inboxes.
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr

from .settings import Settings
from .subjects import (
    ALERT_SUBJECTS,
    CATALOG_BUCKET,
    CLAIMS_BUCKET,
    DUE_STREAM,
    HISTORY_CONSUMER,
    LEASES_BUCKET,
    RUNS_STREAM,
    SCHEDULER_CHANGES,
    SCHEDULER_RUN_NOW,
    worker_consumer,
)

Role = Literal[
    "scheduler",
    "notifier-worker",
    "integration-worker",
    "history",
    "console",
    "integrator",
    "provisioner",
]
ROLES: tuple[Role, ...] = (
    "scheduler",
    "notifier-worker",
    "integration-worker",
    "history",
    "console",
    "integrator",
    "provisioner",
)

SETTINGS_BUCKET = "belltower_settings"  # sitesettings.BUCKET, without importing its NATS code
HISTORY_DELIVER = "belltower.deliver.history"  # history's push consumer delivers here
API = "$JS.API"


def inbox_prefix(role: str) -> str:
    """Where a role's request replies arrive; nats-py's ``inbox_prefix`` for its connection."""
    return f"_INBOX.{role}"


@dataclass(frozen=True)
class Permissions:
    """What one role may publish and subscribe to; everything else is refused."""

    description: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    deny_publish: tuple[str, ...] = ()
    deny_subscribe: tuple[str, ...] = ()
    allow_responses: bool = False

    def __post_init__(self) -> None:
        for name in ("publish", "subscribe"):
            object.__setattr__(self, name, tuple(dict.fromkeys(getattr(self, name))))

    def as_config(self) -> dict[str, Any]:
        """The ``permissions`` map of a nats-server user."""
        publish: dict[str, Any] = {"allow": list(self.publish)}
        if self.deny_publish:
            publish["deny"] = list(self.deny_publish)
        subscribe: dict[str, Any] = {"allow": list(self.subscribe)}
        if self.deny_subscribe:
            subscribe["deny"] = list(self.deny_subscribe)
        config: dict[str, Any] = {"publish": publish, "subscribe": subscribe}
        if self.allow_responses:
            config["allow_responses"] = True
        return config


def _stream_info(*streams: str) -> tuple[str, ...]:
    """Every service checks at start that the streams and buckets it uses are as declared
    (``streams.ensure``); only the provisioner creates or changes them."""
    return tuple(f"{API}.STREAM.INFO.{stream}" for stream in streams)


def _provision(*streams: str) -> tuple[str, ...]:
    """Create, inspect and update (never delete or purge) the declared streams and buckets."""
    return tuple(
        f"{API}.STREAM.{op}.{stream}" for stream in streams for op in ("INFO", "CREATE", "UPDATE")
    )


def _kv(bucket: str, *, write: Iterable[str] = ()) -> tuple[str, ...]:
    """Read a key-value bucket (direct and stream gets), and write the keys in ``write``."""
    stream = f"KV_{bucket}"
    subjects = [
        f"{API}.STREAM.INFO.{stream}",
        f"{API}.DIRECT.GET.{stream}",
        f"{API}.DIRECT.GET.{stream}.>",
        f"{API}.STREAM.MSG.GET.{stream}",
    ]
    subjects += [f"$KV.{bucket}.{key}" for key in write]
    return tuple(subjects)


def _durable(stream: str, consumer: str, *, pull: bool) -> tuple[str, ...]:
    """Create, inspect and consume one named durable consumer, and acknowledge its messages."""
    subjects = [
        f"{API}.CONSUMER.INFO.{stream}.{consumer}",
        f"{API}.CONSUMER.CREATE.{stream}.{consumer}",
        f"{API}.CONSUMER.CREATE.{stream}.{consumer}.>",
        f"{API}.CONSUMER.DURABLE.CREATE.{stream}.{consumer}",
        f"$JS.ACK.{stream}.{consumer}.>",
    ]
    if pull:
        subjects.append(f"{API}.CONSUMER.MSG.NEXT.{stream}.{consumer}")
    return tuple(subjects)


def _ephemeral(stream: str) -> tuple[str, ...]:
    """Ordered (ephemeral) consumers on a stream, with their flow control."""
    return (
        f"{API}.STREAM.INFO.{stream}",
        f"{API}.CONSUMER.CREATE.{stream}",
        f"{API}.CONSUMER.CREATE.{stream}.>",
        f"{API}.CONSUMER.INFO.{stream}.>",
        f"{API}.CONSUMER.DELETE.{stream}.>",
        f"$JS.FC.{stream}.>",
    )


_ALL_STREAMS = (DUE_STREAM, RUNS_STREAM, f"KV_{CATALOG_BUCKET}", f"KV_{CLAIMS_BUCKET}")
_PROVISIONED = (*_ALL_STREAMS, f"KV_{LEASES_BUCKET}", f"KV_{SETTINGS_BUCKET}")
"""Every stream and bucket ``belltower-streams apply`` creates (``streams.bucket_configs``)."""


def _inbox(role: Role) -> str:
    return f"{inbox_prefix(role)}.>"


def _worker(
    pool: Literal["notifier", "integration"], calls: tuple[str, ...], *, answers: bool = False
) -> Permissions:
    """``answers``: the pool also answers its management operations, ``belltower.api.<pool>.>``
    (the integration worker: the OneRoster provider's reads), through ``allow_responses``."""
    role: Role = f"{pool}-worker"  # type: ignore[assignment]
    served = (f"belltower.api.{pool}.>",) if answers else ()
    return Permissions(
        description=f"runs the {pool} pool's occurrences and publishes their run events"
        + ("; answers the OneRoster provider's reads" if answers else ""),
        publish=(
            "belltower.run.>",
            *_stream_info(*_ALL_STREAMS),
            *_durable(DUE_STREAM, worker_consumer(pool), pull=True),
            *_kv(CLAIMS_BUCKET, write=[">"]),
            *_kv(CATALOG_BUCKET, write=[f"pool.{pool}"]),
            *calls,
        ),
        # the scheduler's alerts about jobs and runs share the prefix: a worker cannot forge them
        deny_publish=(ALERT_SUBJECTS,),
        subscribe=(*served, _inbox(role)),
        allow_responses=answers,
    )


PERMISSIONS: Mapping[Role, Permissions] = {
    "scheduler": Permissions(
        description="serves the management API, publishes due occurrences, holds the leases",
        publish=(
            "belltower.due.>",
            SCHEDULER_CHANGES,
            f"{SCHEDULER_RUN_NOW}.*",
            *_stream_info(*_ALL_STREAMS),
            *_kv(LEASES_BUCKET, write=[">"]),
            *_kv(CATALOG_BUCKET),
            *_ephemeral(RUNS_STREAM),
            *_ephemeral(f"KV_{LEASES_BUCKET}"),
            # the reconciler (reconcile.py): is a copy still queued, who holds an occurrence's
            # claim, and the verdicts lost and abandoned, as claims and finished events
            f"{API}.STREAM.MSG.GET.{DUE_STREAM}",
            *_kv(CLAIMS_BUCKET, write=[">"]),
            "belltower.run.finished.lost.>",
            "belltower.run.finished.abandoned.>",
            # job state (jobstate.py, overdue.py): failing, recovered and overdue alerts
            ALERT_SUBJECTS,
        ),
        subscribe=(
            "belltower.api.scheduler.>",
            SCHEDULER_CHANGES,
            f"{SCHEDULER_RUN_NOW}.*",
            _inbox("scheduler"),
        ),
        allow_responses=True,
    ),
    "notifier-worker": _worker("notifier", ()),
    "integration-worker": _worker(
        "integration",
        # the daily maintenance job: retention of history and of the ledger
        (
            "belltower.api.scheduler.jobs.list",
            "belltower.api.scheduler.ledger.purge",
            "belltower.api.history.runs.purge",
            # roster syncs: the releases of their held runs (the safety hold, belltower.holds)
            "belltower.api.history.runs.releases",
        ),
        answers=True,
    ),
    "history": Permissions(
        description="consumes run events into PostgreSQL and answers history queries",
        publish=(
            *_stream_info(*_ALL_STREAMS),
            *_durable(RUNS_STREAM, HISTORY_CONSUMER, pull=False),
            f"{API}.CONSUMER.DELETE.{RUNS_STREAM}.{HISTORY_CONSUMER}",
            *_kv(SETTINGS_BUCKET),
        ),
        subscribe=("belltower.api.history.>", HISTORY_DELIVER, _inbox("history")),
        allow_responses=True,
    ),
    "console": Permissions(
        description="calls the management API for the people it authenticates; site settings",
        publish=("belltower.api.>", *_kv(SETTINGS_BUCKET, write=["site"])),
        subscribe=(_inbox("console"),),
    ),
    "integrator": Permissions(
        description="reads run events, live or from its own durable consumer on BELLTOWER_RUNS",
        publish=(
            f"{API}.STREAM.INFO.{RUNS_STREAM}",
            f"{API}.CONSUMER.INFO.{RUNS_STREAM}.*",
            f"{API}.CONSUMER.CREATE.{RUNS_STREAM}.>",
            f"{API}.CONSUMER.DURABLE.CREATE.{RUNS_STREAM}.*",
            f"{API}.CONSUMER.MSG.NEXT.{RUNS_STREAM}.*",
            f"{API}.CONSUMER.DELETE.{RUNS_STREAM}.*",
            f"$JS.ACK.{RUNS_STREAM}.>",
            f"$JS.FC.{RUNS_STREAM}.>",
        ),
        # never history's consumer: it must not be reconfigured, deleted or acknowledged
        deny_publish=(
            f"{API}.CONSUMER.*.{RUNS_STREAM}.{HISTORY_CONSUMER}",
            f"{API}.CONSUMER.*.{RUNS_STREAM}.{HISTORY_CONSUMER}.>",
            f"{API}.CONSUMER.*.*.{RUNS_STREAM}.{HISTORY_CONSUMER}",
            f"$JS.ACK.{RUNS_STREAM}.{HISTORY_CONSUMER}.>",
        ),
        subscribe=("belltower.run.>", _inbox("integrator")),
    ),
    "provisioner": Permissions(
        description="creates and updates the streams and buckets (belltower-streams apply), "
        "before the services start; reads and writes no message",
        publish=_provision(*_PROVISIONED),
        subscribe=(_inbox("provisioner"),),
    ),
}


@dataclass(frozen=True)
class Identity:
    """One NATS user: its role and password (``make dev`` and tests generate them)."""

    role: Role
    user: str
    password: str = field(repr=False)

    def env(self) -> dict[str, str]:
        """The ``BELLTOWER_*`` variables a process of this role connects with."""
        return {"BELLTOWER_NATS_USER": self.user, "BELLTOWER_NATS_PASSWORD": self.password}


def generate_password() -> str:
    """32 letters and digits, the first a letter: nats-server reads a password given by an
    environment variable as a config value, so it must parse as a bare string."""
    first = secrets.choice(string.ascii_letters)
    return first + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(31))


def generate_identities(roles: Iterable[Role] = ROLES) -> dict[Role, Identity]:
    """A fresh random password per role; the user name is the role's name."""
    return {role: Identity(role, role, generate_password()) for role in roles}


def save_identities(path: Path, identities: Mapping[Role, Identity]) -> None:
    """Keep generated identities (``.dev/``) readable by their owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {role: {"user": i.user, "password": i.password} for role, i in identities.items()}
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(json.dumps(data, indent=2) + "\n")


def load_identities(path: Path) -> dict[Role, Identity]:
    data = json.loads(path.read_text())
    return {
        role: Identity(role, data[role]["user"], data[role]["password"])
        for role in ROLES
        if role in data
    }


def load_or_generate(path: Path) -> dict[Role, Identity]:
    """The identities kept in ``path``, adding any role missing there (a new Belltower version)."""
    identities = load_identities(path) if path.exists() else {}
    missing = [role for role in ROLES if role not in identities]
    if missing:
        identities.update(generate_identities(missing))
        save_identities(path, identities)
    return identities


@dataclass(frozen=True)
class ServerTLS:
    """The nats-server's certificate, and the CA that verifies clients when ``verify``."""

    cert: Path
    key: Path
    ca: Path | None = None
    verify: bool = False


def _strings(items: Iterable[str]) -> str:
    return "[" + ", ".join(json.dumps(item) for item in items) + "]"


def _permissions_text(permissions: Permissions) -> str:
    """One user's permissions in nats-server's format, laid out as the Helm chart lays them."""
    publish = f"allow: {_strings(permissions.publish)}"
    if permissions.deny_publish:
        publish += f", deny: {_strings(permissions.deny_publish)}"
    subscribe = f"allow: {_strings(permissions.subscribe)}"
    if permissions.deny_subscribe:
        subscribe += f", deny: {_strings(permissions.deny_subscribe)}"
    text = f"publish: {{{publish}}}, subscribe: {{{subscribe}}}"
    if permissions.allow_responses:
        text += ", allow_responses: true"
    return f"{{{text}}}"


def password_variable(role: str) -> str:
    """The environment variable the chart's NATS reads a role's password from."""
    return f"BELLTOWER_NATS_PASSWORD_{role.upper().replace('-', '_')}"


def server_config(
    identities: Mapping[Role, Identity],
    *,
    tls: ServerTLS | None = None,
    password_env: bool = False,
) -> str:
    """A nats-server config fragment: the users with their permissions, and TLS if given.

    ``password_env`` writes ``$BELLTOWER_NATS_PASSWORD_<ROLE>`` references instead of the
    passwords (the server reads them from its environment): the Helm chart's ``auth.conf``.
    """
    users = []
    for role, identity in identities.items():
        password = f"${password_variable(role)}" if password_env else json.dumps(identity.password)
        users.append(
            f"    {{user: {json.dumps(identity.user)}, password: {password}, "
            f"permissions: {_permissions_text(PERMISSIONS[role])}}}"
        )
    lines = ["authorization {", "  users = [", ",\n".join(users), "  ]", "}"]
    if tls is not None:
        lines += [
            "tls {",
            f"  cert_file: {json.dumps(str(tls.cert))}",
            f"  key_file: {json.dumps(str(tls.key))}",
        ]
        if tls.ca is not None:
            lines.append(f"  ca_file: {json.dumps(str(tls.ca))}")
        if tls.verify:
            lines.append("  verify: true")
        lines.append("}")
    return "\n".join(lines) + "\n"


def chart_users() -> list[dict[str, Any]]:
    """The Helm chart's ``files/nats-users.json``: each role with its permissions.

    The chart fills in each password from its Secret (generated once, or supplied).
    """
    return [
        {
            "role": role,
            "description": PERMISSIONS[role].description,
            **PERMISSIONS[role].as_config(),
        }
        for role in ROLES
    ]


# -- make dev ---------------------------------------------------------------------------------

DEV_IDENTITIES = "nats-users.json"
DEV_CONFIG = "nats-auth.conf"


@dataclass(frozen=True)
class DevAuth:
    """The dev stack's NATS users: the server's config file and each role's identity."""

    config: Path
    identities: Mapping[Role, Identity]

    def server_args(self) -> tuple[str, ...]:
        """Arguments for ``NatsServer(args=...)``: the users and permissions."""
        return ("-c", str(self.config))

    def env(self, role: Role) -> dict[str, str]:
        """The variables a service of ``role`` connects with."""
        return self.identities[role].env()


def prepare_dev(dev_dir: Path) -> DevAuth:
    """Identities kept in ``dev_dir`` (generated on the first start), and the config beside them."""
    identities = load_or_generate(dev_dir / DEV_IDENTITIES)
    config = dev_dir / DEV_CONFIG
    config.touch(mode=0o600, exist_ok=True)
    config.chmod(0o600)
    config.write_text(server_config(identities))
    return DevAuth(config, identities)


def with_dev_identity(settings: Settings, role: Role, dev_dir: Path = Path(".dev")) -> Settings:
    """``settings`` with ``role``'s identity from ``make dev`` when none is configured and the
    URL is the dev stack's own, so a client beside ``make dev`` (an integrator's script) needs no
    configuration."""
    path = dev_dir / DEV_IDENTITIES
    configured = settings.nats_user is not None or settings.nats_creds is not None
    if configured or settings.nats_url != Settings.model_fields["nats_url"].default:
        return settings
    if not path.is_file():
        return settings
    identity = load_identities(path).get(role)
    if identity is None:
        return settings
    return settings.model_copy(
        update={"nats_user": identity.user, "nats_password": SecretStr(identity.password)}
    )
