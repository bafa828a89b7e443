"""Fences for what a job definition names: files inside the batch folder, public web addresses.

A job's parameters are typed by an editor, so a path or a URL in them is data that must not
reach past what the job is for. Each fence is applied twice:

- when the job is saved, from its parameter schema: a parameter declared with one of the
  annotated types below carries a JSON Schema ``format`` the scheduler checks (``format_checker``),
  so ``folder=/etc`` or ``source=http://169.254.169.254/`` is a 422 naming the parameter;
- when the job runs, by the handler: ``confine`` resolves the path (symlinks included) and
  refuses one that ends outside the batch folder, and ``check_address`` refuses a loopback,
  private, link-local or metadata address after DNS resolution (the integration worker's
  outbound HTTP client calls it for every connection, redirects included).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Annotated
from urllib.parse import urlsplit

import msgspec
from jsonschema import FormatChecker
from jsonschema.exceptions import FormatError

from . import placeholders
from .errors import InvalidInput
from .templates import TEMPLATE, check_template

BATCH_PATH = "belltower-batch-path"
BATCH_GLOB = "belltower-batch-glob"
PUBLIC_URL = "belltower-public-url"
PATH_OR_URL = "belltower-batch-path-or-url"

MAX_PATH_CHARS = 1024
MAX_URL_CHARS = 2048

PATH_FORM = "a relative path inside BELLTOWER_BATCH_FOLDER, e.g. exports/daily, without '..'"
GLOB_FORM = "a glob inside BELLTOWER_BATCH_FOLDER, e.g. exports/*.csv, without '..'"
URL_FORM = (
    "an https:// address of a public host (http:// only where BELLTOWER_OUTBOUND_ALLOW_HTTP "
    "is set; private hosts only when listed in BELLTOWER_OUTBOUND_ALLOW_HOSTS)"
)

BatchPath = Annotated[
    str, msgspec.Meta(max_length=MAX_PATH_CHARS, extra_json_schema={"format": BATCH_PATH})
]
"""A file or folder inside the batch folder, relative to it ('' is the batch folder itself)."""

BatchGlob = Annotated[
    str, msgspec.Meta(max_length=MAX_PATH_CHARS, extra_json_schema={"format": BATCH_GLOB})
]
"""A glob pattern of files inside the batch folder."""

PublicUrl = Annotated[
    str, msgspec.Meta(max_length=MAX_URL_CHARS, extra_json_schema={"format": PUBLIC_URL})
]
"""A web address the worker may fetch: https on a public host, unless the site allows more."""

BatchPathOrUrl = Annotated[
    str, msgspec.Meta(max_length=MAX_URL_CHARS, extra_json_schema={"format": PATH_OR_URL})
]
"""Either a public web address (it has a scheme: ``https://``) or a path inside the batch folder."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# Paths -------------------------------------------------------------------------------------


def check_relative(value: str, field: str, *, glob: bool = False) -> PurePosixPath:
    """Refuse a path that could leave the batch folder whatever the folder is: absolute, with
    '..', a drive or a backslash, control characters, or too long."""
    form = GLOB_FORM if glob else PATH_FORM
    if len(value) > MAX_PATH_CHARS:
        raise InvalidInput(field, f"the path is longer than {MAX_PATH_CHARS} characters", form)
    if _CONTROL.search(value):
        raise InvalidInput(field, f"{value!r} contains a control character", form)
    if "\\" in value:
        raise InvalidInput(field, f"{value!r} contains a backslash", form)
    path = PurePosixPath(value)
    if path.is_absolute() or value.startswith("~") or re.match(r"^[A-Za-z]:", value):
        raise InvalidInput(field, f"{value!r} leaves the batch folder (an absolute path)", form)
    if ".." in path.parts:
        raise InvalidInput(field, f"{value!r} leaves the batch folder ('..')", form)
    return path


def confine(base: Path, relative: str | None, field: str) -> Path:
    """``base / relative``, refused if its text could leave ``base`` or if it resolves (symlinks
    followed) outside ``base``. The path is returned as the caller joined it, for messages.

    Call ``inside_root`` again on each file a glob or a walk finds: a symlink placed in the
    folder after the job was saved must not lead out of it either.
    """
    if not relative:
        return base
    check_relative(relative, field)
    path = base / relative
    inside_root(base, path, field)
    return path


def inside_root(base: Path, path: Path, field: str) -> Path:
    """``path`` resolved (symlinks followed), refused unless it is ``base`` or below it."""
    root = base.resolve()
    resolved = path.resolve()
    if resolved != root and not resolved.is_relative_to(root):
        shown = path.relative_to(base) if path.is_relative_to(base) else path
        raise InvalidInput(
            field, f"{str(shown)!r} resolves outside the batch folder (a symbolic link?)", PATH_FORM
        )
    return resolved


# Addresses ---------------------------------------------------------------------------------

_METADATA_HOSTS = {
    "metadata",
    "metadata.google.internal",
    "instance-data",
    "instance-data.ec2.internal",
}


def _allowed(host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
             allow_hosts: Iterable[str]) -> bool:  # fmt: skip
    for entry in allow_hosts:
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry == host:
            return True
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    return False


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def is_url(value: str) -> bool:
    """Whether ``value`` is meant as a web address (it has a scheme) rather than a path."""
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", value) is not None


def check_address(host: str, address: str, field: str, allow_hosts: Iterable[str] = ()) -> None:
    """Refuse connecting to ``address`` (what ``host`` resolved to) unless it is public or the
    site allows that host or network."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if _public(ip) or _allowed(host.lower(), ip, allow_hosts):
        return
    raise InvalidInput(
        field,
        f"{host} resolves to {ip}, a loopback, private, link-local or reserved address",
        URL_FORM,
    )


def check_url(
    value: str,
    field: str,
    *,
    allow_http: bool = False,
    allow_hosts: Iterable[str] = (),
) -> str:
    """Refuse a URL the worker must not fetch, before any DNS: a scheme other than https (and
    http when allowed; webcal means https), credentials in it, a host that names this machine
    or a cloud metadata service, or an IP literal that is not public. Returns the URL to fetch."""
    if len(value) > MAX_URL_CHARS:
        raise InvalidInput(
            field, f"the address is longer than {MAX_URL_CHARS} characters", URL_FORM
        )
    if _CONTROL.search(value) or " " in value:
        raise InvalidInput(field, f"{value!r} contains a space or a control character", URL_FORM)
    if value.lower().startswith("webcal://"):
        value = "https://" + value[len("webcal://") :]
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(field, f"{value!r} is not a web address: {exc}", URL_FORM) from None
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme.lower() not in schemes:
        shown = parts.scheme or "no scheme"
        raise InvalidInput(field, f"{value!r}: {shown} is not allowed", URL_FORM)
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise InvalidInput(field, f"{value!r} has no host", URL_FORM)
    if parts.username is not None or parts.password is not None:
        raise InvalidInput(field, f"{value!r} carries credentials; keep them in a secret", URL_FORM)
    if port == 0:
        raise InvalidInput(field, f"{value!r} names port 0", URL_FORM)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
        if not _allowed(host, None, allow_hosts) and (
            host == "localhost" or host.endswith((".localhost", ".local", ".internal"))
            or host in _METADATA_HOSTS or "." not in host
        ):  # fmt: skip
            raise InvalidInput(field, f"{host} is not a public host name", URL_FORM) from None
    if ip is not None and not (_public(ip) or _allowed(host, ip, allow_hosts)):
        raise InvalidInput(
            field, f"{host} is a loopback, private, link-local or reserved address", URL_FORM
        )
    return value


# Save-time checks from the parameter schema ------------------------------------------------


class _FenceChecker(FormatChecker):
    """Also checks the placeholder texts, whose ``format`` carries the names they accept
    (``belltower-placeholders:a,b``), so there is no fixed list of such formats to register."""

    def check(self, instance: object, format: str) -> None:
        names = placeholders.names_of(format)
        if names is None:
            super().check(instance, format)
            return
        if isinstance(instance, str):
            try:
                placeholders.parse(instance, names, "")
            except InvalidInput as exc:
                raise FormatError(exc.reason, cause=exc) from exc


def format_checker(*, allow_http: bool = False, allow_hosts: Iterable[str] = ()) -> FormatChecker:
    """A JSON Schema format checker for the fenced parameter types; a refusal's ``cause`` is the
    InvalidInput naming what is wrong (the scheduler puts the parameter's name on it)."""
    hosts = tuple(allow_hosts)
    checker = _FenceChecker(formats=())

    @checker.checks(BATCH_PATH, raises=InvalidInput)
    def _path(value: object) -> bool:
        if isinstance(value, str):
            check_relative(value, "")
        return True

    @checker.checks(BATCH_GLOB, raises=InvalidInput)
    def _glob(value: object) -> bool:
        if isinstance(value, str):
            check_relative(value, "", glob=True)
        return True

    @checker.checks(PUBLIC_URL, raises=InvalidInput)
    def _url(value: object) -> bool:
        if isinstance(value, str) and value:
            check_url(value, "", allow_http=allow_http, allow_hosts=hosts)
        return True

    @checker.checks(PATH_OR_URL, raises=InvalidInput)
    def _path_or_url(value: object) -> bool:
        if isinstance(value, str) and is_url(value):
            check_url(value, "", allow_http=allow_http, allow_hosts=hosts)
        elif isinstance(value, str):
            check_relative(value, "")
        return True

    @checker.checks(TEMPLATE, raises=InvalidInput)
    def _template(value: object) -> bool:
        if isinstance(value, str):
            check_template(value, "")
        return True

    return checker
