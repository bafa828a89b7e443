"""The AsyncAPI 3.0 document of Belltower's NATS messages, generated from the code.

faststream lays out the servers, channels and operations from publishers declared on a
documentation-only broker, with the subjects built by :mod:`belltower.subjects`; the message
payloads are the JSON Schemas msgspec derives from the Structs in :mod:`belltower.events`
(faststream only derives schemas from pydantic models). The management API's request-reply
operations are listed from their declarations in :mod:`belltower.operations`. ``docs/asyncapi.yaml`` is this
document (``python -m belltower.asyncapi > docs/asyncapi.yaml``; a test keeps them equal),
and every service serves it on ``/asyncapi.json``.
"""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass
from typing import Any

import msgspec
import yaml
from faststream.nats import NatsBroker
from faststream.specification import AsyncAPI

from . import operations
from .api import ErrorBody
from .errors import wire_codes
from .events import (
    RUN_STATUSES,
    DueOccurrence,
    JobFailing,
    JobRecovered,
    RunFinished,
    RunOverdue,
    RunProgress,
    RunStarted,
)
from .settings import DEV_NATS_PORT
from .subjects import (
    POOLS,
    alert_subject,
    due_subject,
    run_finished_subject,
    run_progress_subject,
    run_started_subject,
)

VERSION = "1.0.0"

_JOB_TYPE = {
    "description": (
        "The job type's dotted name, e.g. `system.canary`: one or more subject tokens, so "
        "subscribe with `>` after the fixed tokens to match every type."
    ),
    "examples": ["system.canary", "files.batch_folder_cleanup"],
}
_STATUS = {
    "description": "How the run ended.",
    "enum": list(RUN_STATUSES),
}
_POOL = {"description": "The worker pool that runs the job type.", "enum": list(POOLS)}

_EVENT_HEADERS = {
    "type": "object",
    "properties": {
        "Nats-Msg-Id": {
            "type": "string",
            "description": "Equals the event's `id`: JetStream drops a second copy within its "
            "duplicate window, and a consumer can de-duplicate on it.",
        },
        "Content-Type": {"type": "string", "const": "application/cloudevents+json"},
        "traceparent": {
            "type": "string",
            "description": "W3C trace context of the run (same trace id as `data.trace_id`).",
        },
    },
    "required": ["Nats-Msg-Id"],
}


@dataclass(frozen=True)
class Channel:
    key: str
    subject: str
    payload: type[msgspec.Struct]
    title: str
    description: str
    parameters: dict[str, dict[str, Any]]
    cloudevent: bool = True


CHANNELS = (
    Channel(
        "runFinished",
        run_finished_subject("{status}", "{job_type}"),
        RunFinished,
        "Run finished",
        "Published once per run when it ends, as a CloudEvents 1.0 structured JSON event "
        "(type `io.belltower.run.finished.v1`, subject = job id, id = run id). The event for "
        "integrators: subscribe to `belltower.run.finished.>` for every outcome, "
        "`belltower.run.finished.failed.>` for failures, "
        "`belltower.run.finished.*.system.canary` for one job type.",
        {"status": _STATUS, "job_type": _JOB_TYPE},
    ),
    Channel(
        "runStarted",
        run_started_subject("{job_type}"),
        RunStarted,
        "Run started",
        "Published when a worker starts an occurrence (CloudEvents 1.0, type "
        "`io.belltower.run.started.v1`, id = `<run id>.started.<attempt>`).",
        {"job_type": _JOB_TYPE},
    ),
    Channel(
        "runProgress",
        run_progress_subject("{job_type}"),
        RunProgress,
        "Run progress",
        "Progress a long run reports (CloudEvents 1.0, type `io.belltower.run.progress.v1`).",
        {"job_type": _JOB_TYPE},
    ),
    Channel(
        "jobFailing",
        alert_subject("failing", "{job_type}"),
        JobFailing,
        "Job failing",
        "A job's consecutive failed runs reached its `alert_after_failures` (CloudEvents 1.0, "
        "type `io.belltower.job.failing.v1`, subject = job id, id = `<occurrence id>.failing` "
        "of the run that reached it: once per streak, whatever is redelivered). History mails "
        "it to the job's result-mail addresses; `data.paused` says whether the job was paused.",
        {"job_type": _JOB_TYPE},
    ),
    Channel(
        "jobRecovered",
        alert_subject("recovered", "{job_type}"),
        JobRecovered,
        "Job recovered",
        "The first succeeded run after a streak that raised `job.failing` (CloudEvents 1.0, "
        "type `io.belltower.job.recovered.v1`, id = `<occurrence id>.recovered`); "
        "`data.streak` is the streak that ended.",
        {"job_type": _JOB_TYPE},
    ),
    Channel(
        "runOverdue",
        alert_subject("overdue", "{job_type}"),
        RunOverdue,
        "Run overdue",
        "A run has gone longer than `data.factor` times its job's expected duration (p95 of "
        "its latest succeeded runs), before its hard timeout (CloudEvents 1.0, type "
        "`io.belltower.run.overdue.v1`, id = `<occurrence id>.overdue`, once per run).",
        {"job_type": _JOB_TYPE},
    ),
    Channel(
        "occurrenceDue",
        due_subject("{pool}", "{job_type}"),
        DueOccurrence,
        "Occurrence due (internal)",
        "Internal work queue from the scheduler to the worker pools; `Nats-Msg-Id` is the "
        "occurrence id. Not for integrators: consuming it takes work away from the workers.",
        {"pool": _POOL, "job_type": _JOB_TYPE},
        cloudevent=False,
    ),
)


def broker() -> NatsBroker:
    """A broker that is never connected, holding one publisher per documented channel."""
    docs = NatsBroker(
        f"nats://localhost:{DEV_NATS_PORT}",
        description="NATS JetStream: streams BELLTOWER_RUNS (run events) and BELLTOWER_DUE (work)",
    )
    for channel in CHANNELS:
        docs.publisher(channel.subject, title=channel.key, description=channel.description)
    return docs


@functools.cache
def document() -> dict[str, Any]:
    """The AsyncAPI document as JSON-compatible data."""
    spec: dict[str, Any] = (
        AsyncAPI(
            broker(),
            title="Belltower events",
            version=VERSION,
            description=(
                "Messages Belltower publishes on NATS JetStream. Run events are CloudEvents 1.0 "
                "in structured JSON mode; subjects run from general to specific so wildcards "
                "select by event, outcome and job type. See docs/integrators.md. The "
                "`belltower.api.>` channels are the management API's request-reply operations "
                "(belltower.operations), for the console (which the CLI goes through) and the services."
            ),
            schema_version="3.0.0",
        )
        .to_specification()
        .to_jsonable()
    )
    order = [c.key for c in CHANNELS]
    for section in ("channels", "operations"):
        spec[section] = {key: spec[section][key] for key in order}
    _, schemas = msgspec.json.schema_components(
        [c.payload for c in CHANNELS], ref_template="#/components/schemas/{name}"
    )
    management = _management(spec)
    components = spec.setdefault("components", {})
    components["schemas"] = dict(sorted((schemas | management).items()))
    components["messages"] = dict(sorted(_event_messages(spec).items()))
    # A plain JSON tree: no shared objects, so the YAML has no anchors.
    return json.loads(json.dumps(_asyncapi_schemas(spec)))


def _event_messages(spec: dict[str, Any]) -> dict[str, Any]:
    """The event channels' messages under their real names (``RunFinished``), in place of the
    ``runFinished:Message`` placeholders faststream lays out, with the channels and operations
    pointing at them."""
    placeholders = spec["components"].get("messages", {})
    messages: dict[str, Any] = {}
    for channel in CHANNELS:
        name = channel.payload.__name__
        entry = spec["channels"][channel.key]
        entry["title"] = channel.title
        entry["parameters"] = channel.parameters
        for ref in entry["messages"].values():
            placeholders.pop(ref["$ref"].rsplit("/", 1)[1].replace("%20", " "), None)
        entry["messages"] = {name: {"$ref": f"#/components/messages/{name}"}}
        spec["operations"][channel.key]["messages"] = [
            {"$ref": f"#/channels/{channel.key}/messages/{name}"}
        ]
        message: dict[str, Any] = {
            "name": name,
            "title": channel.title,
            "summary": channel.description.split(". ", 1)[0].rstrip(".") + ".",
            "contentType": "application/cloudevents+json"
            if channel.cloudevent
            else "application/json",
            "payload": {"$ref": f"#/components/schemas/{name}"},
        }
        if channel.cloudevent:
            message["headers"] = _EVENT_HEADERS
        messages[name] = message
    return messages


def _asyncapi_schemas(schemas: Any) -> Any:
    """msgspec's JSON Schemas (anywhere in the document) in the AsyncAPI Schema dialect: its
    ``discriminator`` is the name of the property (a string), not OpenAPI's
    ``{propertyName, mapping}`` object."""
    if isinstance(schemas, list):
        return [_asyncapi_schemas(item) for item in schemas]
    if not isinstance(schemas, dict):
        return schemas
    out = {key: _asyncapi_schemas(value) for key, value in schemas.items()}
    discriminator = out.get("discriminator")
    if isinstance(discriminator, dict):
        out["discriminator"] = discriminator["propertyName"]
    return out


def _key(op: operations.Operation[Any, Any]) -> str:
    """``scheduler`` ``jobs.run_now`` -> ``schedulerJobsRunNow``."""
    words = f"{op.service}.{op.name}".replace("_", ".").split(".")
    return words[0] + "".join(w.capitalize() for w in words[1:])


def _type_name(type_: Any) -> str:
    """``Job``, or ``list[Job]`` for a list of them (the Python type a client decodes)."""
    args = getattr(type_, "__args__", ())
    return f"list[{_type_name(args[0])}]" if args else str(type_.__name__)


def _pascal(key: str) -> str:
    """``schedulerJobsRunNow`` -> ``SchedulerJobsRunNow``, the stem of its message names."""
    return key[:1].upper() + key[1:]


def _management(spec: dict[str, Any]) -> dict[str, Any]:
    """The management API's request-reply operations from :mod:`belltower.operations`, added to
    ``spec``; returns the JSON Schemas their messages use."""
    declared = operations.declared()
    ref = "#/components/schemas/{name}"
    payloads, schemas = msgspec.json.schema_components(
        [ErrorBody] + [t for op in declared for t in (op.request, op.reply)], ref_template=ref
    )
    error = payloads[0]
    for i, op in enumerate(declared):
        key = _key(op)
        request, result = payloads[1 + 2 * i], payloads[2 + 2 * i]
        reply = {
            "type": "object",
            "description": "`ok` with the `result`, or not ok with the `error`, whose `code` "
            f"names the error class: {', '.join(sorted(wire_codes()))}.",
            "properties": {"ok": {"type": "boolean"}, "result": result, "error": error},
            "required": ["ok"],
        }
        spec["channels"][key] = {
            "address": op.subject,
            "title": f"{op.service} {op.name}",
            "description": f"{op.summary} Request-reply, served by the "
            f"{'integration worker' if op.service == 'integration' else op.service} "
            f"(queue group `{op.service}`); for the console and the services, not for people or integrators.",
            "messages": {
                "request": {
                    "name": f"{_pascal(key)}Request",
                    "title": f"{op.name} request",
                    "summary": f"A `{_type_name(op.request)}`, JSON-encoded.",
                    "contentType": "application/json",
                    "payload": request,
                },
                "reply": {
                    "name": f"{_pascal(key)}Reply",
                    "title": f"{op.name} reply",
                    "summary": f"A `Reply[{_type_name(op.reply)}]`, JSON-encoded.",
                    "contentType": "application/json",
                    "payload": reply,
                },
            },
        }
        channel = f"#/channels/{key}"
        spec["operations"][key] = {
            "action": "receive",
            "channel": {"$ref": channel},
            "messages": [{"$ref": f"{channel}/messages/request"}],
            "reply": {
                "channel": {"$ref": channel},
                "messages": [{"$ref": f"{channel}/messages/reply"}],
            },
        }
    return schemas


def to_yaml() -> str:
    return yaml.safe_dump(document(), sort_keys=False, allow_unicode=True, width=100)


def main() -> None:
    """Print the document as YAML (``python -m belltower.asyncapi > docs/asyncapi.yaml``)."""
    sys.stdout.write(to_yaml())


if __name__ == "__main__":
    main()
