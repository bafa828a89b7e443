"""A client for Schoology's REST API v1 (``https://api.schoology.com/v1``), two-legged OAuth.

Every request carries an OAuth 1.0 ``Authorization`` header signed with the API consumer key
and secret (secrets by reference) by :mod:`oauthlib`: ``realm="Schoology API"``, HMAC-SHA1
(or PLAINTEXT, which Schoology accepts over https), a fresh ``oauth_nonce`` and
``oauth_timestamp`` on every attempt (a retried request is signed anew: Schoology refuses a
repeated timestamp/nonce pair as a replay), and ``oauth_token=""``, which two-legged requests
must still carry. Bodies are JSON (``Content-Type``/``Accept: application/json``).

Bulk calls take up to 50 records, wrapped the Schoology way (``{"users": {"user": [...]}}``)
and answer one result per record with its own ``response_code`` (200, or a refusal with a
``message``), so one bad record fails alone. Users are matched by ``school_uid`` and courses
by ``course_code`` (``update_existing=1``), sections by ``section_school_code``. 429 and 5xx
are tried again (Retry-After when given, else backoff). Built against the REST API v1
reference (users, courses, course sections, enrollments, grading periods).
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import httpx
from oauthlib import oauth1

from belltower.errors import ConfigurationError, JobFailed

from .webapi import WebApi

BULK = 50
"""Records per bulk call and ids per list query: Schoology's limit."""
REALM = "Schoology API"
JSON = {"Content-Type": "application/json", "Accept": "application/json"}


class SchoologyError(JobFailed):
    """Schoology refused a whole request (4xx other than 401)."""

    def __init__(self, what: str, status: int, message: str) -> None:
        super().__init__(f"Schoology refused {what} with {status}: {message}")
        self.status = status
        self.reason = message


class _TwoLegged(oauth1.Client):
    """oauthlib's client with the empty ``oauth_token`` Schoology's two-legged requests need."""

    def get_oauth_params(self, request: Any) -> list[tuple[str, str]]:
        params: list[tuple[str, str]] = super().get_oauth_params(request)
        if not any(k == "oauth_token" for k, _ in params):
            params.append(("oauth_token", ""))
        return params


class OAuth1(httpx.Auth):
    """Signs each request as it is sent (so every retry gets its own nonce and timestamp)."""

    def __init__(self, key: str, secret: str, method: str = "HMAC-SHA1") -> None:
        self._client = _TwoLegged(
            key,
            client_secret=secret,
            signature_method=method,
            signature_type=oauth1.SIGNATURE_TYPE_AUTH_HEADER,
            realm=REALM,
        )

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        # JSON bodies are not form parameters: OAuth 1.0 leaves them out of the signature.
        _, headers, _ = self._client.sign(str(request.url), request.method, None, {})
        request.headers["Authorization"] = headers["Authorization"]
        yield request


def batches(items: Sequence[Any], size: int = BULK) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def message(response: httpx.Response) -> str:
    """What a refusal says: Schoology answers JSON (``message``) or a short text."""
    try:
        body = response.json()
    except ValueError:
        return (response.text or response.reason_phrase)[:300]
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or body)[:300]
    return str(body)[:300]


class SchoologyClient(WebApi):
    vendor = "Schoology"

    def __init__(
        self, base_url: str, key: str, secret: str, *, signature_method: str = "HMAC-SHA1",
        secret_names: str = "the Schoology consumer key and secret", **options: Any,
    ) -> None:  # fmt: skip
        super().__init__(base_url, **options)
        self._auth = OAuth1(key, secret, signature_method)
        self._names = secret_names

    def describe(self, response: httpx.Response) -> str:
        return message(response)

    async def request(
        self, method: str, path: str, body: Any = None, query: Mapping[str, Any] | None = None
    ) -> Any:
        """One call; the JSON answer (None when empty). 401 names the secrets to check."""
        url = path + ("?" + urlencode(query) if query else "")
        what = f"{method} {path}"
        kw: dict[str, Any] = {"headers": JSON, "auth": self._auth}
        if body is not None:
            kw["json"] = body
        response = await self.send(method, url, what, **kw)
        if response.status_code == 401:
            raise ConfigurationError(
                f"Schoology refused the OAuth signature for {what} ({message(response)}); "
                f"check {self._names} (a district API key of a role allowed to use the API)"
            )
        if response.status_code >= 400:
            raise SchoologyError(what, response.status_code, message(response))
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    async def pages(self, path: str, key: str, limit: int = 200) -> list[dict[str, Any]]:
        """Every item of a paged list (``start``/``limit``, until a short page)."""
        items: list[dict[str, Any]] = []
        start = 0
        while True:
            body = await self.request("GET", path, query={"start": start, "limit": limit}) or {}
            page = body.get(key) or []
            items += page
            total = int(body.get("total") or 0)
            start += len(page)
            if not page or len(page) < limit or (total and start >= total):
                return items

    # -- bulk calls: one result per record, in the order sent --------------------------------

    async def bulk(
        self, method: str, path: str, wrap: tuple[str, str], records: Sequence[Mapping[str, Any]],
        query: Mapping[str, Any] | None = None, answer: Iterable[str] = (),
    ) -> list[dict[str, Any]]:  # fmt: skip
        """``records`` (at most 50) wrapped as ``{plural: {singular: [...]}}``; the per-record
        results are under ``answer`` (a path of keys; default the singular)."""
        plural, singular = wrap
        body = await self.request(method, path, {plural: {singular: list(records)}}, query) or {}
        for key in tuple(answer) or (singular,):
            body = body.get(key) or {} if isinstance(body, dict) else {}
        results = body if isinstance(body, list) else []
        if len(results) != len(records):
            raise JobFailed(
                f"Schoology answered {len(results)} results to {method} {path} with "
                f"{len(records)} records"
            )
        return results

    async def by_codes(self, path: str, param: str, key: str, codes: Sequence[str]) -> list[Any]:
        """A list filtered by up to 50 codes at a time (``school_uids``, ``section_school_codes``)."""
        found: list[Any] = []
        for part in batches(codes):
            body = await self.request("GET", path, query={param: ",".join(part)}) or {}
            found += body.get(key) or []
        return found


def refused(result: Mapping[str, Any]) -> str | None:
    """The refusal of one bulk result, or None when Schoology took the record."""
    code = int(result.get("response_code") or 0)
    if 200 <= code < 300:
        return None
    return f"{code}: {str(result.get('message') or result.get('error') or 'refused')[:300]}"
