"""Uploading exports over SFTP (asyncssh), always checking the server's host key.

A file is uploaded under a temporary name and renamed into place, so the receiving system never
picks up half a file; uploading the same export again replaces it whole, so a repeated run is
harmless. Credentials and known hosts come by secret reference, never from job parameters.
"""

from __future__ import annotations

import posixpath
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


async def upload(target: SftpTarget, files: list[Path]) -> list[str]:
    """Upload ``files`` into ``target.remote_dir``; returns the remote paths, in order."""
    if not target.known_hosts.strip():
        raise ConfigurationError(
            f"no known host key for {target.host}: give its known_hosts line by secret reference"
        )
    options: dict[str, object] = {
        "known_hosts": asyncssh.import_known_hosts(target.known_hosts),
        "username": target.username,
    }
    if target.private_key:
        options["client_keys"] = [asyncssh.import_private_key(target.private_key)]
    else:
        options["client_keys"] = None
    if target.password:
        options["password"] = target.password
    done: list[str] = []
    try:
        async with (
            asyncssh.connect(target.host, target.port, **options) as conn,  # type: ignore[arg-type]
            conn.start_sftp_client() as sftp,
        ):
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
            f"SFTP to {target.host}:{target.port} failed after {len(done)} of {len(files)} files: {exc}"
        ) from None
    return done
