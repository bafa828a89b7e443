"""The CLI has one way in: the console's HTTP API. It carries no NATS client and no management-API
client, so no command can reach the scheduler except through the console's role check and audit."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from belltower.cli.output import EXIT_CODES, EXIT_DENIED, NotAllowed
from belltower.cli.remote import Profile, error_of
from belltower.errors import Conflict, InternalError, InvalidInput, NotFound, Unavailable

PROBE = """
import json, sys
import belltower.cli.app
print(json.dumps({m: m in sys.modules for m in ("nats", "belltower.rpc", "belltower.natsclient")}))
"""


def test_the_cli_loads_no_nats_client() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(out.stdout) == {
        "nats": False,
        "belltower.rpc": False,
        "belltower.natsclient": False,
    }


PROFILE = Profile(url="https://bt.school.edu", token="bt_x", source="the environment")


def _problem(status: int, detail: str, errors: list[dict] | None = None) -> httpx.Response:
    body: dict = {
        "type": "urn:belltower:problem:x",
        "title": "x",
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    return httpx.Response(status, json=body, headers={"content-type": "application/problem+json"})


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (401, NotAllowed),
        (403, NotAllowed),
        (404, NotFound),
        (409, Conflict),
        (413, InvalidInput),
        (422, InvalidInput),
        (429, Unavailable),
        (502, InternalError),
        (503, Unavailable),
    ],
)
def test_each_problem_status_is_raised_as_its_error_class(status: int, cls: type) -> None:
    assert type(error_of(_problem(status, "why"), PROFILE)) is cls


def test_field_errors_keep_the_cli_wording_and_a_401_says_what_to_do() -> None:
    refused = error_of(
        _problem(
            422,
            "cron: Bad minute",
            [
                {"field": "cron", "message": "Bad minute", "accepted": "0-59"},
                {"field": "title", "message": "is empty"},
            ],
        ),
        PROFILE,
    )
    assert isinstance(refused, InvalidInput) and refused.field == "cron"
    assert refused.message == "cron: Bad minute (accepted: 0-59); title: is empty"
    denied = error_of(_problem(401, "the API token is wrong, expired or revoked"), PROFILE)
    assert "https://bt.school.edu refused the token from the environment" in denied.message
    assert "create-token" in denied.message
    assert dict(EXIT_CODES)[NotAllowed] == EXIT_DENIED == 5
    proxy = error_of(httpx.Response(502, text="<html>Bad Gateway</html>"), PROFILE)
    assert isinstance(proxy, InternalError) and "HTTP 502" in proxy.message


CLI_TO_API = {
    "job-types": [("get", "/job-types")],
    "jobs create": [("post", "/jobs")],
    "jobs list": [("get", "/jobs")],
    "jobs show": [("get", "/jobs/{job_id}")],
    "jobs delete": [("delete", "/jobs/{job_id}")],
    "jobs pause": [("post", "/jobs/{job_id}/pause")],
    "jobs resume": [("post", "/jobs/{job_id}/resume")],
    "jobs update": [("patch", "/jobs/{job_id}")],
    "jobs run-now": [("post", "/jobs/{job_id}/run"), ("get", "/runs/{run_id}")],
    "jobs why": [("get", "/jobs/{job_id}/why")],
    "jobs export": [("get", "/export")],
    "jobs import": [("post", "/import")],
    "jobs preview": [("get", "/jobs/{job_id}/preview"), ("get", "/calendars/{name}")],
    "jobs backfill": [("get", "/jobs/{job_id}"), ("post", "/jobs/{job_id}/backfill")],
    "jobs decide": [("post", "/jobs/{job_id}/decision")],
    "jobs decisions": [("get", "/decisions")],
    "calendars create": [("post", "/calendars")],
    "calendars list": [("get", "/calendars")],
    "calendars show": [("get", "/calendars/{name}")],
    "calendars delete": [("delete", "/calendars/{name}")],
    "calendars add-days": [("post", "/calendars/{name}/days")],
    "calendars remove-days": [("post", "/calendars/{name}/remove-days")],
    "calendars update": [("patch", "/calendars/{name}")],
    "calendars import": [("post", "/calendars/{name}/import")],
    "calendars diff": [("post", "/calendars/{name}/diff")],
    "runs list": [("get", "/runs")],
    "runs show": [("get", "/runs/{run_id}")],
    "runs release": [("post", "/runs/{run_id}/release")],
    "schedule preview": [("post", "/schedule/preview"), ("get", "/calendars/{name}")],
}
"""Each command of the CLI and the HTTP API operations that do the same (issue 18's parity)."""


def _commands() -> set[str]:
    import typer.main

    from belltower.cli import app

    root = typer.main.get_command(app)
    found = set()
    for name, command in root.commands.items():  # type: ignore[attr-defined]
        subcommands = getattr(command, "commands", None)
        found |= {f"{name} {sub}" for sub in subcommands} if subcommands else {name}
    return found


def test_every_cli_command_has_its_http_api_operations() -> None:
    from belltower_console.app import create_app

    paths = create_app().openapi()["paths"]
    assert _commands() == set(CLI_TO_API), "a CLI command without an API mapping (or gone)"
    for command, operations in CLI_TO_API.items():
        for method, path in operations:
            assert method in paths.get("/api/v1" + path, {}), (command, method, path)
