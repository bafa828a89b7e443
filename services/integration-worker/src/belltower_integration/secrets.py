"""Secrets by reference: job parameters name a secret, never hold it.

A job's parameters are stored, shown in the console and exported, so a token or password in them
would leak. A parameter holds the secret's name instead; the worker reads the value from the file
``$BELLTOWER_SECRETS_DIR/<name>`` (a Kubernetes Secret mounted as files) or, failing that, from the
environment variable ``BELLTOWER_SECRET_<NAME>`` (upper case, ``-`` and ``.`` as ``_``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated

import msgspec

from belltower.errors import ConfigurationError, InvalidInput

SECRET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\Z")
SECRET_FORM = (
    "letters, digits, '_', '.', '-' (up to 100), naming a secret file or BELLTOWER_SECRET_<NAME>"
)


def env_name(name: str) -> str:
    return "BELLTOWER_SECRET_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def read_secret(name: str, field: str) -> str:
    """The value of secret ``name``; ConfigurationError says where it was looked for."""
    if not SECRET_NAME.match(name):
        raise InvalidInput(field, f"{name!r} is not a secret name", SECRET_FORM)
    folder = os.environ.get("BELLTOWER_SECRETS_DIR")
    if folder:
        path = Path(folder) / name
        if path.is_file():
            return path.read_text(encoding="utf-8").strip()
    value = os.environ.get(env_name(name))
    if value:
        return value
    where = f"a file {name!r} in BELLTOWER_SECRETS_DIR or " if folder else ""
    raise ConfigurationError(
        f"secret {name!r} (parameter {field}) is not set: provide {where}the environment variable "
        f"{env_name(name)} on the integration worker"
    )


SecretName = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$",
        description="Name of a secret (a file in BELLTOWER_SECRETS_DIR or BELLTOWER_SECRET_<NAME>)",
    ),
]
"""A job parameter naming a secret: checked when the job is saved, so no value can be stored."""
