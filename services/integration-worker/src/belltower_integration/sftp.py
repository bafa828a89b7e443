"""Uploading exports over SFTP (asyncssh), always checking the server's host key.

A file is uploaded under a temporary name and renamed into place, so the receiving system never
picks up half a file; uploading the same export again replaces it whole, so a repeated run is
harmless. Credentials and known hosts come by secret reference, never from job parameters.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import os
import posixpath
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from belltower.errors import ConfigurationError, Unavailable


@dataclass(frozen=True)
class SftpTarget:
    host: str
    port: int
    username: str
    remote_dir: str
    known_hosts: str
    """known_hosts lines for the server (``host key-type base64``); never empty."""
    password: str | None = None
    private_key: str | None = None


def _options(target: SftpTarget) -> dict[str, object]:
    if not target.known_hosts.strip():
        raise ConfigurationError(
            f"no known host key for {target.host}: give its known_hosts line by secret reference"
        )
    options: dict[str, object] = {
        "known_hosts": asyncssh.import_known_hosts(target.known_hosts),
        "username": target.username,
        "client_keys": [asyncssh.import_private_key(target.private_key)]
        if target.private_key
        else None,
    }
    if target.password:
        options["password"] = target.password
    return options


@contextlib.asynccontextmanager
async def _session(target: SftpTarget, doing: str) -> AsyncIterator[asyncssh.SFTPClient]:
    """An SFTP session, with connection failures turned into errors that say what to fix."""
    options = _options(target)
    try:
        async with (
            asyncssh.connect(target.host, target.port, **options) as conn,
            conn.start_sftp_client() as sftp,
        ):
            yield sftp
    except asyncssh.HostKeyNotVerifiable as exc:
        raise ConfigurationError(
            f"the host key of {target.host}:{target.port} is not in the known hosts given ({exc.reason}); "
            "check the known-hosts secret against the server's key"
        ) from None
    except asyncssh.PermissionDenied as exc:
        raise ConfigurationError(
            f"{target.host}:{target.port} refused user {target.username!r} ({exc.reason}); "
            "check the password or key secret"
        ) from None
    except (OSError, asyncssh.Error) as exc:
        raise Unavailable(
            f"SFTP to {target.host}:{target.port} failed while {doing}: {exc}"
        ) from None


async def upload(target: SftpTarget, files: list[Path]) -> list[str]:
    """Upload ``files`` into ``target.remote_dir``; returns the remote paths, in order."""
    done: list[str] = []
    async with _session(target, f"uploading {len(files)} files") as sftp:
        if target.remote_dir not in ("", "."):
            await sftp.makedirs(target.remote_dir, exist_ok=True)
        for path in files:
            final = posixpath.join(target.remote_dir or ".", path.name)
            temp = posixpath.join(target.remote_dir or ".", f".{path.name}.part")
            await sftp.put(str(path), temp)
            try:
                await sftp.posix_rename(temp, final)
            except asyncssh.SFTPOpUnsupported:
                if await sftp.exists(final):
                    await sftp.remove(final)
                await sftp.rename(temp, final)
            done.append(final)
    return done


async def fetch_and_rename(target: SftpTarget, name: str, local: Path, renamed: str) -> bool:
    """Download ``remote_dir/name`` to ``local`` (atomically), then rename it on the server to
    ``renamed``, as the seeds' Frontline job does; False when the server has no such file."""
    remote = posixpath.join(target.remote_dir or ".", name)
    async with _session(target, f"fetching {remote}") as sftp:
        if not await sftp.isfile(remote):
            return False
        partial = local.with_name(f".{local.name}.part")
        await sftp.get(remote, str(partial))
        await asyncio.to_thread(_settle_download, partial, local)
        await sftp.rename(remote, posixpath.join(target.remote_dir or ".", renamed))
    return True


def _settle_download(partial: Path, local: Path) -> None:
    with partial.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(partial, local)


async def download_new(
    target: SftpTarget, pattern: str, local_dir: Path, known: set[str], limit: int
) -> list[Path]:
    """Download the files of ``remote_dir`` matching ``pattern`` whose names are not in
    ``known`` (at most ``limit``, oldest names first), each atomically into ``local_dir``."""
    got: list[Path] = []
    async with _session(target, f"listing {target.remote_dir or '.'}") as sftp:
        names = sorted(
            n for n in await sftp.listdir(target.remote_dir or ".")
            if fnmatch.fnmatchcase(n, pattern) and n not in known and not n.startswith(".")
            and "/" not in n and "\\" not in n
        )  # fmt: skip
        for name in names[:limit]:
            local = local_dir / name
            partial = local.with_name(f".{name}.part")
            await sftp.get(posixpath.join(target.remote_dir or ".", name), str(partial))
            await asyncio.to_thread(_settle_download, partial, local)
            got.append(local)
    return got
