"""A real SFTP server (asyncssh) on a free local port, serving a temporary folder, for tests.

It accepts one user by password or by public key, and hands the test the known_hosts line of
its freshly generated host key, so clients connect with host key checking on, as in production.
"""

from __future__ import annotations

import socket
from pathlib import Path

import asyncssh


class SftpStandIn:
    """``async with SftpStandIn(root) as server``: ``server.port``, ``server.known_hosts``..."""

    def __init__(self, root: Path, username: str = "belltower", password: str = "s3cret") -> None:
        self.root = root
        self.username = username
        self.password = password
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.client_key = asyncssh.generate_private_key("ssh-ed25519")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._server: asyncssh.SSHAcceptor | None = None

    @property
    def known_hosts(self) -> str:
        key = self.host_key.export_public_key().decode().strip()
        return f"[127.0.0.1]:{self.port} {key}\n"

    @property
    def client_private_key(self) -> str:
        return self.client_key.export_private_key().decode()

    async def __aenter__(self) -> SftpStandIn:
        stand_in = self

        class Server(asyncssh.SSHServer):
            def begin_auth(self, username: str) -> bool:
                return True

            def password_auth_supported(self) -> bool:
                return True

            def validate_password(self, username: str, password: str) -> bool:
                return username == stand_in.username and password == stand_in.password

            def public_key_auth_supported(self) -> bool:
                return True

            def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
                return (
                    username == stand_in.username
                    and key.public_data == stand_in.client_key.public_data
                )

        root = str(self.root).encode()

        def sftp_factory(chan: asyncssh.SSHServerChannel) -> asyncssh.SFTPServer:
            return asyncssh.SFTPServer(chan, chroot=root)

        self._server = await asyncssh.create_server(
            Server,
            "127.0.0.1",
            self.port,
            server_host_keys=[self.host_key],
            sftp_factory=sftp_factory,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
