"""The integration worker's way out to the web: an HTTP client that reaches only public hosts.

A job's URL was checked when the job was saved (``belltower.fences.check_url``), but a host
name can resolve elsewhere by the time the job runs, and a public server can redirect to
``http://169.254.169.254/``. So the check is made where it cannot be dodged: on every TCP
connection, against the very address connected to (DNS resolved here, once, and that address
used), for the first request and each redirect alike. Responses are read up to a size cap, and
what an outside server sent is never copied into a run's output or error.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from belltower.errors import InvalidInput, JobFailed, Unavailable
from belltower.fences import check_address, check_url
from belltower.settings import Settings

MAX_RESPONSE_BYTES = 20 * 1024 * 1024
TIMEOUT_S = 60.0
MAX_REDIRECTS = 5


class _FencedBackend(httpcore.AsyncNetworkBackend):
    """Resolves the host itself, refuses a private address, and connects to the address checked
    (so a second, different DNS answer cannot slip in between check and connect)."""

    def __init__(self, field: str, allow_hosts: Iterable[str]) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._field = field
        self._allow = tuple(allow_hosts)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            raise httpcore.ConnectError(f"{host} could not be resolved: {exc}") from None
        addresses = [str(info[4][0]) for info in infos]
        for address in addresses:  # every answer, so the order of the answers does not matter
            check_address(host, address, self._field, self._allow)
        return await self._inner.connect_tcp(
            addresses[0], port, timeout, local_address, socket_options
        )

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise InvalidInput(self._field, "a Unix socket is not a web address")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _FencedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, field: str, allow_hosts: Iterable[str]) -> None:
        super().__init__(trust_env=False)
        ssl_context = httpx.create_ssl_context()
        # httpx builds its pool without a network backend of our choosing; build it again with
        # the fenced one (same settings as httpx's default transport otherwise).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=20,
            max_keepalive_connections=10,
            network_backend=_FencedBackend(field, allow_hosts),
        )


def client(settings: Settings, field: str, **kwargs: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` fenced for the URL parameter ``field``: every request's scheme is
    checked (http only if the site allows it) and every connection's address is public, or
    listed in BELLTOWER_OUTBOUND_ALLOW_HOSTS."""
    allow_http = settings.outbound_allow_http
    allow_hosts = settings.outbound_allow_hosts

    async def check_request(request: httpx.Request) -> None:
        check_url(str(request.url), field, allow_http=allow_http, allow_hosts=allow_hosts)

    kwargs.setdefault("timeout", TIMEOUT_S)
    kwargs.setdefault("max_redirects", MAX_REDIRECTS)
    return httpx.AsyncClient(
        transport=_FencedTransport(field, allow_hosts),
        event_hooks={"request": [check_request]},
        trust_env=False,
        **kwargs,
    )


async def fetch(
    settings: Settings, url: str, field: str, *, max_bytes: int = MAX_RESPONSE_BYTES
) -> bytes:
    """GET ``url`` (redirects followed, each one checked) and return its body, at most
    ``max_bytes``; failures are reported by status and address, never by the body."""
    url = check_url(
        url, field,
        allow_http=settings.outbound_allow_http, allow_hosts=settings.outbound_allow_hosts,
    )  # fmt: skip
    try:
        async with (
            client(settings, field, follow_redirects=True) as http,
            http.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise JobFailed(
                    f"{url} answered HTTP {response.status_code}; check the job's {field}"
                )
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    raise JobFailed(
                        f"{url} sent more than {max_bytes // (1024 * 1024)} MiB; "
                        f"check the job's {field}"
                    )
            return bytes(body)
    except httpx.TooManyRedirects:
        raise JobFailed(f"{url} redirected more than {MAX_REDIRECTS} times") from None
    except httpx.TimeoutException:
        raise Unavailable(f"{url} did not answer within {TIMEOUT_S:g} s") from None
    except httpx.TransportError as exc:
        raise Unavailable(
            f"could not fetch {url}: {type(exc).__name__}; check the address and the network"
        ) from None
