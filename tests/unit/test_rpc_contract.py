"""The management API's contract without a broker: every declared operation has its handler on
its service, handlers take and return the declared types, subjects are the ones on the wire, and
each error class crosses the wire as its code and comes back as itself."""

from __future__ import annotations

import typing
from typing import Any

import msgspec
import pytest
from faststream.specification import AsyncAPI

from belltower import operations as ops
from belltower.api import ErrorBody, Job, JobRef, NoRequest, Reply
from belltower.errors import (
    BelltowerError,
    Conflict,
    InternalError,
    InvalidInput,
    NotFound,
    error_class,
    on_the_wire,
    wire_codes,
)
from belltower.rpc import Endpoint, error_reply, raise_error, serves
from belltower.settings import Settings
from belltower.worker import Worker
from belltower_history.app import HistoryService
from belltower_integration.jobs import registry
from belltower_integration.oneroster.provider import RosterProvider
from belltower_scheduler.app import SchedulerService
from belltower_scheduler.lease import Deposed
from belltower_scheduler.operations import Operations
from belltower_scheduler.settings import SchedulerSettings

WIRE = {
    "scheduler": [
        "job_types.list", "jobs.create", "jobs.list", "jobs.get", "jobs.delete", "jobs.pause",
        "jobs.resume", "jobs.run_now", "jobs.why", "jobs.import", "jobs.import_stage",
        "jobs.import_finish", "ledger.purge",
        "calendars.create", "calendars.list", "calendars.get", "calendars.delete",
        "calendars.add_days", "calendars.update", "calendars.remove_days", "calendars.diff",
        "jobs.backfill", "jobs.decide", "decisions.list",
    ],
    "history": [
        "runs.list", "runs.page", "runs.last", "runs.get", "runs.purge",
        "runs.release", "runs.release_started", "runs.releases",
    ],
    "integration": ["oneroster.read"],
}  # fmt: skip
"""The operations clients of earlier releases call: their subjects must not change."""


def services() -> dict[str, Any]:
    return {
        "scheduler": SchedulerService(SchedulerSettings()),
        "history": HistoryService(Settings()),
        "integration": Worker("integration", registry, Settings(), answers=RosterProvider),
    }


def test_the_declared_operations_are_the_ones_on_the_wire() -> None:
    for service, names in WIRE.items():
        declared = ops.declared(service)  # type: ignore[arg-type]
        assert [op.name for op in declared] == names
        assert all(op.subject == f"belltower.api.{service}.{op.name}" for op in declared)
    assert len(ops.declared()) == sum(len(names) for names in WIRE.values())


@pytest.mark.parametrize("service", ["scheduler", "history", "integration"])
def test_every_declared_operation_is_subscribed_on_its_service(service: str) -> None:
    """Built as the process builds it (no connection needed): one subscriber per operation, in
    the service's queue group, answering through a handler for that very declaration."""
    svc = services()[service]
    assert svc.api.operations == ops.declared(service)  # type: ignore[arg-type]
    spec = AsyncAPI(svc.broker, schema_version="3.0.0").to_specification().to_jsonable()
    subscribed = {
        ch["bindings"]["nats"]["subject"]: ch["bindings"]["nats"].get("queue")
        for ch in spec["channels"].values()
    }
    for op in ops.declared(service):  # type: ignore[arg-type]
        assert subscribed.get(op.subject) == service, op


@pytest.mark.parametrize(
    ("service", "handlers"),
    [("scheduler", Operations), ("history", HistoryService), ("integration", RosterProvider)],
)
def test_each_handler_takes_the_declared_request_and_returns_the_declared_reply(
    service: str, handlers: type
) -> None:
    endpoint = Endpoint(service, handlers)  # type: ignore[arg-type]
    for op, method in endpoint.routes.values():
        hints = typing.get_type_hints(method)
        request = next(v for k, v in hints.items() if k != "return")
        assert (request, hints["return"]) == (op.request, op.reply), method.__name__


def test_an_endpoint_refuses_a_class_that_misses_or_borrows_an_operation() -> None:
    class Partial:
        @serves(ops.JOBS_GET)
        async def get(self, ref: JobRef) -> Job:
            raise NotFound(ref.id)

    with pytest.raises(ValueError, match=r"no handler for .*jobs\.create"):
        Endpoint("scheduler", Partial)
    with pytest.raises(ValueError, match="another service"):
        Endpoint("history", Partial)

    class Twice(Partial):
        @serves(ops.JOBS_GET)
        async def fetch(self, ref: JobRef) -> Job:
            raise NotFound(ref.id)

    with pytest.raises(ValueError, match="two handlers"):
        Endpoint("scheduler", Twice)


def test_a_handler_for_an_undeclared_operation_is_refused() -> None:
    lookalike = ops.Operation("scheduler", "jobs.list", NoRequest, list[Job], "not declared")
    with pytest.raises(ValueError, match="not declared"):
        serves(lookalike)
    with pytest.raises(ValueError, match="declared twice"):
        ops.declare("history", "runs.get", NoRequest, Job, "again")
    assert ops.find("history", "runs.get") is ops.RUNS_GET


async def test_an_endpoint_not_yet_attached_answers_unavailable() -> None:
    endpoint = Endpoint("history", HistoryService)
    reply = msgspec.json.decode(await endpoint.answer(ops.RUNS_GET, b"{}"), type=Reply)
    assert reply.error is not None and reply.error.code == "unavailable"


def test_every_error_code_names_one_class_of_the_hierarchy() -> None:
    table = wire_codes()
    assert set(table) >= {"error", "invalid", "not_found", "conflict", "unavailable", "internal"}
    for code, cls in table.items():
        assert issubclass(cls, BelltowerError) and cls.code == code
        assert error_class(code) is cls
    assert error_class("no-such-code") is BelltowerError

    class Another(BelltowerError):
        code = "not_found"

    with pytest.raises(TypeError, match="already NotFound"):
        on_the_wire(Another)
    assert error_class("not_found") is NotFound


def _round_trip(exc: Exception) -> BelltowerError:
    reply = msgspec.json.decode(error_reply(exc), type=Reply)
    assert not reply.ok
    with pytest.raises(BelltowerError) as raised:
        raise_error(reply.error)
    return raised.value


@pytest.mark.parametrize("cls", sorted(wire_codes().values(), key=lambda c: c.code))
def test_each_error_class_comes_back_as_itself(cls: type[BelltowerError]) -> None:
    if cls is InvalidInput:
        sent: BelltowerError = InvalidInput("schedule.every", "is zero", "seconds > 0")
    else:
        sent = cls(f"{cls.__name__} happened; do this instead")
    back = _round_trip(sent)
    assert type(back) is cls
    assert (back.message, str(back)) == (sent.message, sent.message)
    assert back.wire_fields() == sent.wire_fields()


def test_errors_outside_the_table_keep_their_message() -> None:
    back = _round_trip(ValueError("bad math"))
    assert type(back) is InternalError
    assert back.message == "internal error: ValueError: bad math"
    back = _round_trip(Deposed("partition 3 is led by another replica"))  # not on the wire
    assert type(back) is BelltowerError
    assert back.message == "partition 3 is led by another replica"
    with pytest.raises(Conflict, match="still going"):
        raise_error(ErrorBody(code="conflict", message="a run is still going"))


def test_the_asyncapi_document_lists_each_operation_with_its_messages() -> None:
    from belltower import asyncapi

    document = asyncapi.document()
    listed = {ch["address"]: ch for ch in document["channels"].values()}
    for op in ops.declared():
        channel = listed[op.subject]
        messages = channel["messages"]
        stem = op.service + "".join(w.capitalize() for w in op.name.replace("_", ".").split("."))
        stem = stem[0].upper() + stem[1:]
        assert messages["request"]["name"] == f"{stem}Request"
        assert messages["request"]["summary"] == f"A `{op.request.__name__}`, JSON-encoded."
        listed_of = getattr(op.reply, "__args__", None)
        result = f"list[{listed_of[0].__name__}]" if listed_of else op.reply.__name__
        assert messages["reply"]["name"] == f"{stem}Reply"
        assert messages["reply"]["summary"] == f"A `Reply[{result}]`, JSON-encoded."
    jobs_get = listed[ops.JOBS_GET.subject]["messages"]
    assert (jobs_get["request"]["name"], jobs_get["reply"]["name"]) == (
        "SchedulerJobsGetRequest",
        "SchedulerJobsGetReply",
    )
    runs_list = listed[ops.RUNS_LIST.subject]["messages"]["reply"]
    assert runs_list["name"] == "HistoryRunsListReply"
    assert runs_list["payload"]["properties"]["result"]["items"] == {
        "$ref": "#/components/schemas/RunRecord"
    }
    assert {"JobSpec", "RunQuery", "ErrorBody", "RunRecord"} <= document["components"][
        "schemas"
    ].keys()
