"""Receive Belltower's run-finished events with plain nats-py: no Belltower code needed.

    pip install nats-py
    NATS_USER=integrator NATS_PASSWORD=... \
        python subscribe_run_finished.py nats://localhost:14222 'belltower.run.finished.failed.>'

Each event is a CloudEvents 1.0 JSON object (see docs/integrators.md). The durable consumer
remembers what was acknowledged, so a restart of this script resumes where it stopped;
delivery is at least once, so de-duplicate on the event's ``id``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator

import nats
from nats.errors import TimeoutError as NatsTimeout

STREAM = "BELLTOWER_RUNS"


async def run_finished_events(
    url: str,
    subject: str = "belltower.run.finished.>",
    durable: str = "my-integration",
) -> AsyncIterator[dict]:
    """Yield run-finished events; each is acknowledged when the next one is asked for."""
    # Belltower's integrator identity (operator guide, "Security model"): its user, and replies
    # only on its own inbox prefix.
    nc = await nats.connect(
        url,
        user=os.environ.get("NATS_USER"),
        password=os.environ.get("NATS_PASSWORD"),
        inbox_prefix="_INBOX.integrator",
    )
    try:
        js = nc.jetstream()
        subscription = await js.pull_subscribe(subject, durable=durable, stream=STREAM)
        while True:
            try:
                messages = await subscription.fetch(batch=10, timeout=5)
            except NatsTimeout:
                continue
            for message in messages:
                yield json.loads(message.data)
                await message.ack()
    finally:
        await nc.close()


async def main(url: str, subject: str) -> None:
    async for event in run_finished_events(url, subject):
        run = event["data"]
        print(
            f"{event['time']}  {run['status']:<10} {run['job_type']:<30} "
            f"job {event['subject']}  run {event['id']}  {run['duration_ms']} ms  "
            f"trace {run['trace_id']}  {run['summary']}"
        )


if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else "nats://localhost:14222"
    subject = sys.argv[2] if len(sys.argv) > 2 else "belltower.run.finished.>"
    asyncio.run(main(url, subject))
