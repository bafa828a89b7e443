"""The bearer-token client base (Ed-Fi, Microsoft Graph, OneRoster REST): a refused token is
fetched again once, and the retried request is the same request, headers included."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from belltower_dev.standins.server import ThreadedServer
from belltower_integration.bearer import BearerApi


class EchoServer(ThreadedServer):
    """Refuses the first token it is shown; echoes the request's own header for the next."""

    name = "bearer echo"

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []

        async def echo(request: Request) -> JSONResponse:
            token = request.headers.get("authorization", "")
            self.seen.append((token, request.headers.get("x-request-kind")))
            if token == "Bearer first":
                return JSONResponse({"error": "expired"}, status_code=401)
            return JSONResponse({"kind": request.headers.get("x-request-kind")})

        self.serve(Starlette(routes=[Route("/echo", echo)]))


class Client(BearerApi):
    vendor = "test API"

    def __init__(self, base_url: str, **options: Any) -> None:
        super().__init__(base_url, **options)
        self.tokens = iter(["first", "second"])

    async def fetch_token(self) -> tuple[str, float]:
        return next(self.tokens), 3600.0


async def test_a_request_retried_with_a_fresh_token_keeps_its_headers() -> None:
    with EchoServer() as server:
        async with Client(server.url, first_delay_s=0.0) as client:
            response = await client.authorized("GET", "/echo", headers={"X-Request-Kind": "delta"})
    assert response.status_code == 200 and response.json() == {"kind": "delta"}
    assert server.seen == [("Bearer first", "delta"), ("Bearer second", "delta")]
