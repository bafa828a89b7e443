"""The JetStream streams and key-value buckets Belltower uses: declared here, provisioned once.

Creating and changing them is a provisioning step, :func:`apply`, run by one NATS identity
(``provisioner``) with ``belltower-streams apply``: ``make dev`` runs it before the services start,
the Helm chart in a Job on install (services that started first restart until it is done) and
in a pre-upgrade hook Job before each upgrade. It
creates what is missing and, for a stream whose settings (replicas, max age, dedup window)
differ from the declaration, updates it (``BELLTOWER_STREAM_DRIFT=migrate``, the default) or
refuses naming the differences (``refuse``).

A service calls :func:`ensure` at start. On a NATS that asks for credentials (every production
install) its identity may only read the streams' info, so :func:`ensure` only checks them
(:func:`verify`) and refuses to start, naming the provisioning command, when one is missing or
differs. On a NATS without authentication (the tests' private servers, a bare ``nats-server
-js``), or as the provisioner, it provisions itself.

First both check that the server can do what Belltower relies on: JetStream, and per-message
TTL (nats-server 2.11), without which a scheduler lease would never expire and a standby would
never take over.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import re
import sys
from collections.abc import Sequence
from typing import Any

import nats
import pydantic
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    ConsumerConfig,
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError

from . import sitesettings
from .errors import BelltowerError, ConfigurationError
from .natsclient import connect_options
from .settings import Settings
from .subjects import (
    CATALOG_BUCKET,
    CLAIMS_BUCKET,
    DUE_STREAM,
    DUE_SUBJECTS,
    LEASES_BUCKET,
    RUNS_STREAM,
    RUNS_SUBJECTS,
)

log = logging.getLogger(__name__)

MIN_SERVER = (2, 11, 0)
"""Per-message TTL (the scheduler's leases) arrived in nats-server 2.11."""

PROVISIONER = "provisioner"
"""The NATS identity (:mod:`belltower.natsauth` role) that creates and updates the streams."""

COMMAND = "belltower-streams apply"
"""The provisioning command, named in every refusal of a service to start."""

_COMPARED = (
    "subjects",
    "retention",
    "storage",
    "discard",
    "num_replicas",
    "max_age",
    "duplicate_window",
)

_HOW_TO_PROVISION = (
    f"Belltower's streams and buckets are created and updated by `{COMMAND}` run as the "
    f"{PROVISIONER} NATS identity (make dev and the Helm chart's provisioning Job run it before "
    "the services start)"
)


def server_version(text: str) -> tuple[int, int, int]:
    match = re.match(r"^v?(\d+)\.(\d+)\.(\d+)", text.strip())
    if match is None:
        raise ConfigurationError(f"the NATS server reports version {text!r}, which is not x.y.z")
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def check_server(info: dict[str, Any], url: str = "") -> None:
    """Refuse a server that cannot do what Belltower needs, naming what was found and the fix."""
    found = str(info.get("version", "unknown"))
    needed = ".".join(map(str, MIN_SERVER))
    where = f" at {url}" if url else ""
    if server_version(found) < MIN_SERVER:
        raise ConfigurationError(
            f"nats-server {found}{where} is too old: Belltower needs {needed} or newer "
            "(per-message TTL keeps the scheduler's leases; without it a dead scheduler's lease "
            "never expires and no standby takes over). Upgrade the server (Helm: the bundled NATS "
            "chart 1.3 or newer ships 2.11+), or point BELLTOWER_NATS_URL at one that is"
        )
    if not info.get("jetstream"):
        raise ConfigurationError(
            f"nats-server {found}{where} runs without JetStream: start it with -js "
            "(or `jetstream {}` in its configuration)"
        )


def drift(found: StreamConfig, declared: StreamConfig) -> list[str]:
    """What an existing stream has that differs from what the code declares."""
    changes = []
    for key in _COMPARED:
        have, want = getattr(found, key), getattr(declared, key)
        if isinstance(want, float) and isinstance(have, int | float):
            same = abs(float(have) - want) < 1e-3
        else:
            same = have == want
        if not same:
            changes.append(f"{key} is {have!r}, declared {want!r}")
    return changes


def stream_configs(settings: Settings) -> list[StreamConfig]:
    return [
        StreamConfig(
            name=DUE_STREAM,
            description="Occurrences due for a worker pool (work queue)",
            subjects=[DUE_SUBJECTS],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            # Full (a max_bytes or max_msgs an operator set, or the server's storage): refuse
            # the publish, which the scheduler retries from its ledger. The default, discard
            # old, would drop the oldest due occurrences with every publish still acknowledged.
            discard=DiscardPolicy.NEW,
            num_replicas=settings.stream_replicas,
            max_age=settings.due_max_age_s,
            duplicate_window=settings.duplicate_window_s,
        ),
        StreamConfig(
            name=RUNS_STREAM,
            description="Run events (CloudEvents): started, progress, finished",
            subjects=[RUNS_SUBJECTS],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,  # an event log: the oldest events go first
            num_replicas=settings.stream_replicas,
            max_age=settings.runs_max_age_s,
            duplicate_window=settings.duplicate_window_s,
        ),
    ]


def _bucket(
    bucket: str, description: str, *, history: int, ttl: float | None, settings: Settings
) -> KeyValueConfig:
    return KeyValueConfig(
        bucket=bucket,
        description=description,
        history=history,
        ttl=ttl,
        storage=StorageType.FILE,
        replicas=settings.stream_replicas,
    )


def bucket_configs(settings: Settings) -> list[KeyValueConfig]:
    """Every key-value bucket a Belltower process uses."""
    return [
        _bucket(
            CATALOG_BUCKET,
            "Job types each worker pool can run",
            history=1,
            ttl=None,
            settings=settings,
        ),
        _bucket(
            CLAIMS_BUCKET,
            "Which worker runs an occurrence, and its finished event once done",
            history=1,
            ttl=settings.due_max_age_s,
            settings=settings,
        ),
        _bucket(
            LEASES_BUCKET,
            "Scheduler partition leases: which replica dispatches each partition",
            history=1,
            ttl=None,
            settings=settings,
        ),
        _bucket(
            sitesettings.BUCKET,
            "Settings an admin changes while Belltower runs (the console's Settings page)",
            history=10,
            ttl=None,
            settings=settings,
        ),
    ]


def _connection(js: JetStreamContext) -> Any:
    return js._nc  # nats-py offers no public accessor for a context's connection


def _check_server(js: JetStreamContext) -> None:
    nc = _connection(js)
    check_server(dict(nc._server_info), str(nc.connected_url.netloc if nc.connected_url else ""))


def provisions(js: JetStreamContext, settings: Settings) -> bool:
    """Whether a process on this connection creates and updates the streams itself: when the
    server asks for no credentials, or it connects as the provisioner."""
    return not auth_required(js) or settings.nats_user == PROVISIONER


def auth_required(js: JetStreamContext) -> bool:
    """Whether the server this connection reached asks for credentials."""
    return bool(_connection(js)._server_info.get("auth_required"))


def not_provisioned(what: str) -> ConfigurationError:
    """The refusal for a stream or bucket a service needs and may not create itself."""
    return ConfigurationError(f"{what} does not exist. {_HOW_TO_PROVISION}")


async def _apply_stream(js: JetStreamContext, config: StreamConfig, settings: Settings) -> str:
    """Create or migrate one stream; what was done, in words."""
    try:
        info = await js.stream_info(str(config.name))
    except NotFoundError:
        try:
            await js.add_stream(config)
            return f"created stream {config.name}"
        except BadRequestError:  # created meanwhile by another process
            info = await js.stream_info(str(config.name))
    changes = drift(info.config, config)
    if not changes:
        return f"stream {config.name} is as declared"
    if settings.stream_drift == "refuse":
        raise ConfigurationError(
            f"stream {config.name} differs from what Belltower declares: "
            + "; ".join(changes)
            + ". Fix the stream, or set BELLTOWER_STREAM_DRIFT=migrate to have it updated"
        )
    log.warning(
        "stream %s differs from its declaration (%s): updating it",
        config.name,
        "; ".join(changes),
        extra={"action": "stream.migrated", "stream": config.name},
    )
    try:
        await js.update_stream(config)
    except BadRequestError as exc:
        raise ConfigurationError(
            f"stream {config.name} differs from what Belltower declares ({'; '.join(changes)}) "
            f"and the server refused the update: {exc.description}. Recreate the stream "
            "when no occurrence is waiting in it, or change the settings back"
        ) from None
    return f"updated stream {config.name}: " + "; ".join(changes)


async def _apply_bucket(js: JetStreamContext, config: KeyValueConfig) -> str:
    try:
        await js.key_value(config.bucket)
        return f"bucket {config.bucket} exists"
    except NotFoundError:
        with contextlib.suppress(BadRequestError):  # created meanwhile by another process
            await js.create_key_value(config)
        return f"created bucket {config.bucket}"


async def apply(js: JetStreamContext, settings: Settings) -> list[str]:
    """Provision: create every stream and bucket that is missing, migrate or refuse a drifted
    stream (``BELLTOWER_STREAM_DRIFT``). Returns what was done, one line per stream and bucket."""
    _check_server(js)
    done = [await _apply_stream(js, config, settings) for config in stream_configs(settings)]
    done += [await _apply_bucket(js, config) for config in bucket_configs(settings)]
    return done


SHARED_BUCKETS = (CATALOG_BUCKET, CLAIMS_BUCKET)
"""The buckets every service checks at start; the leases and the site settings are checked by
the services that use them (each identity may see only its own)."""


async def problems(
    js: JetStreamContext, settings: Settings, buckets: Sequence[str] | None = None
) -> list[str]:
    """What is missing or differs from the declaration, without changing anything; of the
    buckets only those named in ``buckets`` (default: all)."""
    found = []
    for config in stream_configs(settings):
        try:
            info = await js.stream_info(str(config.name))
        except NotFoundError:
            found.append(f"stream {config.name} does not exist")
            continue
        if changes := drift(info.config, config):
            found.append(f"stream {config.name} differs: " + "; ".join(changes))
    for bucket in bucket_configs(settings):
        if buckets is not None and bucket.bucket not in buckets:
            continue
        try:
            await js.key_value(bucket.bucket)
        except NotFoundError:
            found.append(f"bucket {bucket.bucket} does not exist")
    return found


async def verify(js: JetStreamContext, settings: Settings) -> None:
    """Refuse to start, naming the provisioning command, when a stream or bucket is missing or
    a stream differs from its declaration."""
    _check_server(js)
    if found := await problems(js, settings, SHARED_BUCKETS):
        raise ConfigurationError(
            "; ".join(found)
            + f". {_HOW_TO_PROVISION}; BELLTOWER_STREAM_DRIFT=migrate (its default) has it "
            "update a stream that differs"
        )


async def ensure(js: JetStreamContext, settings: Settings) -> None:
    """A service's start: provision when it may (no authentication, or as the provisioner),
    else verify."""
    if provisions(js, settings):
        await apply(js, settings)
    else:
        await verify(js, settings)


async def ensure_bucket(
    js: JetStreamContext,
    bucket: str,
    description: str,
    *,
    history: int,
    ttl: float | None,
    settings: Settings,
) -> None:
    """One bucket a service needs: created when the service provisions, else only checked."""
    if provisions(js, settings):
        config = _bucket(bucket, description, history=history, ttl=ttl, settings=settings)
        await _apply_bucket(js, config)
        return
    try:
        await js.key_value(bucket)
    except NotFoundError:
        raise not_provisioned(f"bucket {bucket}") from None


# -- belltower-streams ------------------------------------------------------------------------


CONNECT_WAIT_S = 60.0
"""How long ``belltower-streams`` waits for NATS to come up (a Helm Job beside a new NATS)."""


class _Provisioner:
    """The provisioner's connection, and the errors the server sent it (nats-py reports a
    refused credential or subject through the error callback, not as the call's exception)."""

    def __init__(self, settings: Settings, wait_s: float = CONNECT_WAIT_S) -> None:
        self.settings = settings
        self.wait_s = wait_s
        self.seen: list[Exception] = []
        self.nc: Client | None = None

    async def _record(self, exc: Exception) -> None:  # nats-py would print a traceback
        self.seen.append(exc)

    def _said(self, text: str) -> Exception | None:
        return next((e for e in reversed(self.seen) if text in str(e).lower()), None)

    async def __aenter__(self) -> JetStreamContext:
        """Connect, retrying while NATS is unreachable; never retrying a refusal of the
        credentials, which waiting will not change."""
        url = self.settings.nats_url
        deadline = asyncio.get_running_loop().time() + self.wait_s
        while self.nc is None:
            self.seen.clear()
            try:
                self.nc = await nats.connect(
                    url.split(","),
                    name="belltower-streams",
                    connect_timeout=self.settings.request_timeout_s,
                    # one try per round here (nats-py would otherwise retry 60 times itself)
                    max_reconnect_attempts=1,
                    reconnect_time_wait=0.1,
                    error_cb=self._record,
                    **connect_options(self.settings, PROVISIONER),
                )
            except (TimeoutError, OSError, nats.errors.NoServersError) as exc:
                last = self.seen[-1] if self.seen else exc
                if refused := self._said("authorization"):
                    raise ConfigurationError(
                        f"NATS at {url} refused these credentials ({refused}): connect as the "
                        f"{PROVISIONER} identity (BELLTOWER_NATS_USER={PROVISIONER} and its "
                        "BELLTOWER_NATS_PASSWORD, or BELLTOWER_NATS_CREDS)"
                    ) from None
                if asyncio.get_running_loop().time() > deadline:
                    raise ConfigurationError(
                        f"NATS at {url} is not reachable after {self.wait_s:g} s: {last!r}"
                    ) from None
                print(f"waiting for NATS at {url}: {last!r}", file=sys.stderr)
                await asyncio.sleep(2)
        return self.nc.jetstream(timeout=self.settings.request_timeout_s)

    async def __aexit__(self, kind: type[BaseException] | None, exc: Any, tb: Any) -> None:
        if self.nc is not None:
            await self.nc.close()
        violation = self._said("permissions violation")
        if isinstance(exc, nats.errors.TimeoutError) and violation is not None:
            raise ConfigurationError(
                f"NATS refused this identity a provisioning call ({violation}): only the "
                f"{PROVISIONER} identity may create or update Belltower's streams"
            ) from None


async def provision(settings: Settings, wait_s: float = CONNECT_WAIT_S) -> list[str]:
    """Connect with ``settings`` (as the provisioner) and :func:`apply`; what was done."""
    async with _Provisioner(settings, wait_s) as js:
        return await apply(js, settings)


async def _check(settings: Settings, wait_s: float) -> int:
    async with _Provisioner(settings, wait_s) as js:
        _check_server(js)
        found = await problems(js, settings)
    for line in found:
        print(line, flush=True)
    if found:
        print(f"run `{COMMAND}` to create or update them", file=sys.stderr)
        return 1
    print("every stream and bucket is as declared", flush=True)
    return 0


async def _run(command: str, settings: Settings, wait_s: float) -> int:
    if command == "check":
        return await _check(settings, wait_s)
    for line in await provision(settings, wait_s):
        print(line, flush=True)
    return 0


CONSUMER_CHECK_S = 5.0
"""How often a service looks for its durable consumer (:func:`keep_consumer`)."""


async def keep_consumer(
    js: JetStreamContext, stream: str, config: ConsumerConfig, every_s: float = CONSUMER_CHECK_S
) -> None:
    """Recreate the durable consumer ``config`` names whenever it is found missing.

    A durable consumer deleted while its service runs (``nats consumer rm``, a restore, an
    operator's clean-up) leaves the service fetching from nothing, with no error anyone sees;
    the messages stay in the stream (a work queue keeps what nobody acknowledged), so creating
    the consumer again with the same name and configuration resumes delivery where it stopped.
    Runs until cancelled; a broker that does not answer is asked again next round.
    """
    name = str(config.durable_name)
    while True:
        await asyncio.sleep(every_s)
        try:
            await js.consumer_info(stream, name)
            continue
        except NotFoundError:
            pass
        except Exception:  # disconnected, a timeout: the next round asks again
            continue
        try:
            await js.add_consumer(stream, config)
        except Exception as exc:  # the stream itself is gone, or we raced another replica
            log.warning(
                f"consumer {name} on {stream} is missing and could not be created again "
                f"({type(exc).__name__}: {exc}); retrying",
                extra={"action": "consumer.recreate_failed", "stream": stream, "consumer": name},
            )
            continue
        log.warning(
            f"consumer {name} on {stream} was deleted while this service ran: created it again",
            extra={"action": "consumer.recreated", "stream": stream, "consumer": name},
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="belltower-streams",
        description="Create and update Belltower's JetStream streams and key-value buckets "
        "(the provisioning step), or check them. Connects with the BELLTOWER_NATS_* settings: "
        f"as the {PROVISIONER} identity where NATS asks for credentials.",
    )
    parser.add_argument(
        "command",
        choices=("apply", "check"),
        help="apply: create what is missing and update what differs (BELLTOWER_STREAM_DRIFT); "
        "check: say what is missing or differs, exit 1 if anything is",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=CONNECT_WAIT_S,
        metavar="SECONDS",
        help=f"how long to wait for NATS to be reachable (default {CONNECT_WAIT_S:g})",
    )
    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except pydantic.ValidationError as exc:
        for error in exc.errors():
            name = "BELLTOWER_" + "_".join(str(part) for part in error["loc"]).upper()
            print(f"error: {name}: {error['msg']}", file=sys.stderr)
        sys.exit(2)
    try:
        code = asyncio.run(_run(args.command, settings, args.wait))
    except BelltowerError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        code = 1
    except (nats.errors.Error, OSError) as exc:
        print(f"error: cannot provision on NATS: {exc!r}", file=sys.stderr)
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
