"""Declares the JetStream streams and key-value buckets Belltower uses, idempotently.

Every service calls :func:`ensure` at start, so whichever starts first creates them and a
changed setting (replicas, max age, dedup window) is applied on the next start, or refused with
the differences named when ``BELLTOWER_STREAM_DRIFT=refuse``. First it checks that the server can
do what Belltower relies on: JetStream, and per-message TTL (nats-server 2.11), without which a
scheduler lease would never expire and a standby would never take over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any

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

from .errors import ConfigurationError
from .settings import Settings
from .subjects import (
    CATALOG_BUCKET,
    CLAIMS_BUCKET,
    DUE_STREAM,
    DUE_SUBJECTS,
    RUNS_STREAM,
    RUNS_SUBJECTS,
)

log = logging.getLogger(__name__)

MIN_SERVER = (2, 11, 0)
"""Per-message TTL (the scheduler's leases) arrived in nats-server 2.11."""

_COMPARED = (
    "subjects",
    "retention",
    "storage",
    "discard",
    "num_replicas",
    "max_age",
    "duplicate_window",
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


async def ensure(js: JetStreamContext, settings: Settings) -> None:
    nc = js._nc  # nats-py offers no public accessor for a context's connection
    check_server(dict(nc._server_info), str(nc.connected_url.netloc if nc.connected_url else ""))
    for config in stream_configs(settings):
        try:
            info = await js.stream_info(str(config.name))
        except NotFoundError:
            with contextlib.suppress(BadRequestError):  # created meanwhile by another service
                await js.add_stream(config)
                continue
            info = await js.stream_info(str(config.name))
        changes = drift(info.config, config)
        if not changes:
            continue
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
    await ensure_bucket(
        js,
        CATALOG_BUCKET,
        "Job types each worker pool can run",
        history=1,
        ttl=None,
        settings=settings,
    )
    await ensure_bucket(
        js,
        CLAIMS_BUCKET,
        "Which worker runs an occurrence, and its finished event once done",
        history=1,
        ttl=settings.due_max_age_s,
        settings=settings,
    )


async def ensure_bucket(
    js: JetStreamContext,
    bucket: str,
    description: str,
    *,
    history: int,
    ttl: float | None,
    settings: Settings,
) -> None:
    try:
        await js.key_value(bucket)
    except NotFoundError:
        with contextlib.suppress(BadRequestError):
            await js.create_key_value(
                KeyValueConfig(
                    bucket=bucket,
                    description=description,
                    history=history,
                    ttl=ttl,
                    storage=StorageType.FILE,
                    replicas=settings.stream_replicas,
                )
            )


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
