"""The cache both tool scripts share: an override variable, a cached binary, one fetch at a time."""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def ensure_cached(
    binary: Path,
    override_env: str,
    check: Callable[[Path], object],
    fetch: Callable[[Path], Path],
) -> Path:
    """``$override_env`` if set (checked), else ``binary`` once ``fetch`` has staged it.

    ``fetch(workdir)`` returns a staged binary inside ``workdir``; it is checked, then moved into
    place. A lock in the cache folder keeps concurrent test processes from fetching twice.
    """
    override = os.environ.get(override_env)
    if override:
        check(Path(override))
        return Path(override)
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    with (binary.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
        with tempfile.TemporaryDirectory(dir=binary.parent) as work:
            staged = fetch(Path(work))
            check(staged)
            os.replace(staged, binary)
    return binary
