"""A client for the Ed-Fi ODS/API v7 (Data Standard 5): OAuth 2 client credentials, the resource
dependency order the server publishes, and upserts.

A client gets a bearer token at ``POST {base}/oauth/token`` (HTTP basic auth with the API key
and secret, secrets by reference, ``grant_type=client_credentials``); the token lasts
``expires_in`` seconds, and one refused with 401 (expired, revoked) is fetched again once. The
order to load resources in is the server's own, ``GET {base}/metadata/data/v3/dependencies``:
``[{"resource": "/ed-fi/students", "order": 3, "operations": ["Create", "Update"]}, ...]``.
A record is sent with ``POST {base}/data/v3/ed-fi/{resource}``; a POST whose natural key the
server already holds updates that record (an upsert): 201 says created, 200 updated. Refusals
are RFC 7807 problem documents (``type`` ``urn:ed-fi:api:...``, ``title``, ``detail``,
``validationErrors``, ``errors``): 400 for validation, 409 for an unresolved reference or an
identity conflict. 429 and 5xx are tried again (:class:`.webapi.WebApi`).
"""

from __future__ import annotations

from typing import Any, Literal

import httpx
import msgspec

from belltower.errors import ConfigurationError, JobFailed

from .bearer import BearerApi

DATA = "/data/v3"
DEPENDENCIES = "/metadata/data/v3/dependencies"
TOKEN = "/oauth/token"


class Dependency(msgspec.Struct, frozen=True):
    """One entry of the server's dependency document."""

    resource: str
    order: int
    operations: list[str] = []


class EdFiRefused(JobFailed):
    """The ODS/API refused one record: its status and the problem document's gist."""

    def __init__(self, resource: str, status: int, problem: str) -> None:
        super().__init__(f"Ed-Fi refused a {resource} record with {status}: {problem}")
        self.status = status
        self.problem = problem


class EdFiClient(BearerApi):
    vendor = "the Ed-Fi ODS/API"

    def __init__(
        self,
        base_url: str,
        key: str,
        secret: str,
        *,
        secret_names: str = "the Ed-Fi API key and secret",
        **options: Any,
    ) -> None:
        super().__init__(base_url, **options)
        self._auth = (key, secret)
        self._names = secret_names

    def describe(self, response: httpx.Response) -> str:
        return problem_of(response)

    async def fetch_token(self) -> tuple[str, float]:
        response = await self.send(
            "POST", TOKEN, data={"grant_type": "client_credentials"}, auth=self._auth
        )
        if response.status_code in (400, 401):
            raise ConfigurationError(
                f"the Ed-Fi ODS/API refused the client credentials ({problem_of(response)}); "
                f"check {self._names} and that the key is an ODS/API application key"
            )
        if response.status_code >= 400:
            raise JobFailed(f"the Ed-Fi ODS/API answered {response.status_code} to {TOKEN}")
        body = response.json()
        return str(body["access_token"]), float(body.get("expires_in", 1800))

    def token_refused(self, method: str, path: str, response: httpx.Response) -> str:
        return (
            f"the Ed-Fi ODS/API refused a fresh access token for {method} {path}; "
            f"check {self._names} and the application's claim set"
        )

    async def dependencies(self) -> list[Dependency]:
        """The server's resource load order (its own, never a hard-coded one)."""
        response = await self.authorized("GET", DEPENDENCIES)
        if response.status_code != 200:
            raise JobFailed(
                f"the Ed-Fi ODS/API answered {response.status_code} to {DEPENDENCIES}: "
                f"{problem_of(response)}; check the job's base_url (the API root, e.g. "
                "https://ods.example.org/api)"
            )
        try:
            return msgspec.json.decode(response.content, type=list[Dependency])
        except msgspec.ValidationError as exc:
            raise JobFailed(f"the Ed-Fi dependency document is not the v7 shape: {exc}") from None

    async def upsert(self, resource: str, body: dict[str, Any]) -> Literal["created", "updated"]:
        """POST one record of ``/ed-fi/{resource}``; EdFiRefused when the server refuses it."""
        response = await self.authorized("POST", f"{DATA}/ed-fi/{resource}", json=body)
        if response.status_code == 201:
            return "created"
        if response.status_code in (200, 204):
            return "updated"
        raise EdFiRefused(resource, response.status_code, problem_of(response))


def problem_of(response: httpx.Response) -> str:
    """A problem document in one line: its detail, then each validation error (bounded)."""
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    if not isinstance(body, dict):
        return str(body)[:300]
    if "error" in body and "detail" not in body:  # the token endpoint's OAuth error
        return str(body.get("error_description") or body["error"])[:300]
    parts = [str(body.get("detail") or body.get("title") or response.reason_phrase)]
    for where, messages in (body.get("validationErrors") or {}).items():
        for message in messages if isinstance(messages, list) else [messages]:
            parts.append(f"{where}: {message}")
    parts.extend(str(e) for e in body.get("errors") or [])
    return "; ".join(parts)[:500]
