"""The SFTP server a billing or aid job fetches from or sends to: parameters and connection."""

from __future__ import annotations

from typing import Annotated

import msgspec

from belltower.errors import InvalidInput

from ..secrets import SecretName, read_secret
from ..sftp import SftpTarget
from .common import Meta

Host = Annotated[
    str, Meta(pattern=r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$", description="SFTP server host name")
]
RemoteDir = Annotated[
    str, Meta(pattern=r"^[A-Za-z0-9._/-]{1,200}$", description="folder on the SFTP server")
]


class Sftp(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    host: Host
    username: Annotated[str, Meta(pattern=r"^[A-Za-z0-9._@-]{1,64}$")]
    port: Annotated[int, Meta(ge=1, le=65535)] = 22
    remote_dir: RemoteDir = "."
    password_secret: SecretName | None = None
    key_secret: SecretName | None = None
    known_hosts_secret: SecretName = "sftp-known-hosts"


def target(sftp: Sftp, field: str = "param.sftp") -> SftpTarget:
    """The connection, its password or key and the server's host key read by secret reference."""
    if not sftp.password_secret and not sftp.key_secret:
        raise InvalidInput(
            f"{field}.password_secret", "neither a password nor a key secret is given",
            "password_secret or key_secret naming a secret",
        )  # fmt: skip
    return SftpTarget(
        host=sftp.host,
        port=sftp.port,
        username=sftp.username,
        remote_dir=sftp.remote_dir,
        known_hosts=read_secret(sftp.known_hosts_secret, f"{field}.known_hosts_secret"),
        password=read_secret(sftp.password_secret, f"{field}.password_secret")
        if sftp.password_secret
        else None,
        private_key=read_secret(sftp.key_secret, f"{field}.key_secret")
        if sftp.key_secret
        else None,
    )
