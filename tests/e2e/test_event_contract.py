"""What the services really publish on NATS matches docs/asyncapi.yaml: each message a real run
sends is on a documented channel and validates against that channel's payload schema."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import nats
import pytest
from jsonschema import Draft202012Validator

from belltower import asyncapi

pytestmark = pytest.mark.slow


def channel_pattern(address: str) -> re.Pattern[str]:
    """``belltower.run.finished.{status}.{job_type}`` as a regex; a job type spans tokens."""
    parts = re.split(r"(\{[a-z_]+\})", address)
    regex = "".join(
        (r"[\w-]+(?:\.[\w-]+)*" if part == "{job_type}" else r"[\w-]+")
        if part.startswith("{")
        else re.escape(part)
        for part in parts
    )
    return re.compile(regex + r"\Z")


def documented(document: dict[str, Any]) -> list[tuple[re.Pattern[str], str, dict[str, Any]]]:
    """(subject pattern, channel key, message) for every event channel."""
    out = []
    for key, channel in document["channels"].items():
        if channel["address"].startswith("belltower.api."):
            continue
        (ref,) = channel["messages"].values()
        name = ref["$ref"].rsplit("/", 1)[1]
        out.append(
            (channel_pattern(channel["address"]), key, document["components"]["messages"][name])
        )
    return out


def validator_for(document: dict[str, Any], message: dict[str, Any]) -> Draft202012Validator:
    schema = {"components": document["components"], **message["payload"]}
    return Draft202012Validator(schema)


async def capture(url: str, seconds_after: float, run) -> list[nats.aio.msg.Msg]:  # type: ignore[no-untyped-def]
    nc = await nats.connect(url)
    seen: list[nats.aio.msg.Msg] = []

    async def keep(msg: nats.aio.msg.Msg) -> None:
        seen.append(msg)

    await nc.subscribe("belltower.due.>", cb=keep)
    await nc.subscribe("belltower.run.>", cb=keep)
    await nc.flush()
    await asyncio.to_thread(run)
    await asyncio.sleep(seconds_after)
    await nc.close()
    return seen


def test_every_message_a_run_sends_is_documented_and_valid(stack, cli, fresh_nats) -> None:
    def runs() -> None:
        ok = cli.json("jobs", "create", "--type", "system.canary", "--title", "Contract", "--every", "1h", "--paused", "--param", "steps=2", "--param", "sleep_s=0.2")  # fmt: skip
        bad = cli.json("jobs", "create", "--type", "system.canary", "--title", "Contract fails", "--every", "1h", "--paused", "--param", "fail=true")  # fmt: skip
        cli.run("jobs", "run-now", ok["id"], "--wait")
        cli.run("jobs", "run-now", bad["id"], "--wait", check=False)

    seen = asyncio.run(capture(fresh_nats.url, 1.0, runs))
    document = asyncapi.document()
    channels = documented(document)
    by_channel: dict[str, int] = {}
    for msg in seen:
        matches = [
            (key, message) for pattern, key, message in channels if pattern.match(msg.subject)
        ]
        assert len(matches) == 1, f"{msg.subject} is on {len(matches)} documented channels"
        key, message = matches[0]
        body = json.loads(msg.data)
        errors = sorted(validator_for(document, message).iter_errors(body), key=str)
        assert not errors, f"{msg.subject}: {[e.message for e in errors][:5]}\n{body}"
        headers = msg.headers or {}
        for name in message.get("headers", {}).get("required", []):
            assert name in headers, f"{msg.subject} lacks header {name}"
        if message["contentType"] == "application/cloudevents+json":
            assert headers.get("Content-Type") == "application/cloudevents+json"
        by_channel[key] = by_channel.get(key, 0) + 1
    assert by_channel.get("occurrenceDue") == 2, by_channel
    assert by_channel.get("runStarted") == 2, by_channel
    assert by_channel.get("runProgress", 0) >= 2, by_channel
    assert by_channel.get("runFinished") == 2, by_channel
    statuses = {
        msg.subject.split(".")[3]
        for msg in seen
        if msg.subject.startswith("belltower.run.finished.")
    }
    assert statuses == {"succeeded", "failed"}


def test_the_subject_patterns_refuse_what_is_not_documented() -> None:
    """The matching above can fail: a subject outside the documented channels matches none."""
    channels = documented(asyncapi.document())
    for subject in ("belltower.run.finished", "belltower.run.finishedx.ok.a", "belltower.other.x"):
        assert not [key for pattern, key, _ in channels if pattern.match(subject)]
    assert [
        key for pattern, key, _ in channels if pattern.match("belltower.run.finished.failed.a.b")
    ] == ["runFinished"]
