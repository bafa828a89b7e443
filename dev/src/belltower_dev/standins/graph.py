"""A stand-in for Microsoft Graph v1.0 users and the identity platform's token endpoint, built
to their published contracts.

``POST /{tenant}/oauth2/v2.0/token`` (form: ``client_id``, ``client_secret``,
``scope=https://graph.microsoft.com/.default``, ``grant_type=client_credentials``) gives an
app-only bearer token, or ``{"error": "invalid_client", "error_description": "AADSTS7000215:
..."}``. ``GET /v1.0/users/{id | userPrincipalName}`` (with ``$select``) and ``PATCH
/v1.0/users/{id}`` (204) as Graph does: a read-only property (``onPremisesSamAccountName``, the
other ``onPremises...``) is refused with 400, and so is any change to a user synced from
on-premises AD (``onPremisesSyncEnabled``); an unknown user is 404 ``Request_ResourceNotFound``.
Errors are ``{"error": {"code", "message", "innerError"}}``. ``throttle_first`` answers that many
Graph calls 429 with Retry-After; ``expire_tokens`` refuses the first token once as expired.
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .server import ThreadedServer

READ_ONLY = {"id", "onPremisesSamAccountName", "onPremisesSyncEnabled", "onPremisesImmutableId",
             "onPremisesDistinguishedName", "onPremisesUserPrincipalName"}  # fmt: skip


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message,
                   "innerError": {"date": "2026-01-01T00:00:00", "request-id": str(uuid.uuid4())}}},
        status,
    )  # fmt: skip


class GraphStandIn(ThreadedServer):
    name = "Microsoft Graph stand-in"

    def __init__(self, tenant: str = "contoso.edu", client_id: str = "11111111-2222-3333-4444-555555555555",
                 secret: str = "graph-secret", *, throttle_first: int = 0, expire_tokens: bool = False) -> None:  # fmt: skip
        self.tenant, self.client_id, self.secret = tenant, client_id, secret
        self.throttle_first, self.expire_tokens = throttle_first, expire_tokens
        self.users: dict[str, dict[str, Any]] = {}
        self.tokens: set[str] = set()
        self.requests: list[tuple[str, str]] = []
        self.serve(Starlette(routes=[
            Route("/{tenant:str}/oauth2/v2.0/token", self._token, methods=["POST"]),
            Route("/v1.0/users/{key:str}", self._user, methods=["GET", "PATCH"]),
        ]))  # fmt: skip

    def add_user(self, upn: str, **fields: Any) -> dict[str, Any]:
        user = {"id": str(uuid.uuid4()), "userPrincipalName": upn, "mailNickname": upn.split("@")[0],
                "employeeId": None, "onPremisesSyncEnabled": None, "onPremisesSamAccountName": None, **fields}  # fmt: skip
        self.users[user["id"]] = user
        return user

    async def _token(self, request: Request) -> Response:
        self.requests.append((request.method, request.url.path))
        form = await request.form()
        if request.path_params["tenant"] != self.tenant:
            return JSONResponse(
                {"error": "invalid_tenant", "error_description": "AADSTS90002: Tenant not found."},
                400,
            )
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.secret:
            return JSONResponse({"error": "invalid_client", "error_description":
                                 "AADSTS7000215: Invalid client secret provided."}, 401)  # fmt: skip
        if (
            form.get("grant_type") != "client_credentials"
            or form.get("scope") != "https://graph.microsoft.com/.default"
        ):
            return JSONResponse(
                {
                    "error": "invalid_scope",
                    "error_description": "AADSTS70011: The provided value for scope is not valid.",
                },
                400,
            )
        token = uuid.uuid4().hex
        self.tokens.add(token)
        return JSONResponse(
            {
                "token_type": "Bearer",
                "expires_in": 3599,
                "ext_expires_in": 3599,
                "access_token": token,
            }
        )

    def _find(self, key: str) -> dict[str, Any] | None:
        return self.users.get(key) or next(
            (u for u in self.users.values() if u["userPrincipalName"].lower() == key.lower()), None
        )

    async def _user(self, request: Request) -> Response:
        self.requests.append((request.method, request.url.path))
        if self.throttle_first > 0:
            self.throttle_first -= 1
            response = error(429, "TooManyRequests", "Too many requests.")
            response.headers["Retry-After"] = "0"
            return response
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self.tokens:
            return error(401, "InvalidAuthenticationToken", "Access token validation failure.")
        if self.expire_tokens:
            self.expire_tokens = False
            self.tokens.discard(token)
            return error(
                401,
                "InvalidAuthenticationToken",
                "Lifetime validation failed, the token is expired.",
            )
        user = self._find(request.path_params["key"])
        if user is None:
            return error(404, "Request_ResourceNotFound",
                         f"Resource '{request.path_params['key']}' does not exist or one of its queried reference-property objects are not present.")  # fmt: skip
        if request.method == "GET":
            fields = [f for f in request.query_params.get("$select", "").split(",") if f]
            return JSONResponse({f: user.get(f) for f in fields} if fields else user)
        change = await request.json()
        if read_only := sorted(set(change) & READ_ONLY):
            return error(
                400,
                "Request_BadRequest",
                f"Property '{read_only[0]}' is read-only and cannot be set.",
            )
        if user.get("onPremisesSyncEnabled"):
            return error(400, "Request_BadRequest", "Unable to update the specified properties for on-premises mastered "
                         "Directory Sync objects or objects currently undergoing migration.")  # fmt: skip
        user.update(change)
        return Response(status_code=204)
