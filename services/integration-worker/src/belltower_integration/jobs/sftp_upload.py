"""``files.sftp_upload``: send export files from the batch folder to an SFTP server.

Each matching file is uploaded under a temporary name and renamed into place, then moved to the
batch folder's ``sent/`` folder with a timestamp, so the next run sends only new exports. A run
repeated after a crash sends the same file again, which replaces it whole on the server.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import msgspec

from belltower.errors import InvalidInput
from belltower.fences import BatchGlob, BatchPath
from belltower.jobtypes import JobContext, JobType

from .. import batchfiles
from ..report import Tally
from ..secrets import read_secret
from ..sftp import SftpTarget, upload


class SftpUploadParams(msgspec.Struct, forbid_unknown_fields=True):
    host: Annotated[str, msgspec.Meta(min_length=1, description="SFTP server host name")]
    username: Annotated[str, msgspec.Meta(min_length=1)]
    pattern: Annotated[
        BatchGlob,
        msgspec.Meta(
            min_length=1,
            description="Files to send, a glob inside the batch folder, e.g. exports/*.csv",
        ),
    ]
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 22
    remote_dir: str = "."
    password_secret: Annotated[
        str | None, msgspec.Meta(description="Name of the secret holding the password")
    ] = None
    key_secret: Annotated[
        str | None, msgspec.Meta(description="Name of the secret holding an OpenSSH private key")
    ] = None
    known_hosts_secret: Annotated[
        str, msgspec.Meta(description="Name of the secret holding the server's known_hosts line")
    ] = "sftp-known-hosts"
    sent_folder: Annotated[
        BatchPath,
        msgspec.Meta(
            description="Where sent files are moved, inside the batch folder; '' keeps them"
        ),
    ] = "sent"


def _matching(folder: Path, pattern: str) -> list[Path]:
    found = (p for p in folder.glob(pattern) if p.is_file() and not p.name.startswith("."))
    return sorted(batchfiles.confined(folder, found))


async def run(ctx: JobContext, params: SftpUploadParams) -> None:
    base = Path(ctx.settings.batch_folder)
    batchfiles.inside(base, params.pattern, "param.pattern")
    if not params.password_secret and not params.key_secret:
        raise InvalidInput(
            "param.password_secret", "neither a password nor a key secret is given",
            "password_secret or key_secret naming a secret",
        )  # fmt: skip
    target = SftpTarget(
        host=params.host,
        port=params.port,
        username=params.username,
        remote_dir=params.remote_dir,
        known_hosts=read_secret(params.known_hosts_secret, "param.known_hosts_secret"),
        password=read_secret(params.password_secret, "param.password_secret")
        if params.password_secret
        else None,
        private_key=read_secret(params.key_secret, "param.key_secret")
        if params.key_secret
        else None,
    )
    files = await asyncio.to_thread(_matching, base, params.pattern)
    tally = Tally("SFTP upload")
    if not files:
        tally.write(ctx, f"no file matches {params.pattern}; nothing sent")
        return
    await ctx.progress(0, len(files), f"sending {len(files)} files to {params.host}")
    remote = await upload(target, files)
    stamp = batchfiles.stamp()
    for path, remote_path in zip(files, remote, strict=True):
        note = f"sent to {params.host}:{remote_path}"
        if params.sent_folder:
            moved = await asyncio.to_thread(
                batchfiles.archive,
                path,
                batchfiles.inside(base, params.sent_folder, "param.sent_folder"),
                f"{path.stem}_{stamp}{path.suffix}",
            )
            note += f", moved to {moved.relative_to(base)}"
        tally.ok(str(path.relative_to(base)), note)
    await ctx.progress(len(files), len(files), "sent")
    tally.write(ctx, f"sent {len(files)} files to {params.host}")


job_type = JobType(
    name="files.sftp_upload",
    pool="integration",
    title="SFTP Upload",
    description=(
        "Sends export files from the batch folder to an SFTP server (host key checked, password "
        "or key by secret reference), each under a temporary name renamed into place, then moves "
        "them to the batch folder's sent folder with a timestamp."
    ),
    params=SftpUploadParams,
    run=run,
    # District SFTP servers commonly allow a user a couple of sessions at once.
    concurrency_key="sftp:{host}",
    concurrency_limit=2,
)
