"""A client for Microsoft Graph v1.0 users, with an app-only (client credentials) token.

The token comes from the Microsoft identity platform, ``POST {login}/{tenant}/oauth2/v2.0/token``
with ``client_id``, ``client_secret`` (by secret reference), ``scope=https://graph.microsoft.com/
.default`` and ``grant_type=client_credentials``; the app needs the User.ReadWrite.All
application permission. ``GET /v1.0/users/{id | userPrincipalName}`` reads a user and
``PATCH /v1.0/users/{id}`` changes its cloud attributes (204). Errors are
``{"error": {"code", "message"}}``; 429 carries Retry-After (tried again by
:class:`.webapi.WebApi`). ``onPremisesSamAccountName`` is read-only through Graph: it is synced
from on-premises Active Directory, and the attributes of a user synced from there cannot be
changed through Graph either.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from belltower.errors import ConfigurationError, JobFailed

from .bearer import BearerApi
from .webapi import WebApi

SCOPE = "https://graph.microsoft.com/.default"
USER_FIELDS = (
    "id,userPrincipalName,mailNickname,employeeId,onPremisesSyncEnabled,onPremisesSamAccountName"
)


class GraphError(JobFailed):
    def __init__(self, what: str, status: int, code: str, message: str) -> None:
        super().__init__(f"Microsoft Graph refused {what} with {status} {code}: {message}")
        self.status, self.graph_code, self.reason = status, code, message


class GraphClient(BearerApi):
    vendor = "Microsoft Graph"
    margin_s = 60.0

    def __init__(self, graph_url: str, login_url: str, tenant: str, client_id: str, secret: str,
                 *, secret_name: str, **options: Any) -> None:  # fmt: skip
        super().__init__(graph_url, **options)
        self._login = WebApi(login_url, **options)
        self._login.vendor = "the Microsoft identity platform"
        self._tenant, self._client, self._secret, self._secret_name = (
            tenant,
            client_id,
            secret,
            secret_name,
        )

    async def __aexit__(self, *exc: object) -> None:
        await self._login.__aexit__(*exc)
        await super().__aexit__(*exc)

    def describe(self, response: httpx.Response) -> str:
        return _error(response)[1]

    async def fetch_token(self) -> tuple[str, float]:
        response = await self._login.send(
            "POST", f"/{quote(self._tenant, safe='')}/oauth2/v2.0/token",
            data={"client_id": self._client, "client_secret": self._secret, "scope": SCOPE,
                  "grant_type": "client_credentials"},
        )  # fmt: skip
        if response.status_code in (400, 401):
            body = _json(response)
            reason = str(body.get("error_description") or body.get("error") or response.status_code)
            raise ConfigurationError(
                f"the Microsoft identity platform refused the app's credentials ({reason[:200]}); "
                f"check tenant_id, client_id and the secret {self._secret_name!r}"
            )
        if response.status_code >= 400:
            raise JobFailed(
                f"the Microsoft identity platform answered {response.status_code} to the token request"
            )
        body = response.json()
        return str(body["access_token"]), float(body.get("expires_in", 3599))

    def token_refused(self, method: str, path: str, response: httpx.Response) -> str:
        return f"Microsoft Graph refused a fresh token for {method} {path}: {_error(response)[1]}"

    async def request(self, method: str, path: str, json: Any = None) -> httpx.Response:
        response = await self.authorized(method, path, json=json)
        if response.status_code == 403:
            raise ConfigurationError(
                f"Microsoft Graph forbids {method} {path} ({_error(response)[1]}); grant the app the "
                "User.ReadWrite.All application permission with admin consent"
            )
        return response

    async def user(self, key: str) -> dict[str, Any] | None:
        """A user by object id or userPrincipalName, or None when there is none."""
        path = f"/v1.0/users/{quote(key, safe='@')}?$select={USER_FIELDS}"
        response = await self.request("GET", path)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise GraphError(f"GET user {key}", response.status_code, *_error(response))
        body: dict[str, Any] = response.json()
        return body

    async def update(self, user_id: str, changes: dict[str, Any]) -> None:
        response = await self.request("PATCH", f"/v1.0/users/{quote(user_id, safe='')}", changes)
        if response.status_code not in (200, 204):
            raise GraphError(f"PATCH user {user_id}", response.status_code, *_error(response))


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error(response: httpx.Response) -> tuple[str, str]:
    error = _json(response).get("error")
    if isinstance(error, dict):
        return str(error.get("code", "")), str(error.get("message", ""))[:300]
    return "", response.reason_phrase
