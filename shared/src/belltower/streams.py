"""Declares the JetStream streams and key-value buckets Belltower uses, idempotently.

Every service calls :func:`ensure` at start, so whichever starts first creates them and a
changed setting (replicas, retention) is applied on the next start.
"""

from __future__ import annotations

import contextlib

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from .settings import Settings
from .subjects import (
    CATALOG_BUCKET,
    CLAIMS_BUCKET,
    DUE_STREAM,
    DUE_SUBJECTS,
    RUNS_STREAM,
    RUNS_SUBJECTS,
)


def stream_configs(settings: Settings) -> list[StreamConfig]:
    return [
        StreamConfig(
            name=DUE_STREAM,
            description="Occurrences due for a worker pool (work queue)",
            subjects=[DUE_SUBJECTS],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
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
            num_replicas=settings.stream_replicas,
            max_age=settings.runs_max_age_s,
            duplicate_window=settings.duplicate_window_s,
        ),
    ]


async def ensure(js: JetStreamContext, settings: Settings) -> None:
    for config in stream_configs(settings):
        try:
            await js.stream_info(str(config.name))
        except NotFoundError:
            with contextlib.suppress(BadRequestError):  # created meanwhile by another service
                await js.add_stream(config)
                continue
        await js.update_stream(config)
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
