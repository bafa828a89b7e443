"""Reaching Belltower: the console's HTTP API (``/api/v1``) with an API token, the audited door.

Where, and with which token; the first found wins:

1. ``BELLTOWER_API_URL`` and ``BELLTOWER_API_TOKEN`` in the environment (the token alone
   replaces the token of the profile found below);
2. the profile named by ``--profile NAME`` (or ``BELLTOWER_PROFILE``) in the profiles file,
   ``$XDG_CONFIG_HOME/belltower/profiles.toml`` (``~/.config/belltower/profiles.toml``;
   ``BELLTOWER_PROFILES`` names another file), else its ``[default]`` profile;
3. beside ``make dev`` with nothing configured: the dev stack's own profile,
   ``.dev/cli-profile.toml``, which ``make dev`` writes with a token for its admin.

The server records who made a change from the token and where from from the connection; the CLI
sends neither. Refusals come back as problem documents and are raised as the error classes of
:mod:`belltower.errors`, so each keeps its exit code (:mod:`belltower.cli.output`).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from ..errors import (
    BelltowerError,
    ConfigurationError,
    Conflict,
    InternalError,
    InvalidInput,
    NotFound,
    Unavailable,
)
from ..settings import get_settings
from .output import NotAllowed, fail

T = TypeVar("T")

URL_VAR, TOKEN_VAR, PROFILE_VAR, PROFILES_VAR = (
    "BELLTOWER_API_URL",
    "BELLTOWER_API_TOKEN",
    "BELLTOWER_PROFILE",
    "BELLTOWER_PROFILES",
)
DEV_PROFILE = Path(".dev") / "cli-profile.toml"
"""Written by ``make dev`` (``belltower_dev.devstack``); read relative to the current folder."""
TOKEN_HELP = (
    "create one in the console (Users & tokens) or with `belltower-console create-token USER`, "
    f"and set {TOKEN_VAR} or the profile's token"
)


def profiles_file() -> Path:
    """The user's profiles file: ``BELLTOWER_PROFILES``, else the XDG config folder's."""
    if named := os.environ.get(PROFILES_VAR):
        return Path(named).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "belltower" / "profiles.toml"


@dataclass(frozen=True)
class Profile:
    """Where the API is, the token to send, and where they were found (for messages)."""

    url: str
    token: str | None = field(repr=False)
    source: str


def _read_profiles(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigurationError(f"cannot read the profiles file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"the profiles file {path} is not valid TOML: {exc}") from None


def _section(data: Mapping[str, Any], name: str, path: Path) -> dict[str, str]:
    section = data.get(name)
    if not isinstance(section, dict):
        raise ConfigurationError(f"the profiles file {path} has no [{name}] profile")
    values = {k: section[k] for k in ("url", "token") if isinstance(section.get(k), str)}
    return values


def _from_files(name: str | None) -> tuple[dict[str, str], str]:
    """The profile's url and token from the files, and which file and profile they came from."""
    path = profiles_file()
    if name:
        if not path.is_file():
            raise ConfigurationError(f"profile {name!r}: there is no profiles file {path}")
        return _section(_read_profiles(path), name, path), f"profile {name!r} in {path}"
    if path.is_file():
        data = _read_profiles(path)
        if "default" in data:
            return _section(data, "default", path), f"profile 'default' in {path}"
    if DEV_PROFILE.is_file():
        return _section(_read_profiles(DEV_PROFILE), "default", DEV_PROFILE), str(DEV_PROFILE)
    return {}, ""


def find_profile(name: str | None = None) -> Profile:
    """The API's URL and token, by the order in this module's description.

    ``BELLTOWER_API_URL`` set means the token is ``BELLTOWER_API_TOKEN`` or none: a profile's
    token is never sent to a URL the profile does not name. ``BELLTOWER_API_TOKEN`` alone
    replaces the token of the profile found."""
    url, token = os.environ.get(URL_VAR) or None, os.environ.get(TOKEN_VAR) or None
    if url is not None:
        return Profile(url=url.rstrip("/"), token=token, source="the environment")
    found, source = _from_files(name)
    if token is not None:
        source = f"{TOKEN_VAR} with {source}"
    if not found.get("url"):
        where = f" ({source} names no url)" if source else ""
        raise ConfigurationError(
            f"no Belltower API is configured{where}: set {URL_VAR} (e.g. "
            f"https://belltower.school.edu) and {TOKEN_VAR}, write a [default] profile in "
            f"{profiles_file()}, or start `make dev` and run the CLI from its folder"
        )
    return Profile(url=found["url"].rstrip("/"), token=token or found.get("token"), source=source)


class ProblemField(msgspec.Struct, kw_only=True):
    field: str
    message: str
    accepted: str | None = None


class Problem(msgspec.Struct, kw_only=True):
    """An RFC 9457 problem document as the console sends it."""

    status: int = 0
    detail: str = ""
    errors: list[ProblemField] = []


def _invalid(problem: Problem) -> InvalidInput:
    if not problem.errors:
        return InvalidInput.from_wire(problem.detail, "body")
    parts = [
        f"{e.field}: {e.message}" + (f" (accepted: {e.accepted})" if e.accepted else "")
        for e in problem.errors
    ]
    first = problem.errors[0]
    return InvalidInput.from_wire("; ".join(parts), first.field, first.accepted)


def error_of(response: httpx.Response, profile: Profile) -> BelltowerError:
    """The error class of :mod:`belltower.errors` a refusal stands for, with the server's words."""
    try:
        problem = msgspec.json.decode(response.content, type=Problem)
    except msgspec.MsgspecError:
        problem = Problem(detail=f"HTTP {response.status_code} {response.reason_phrase}")
    status = response.status_code
    detail = problem.detail or f"HTTP {status}"
    if status == 401:
        return NotAllowed(
            f"the Belltower API at {profile.url} refused the token from {profile.source}: "
            f"{detail}; {TOKEN_HELP}"
        )
    if status == 403:
        return NotAllowed(detail)
    if status in (400, 413, 415, 422):
        return _invalid(problem)
    if status == 404:
        return NotFound(detail)
    if status == 409:
        return Conflict(detail)
    if status in (429, 503, 504):
        return Unavailable(detail)
    return InternalError(detail)


class Api:
    """The HTTP API for one command: typed replies, refusals raised as Belltower errors."""

    def __init__(self, profile: Profile, timeout: float) -> None:
        self.profile = profile
        headers = {"User-Agent": "belltower-cli"}
        if profile.token:
            headers["Authorization"] = f"Bearer {profile.token}"
        self.http = httpx.Client(base_url=profile.url + "/api/v1", headers=headers, timeout=timeout)
        self.timeout = timeout

    def close(self) -> None:
        self.http.close()

    def request(
        self, method: str, path: str, *, also_ok: tuple[int, ...] = (), **kwargs: Any
    ) -> httpx.Response:
        """Send one request; 2xx is returned, and a JSON reply (not a problem document) with a
        status in ``also_ok``; anything else is raised as its error class."""
        if not self.profile.token:
            raise NotAllowed(
                f"no API token for {self.profile.url} (from {self.profile.source}); {TOKEN_HELP}"
            )
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise Unavailable(
                f"the Belltower API at {self.profile.url} did not answer within {self.timeout:g}s"
            ) from None
        except httpx.TransportError as exc:
            raise Unavailable(
                f"the Belltower API at {self.profile.url} did not answer "
                f"({type(exc).__name__}: {exc}); start everything with `make dev` or point "
                f"{URL_VAR} at your console"
            ) from None
        media = response.headers.get("content-type", "")
        if response.is_success or (
            response.status_code in also_ok and media.startswith("application/json")
        ):
            return response
        raise error_of(response, self.profile)

    def get(self, path: str, type_: type[T], **params: Any) -> T:
        return self.decode(self.request("GET", path, params=_query(params)), type_)

    def send(self, method: str, path: str, type_: type[T], body: Any = None, **params: Any) -> T:
        content = msgspec.json.encode(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if body is not None else {}
        response = self.request(
            method, path, params=_query(params), content=content, headers=headers
        )
        return self.decode(response, type_)

    @staticmethod
    def decode(response: httpx.Response, type_: type[T]) -> T:
        try:
            return msgspec.json.decode(response.content, type=type_)
        except msgspec.MsgspecError as exc:
            raise InternalError(f"the API's reply is not what the CLI expects: {exc}") from None


def seg(value: str) -> str:
    """One path segment of a URL, quoted so an id or a name can only ever be that segment."""
    return quote(value, safe="") or "%20"


def _query(params: Mapping[str, Any]) -> dict[str, Any]:
    """Query parameters without the unset ones; booleans as the API reads them."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            continue
        out[key.rstrip("_")] = str(value).lower() if isinstance(value, bool) else value
    return out


def call(profile: str | None, fn: Callable[[Api], T]) -> T:
    """Run ``fn`` with the API of ``profile`` (see the module's description); a Belltower error
    ends the command with its message and exit code."""
    try:
        api = Api(find_profile(profile), get_settings().request_timeout_s + 5)
    except BelltowerError as exc:
        fail(exc)
    try:
        return fn(api)
    except BelltowerError as exc:
        fail(exc)
    finally:
        api.close()
