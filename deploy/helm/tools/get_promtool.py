#!/usr/bin/env python3
"""Puts promtool (from Debian's ``prometheus`` package) in the repository's ``.cache/`` and prints its path.

The alert rules are checked and unit-tested with ``promtool check rules`` and ``promtool test
rules``. promtool is not a Python package; Debian ships it in ``prometheus``, which this script
downloads with ``apt-get download`` (no install, no root needed once the package lists exist) and
unpacks with ``dpkg-deb``. A second call finds it in the cache. ``BELLTOWER_PROMTOOL`` names
another promtool binary to use instead.

Usage: ``python3 deploy/helm/tools/get_promtool.py`` (prints the path of promtool).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from toolcache import ensure_cached

DEBIAN_PACKAGE = "prometheus"
MEMBER = Path("usr/bin/promtool")

REPO_ROOT = Path(__file__).resolve().parents[3]
CACHE_DIR = REPO_ROOT / ".cache" / "promtool"


class PromtoolUnavailableError(RuntimeError):
    """promtool could not be fetched; the message says what to install or set."""


def promtool_version(binary: Path) -> str:
    done = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, check=False, timeout=60
    )
    if done.returncode != 0:
        raise PromtoolUnavailableError(f"{binary} does not run: {done.stderr.strip()}")
    return (done.stdout or done.stderr).split("\n", 1)[0]


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=cwd, capture_output=True, text=True, check=False, timeout=600
    )


def _download(workdir: Path) -> Path:
    apt_get, dpkg_deb = shutil.which("apt-get"), shutil.which("dpkg-deb")
    if apt_get is None or dpkg_deb is None:
        raise PromtoolUnavailableError(
            "apt-get and dpkg-deb are needed to fetch promtool (Debian's prometheus package), "
            "or set BELLTOWER_PROMTOOL to the path of a promtool binary"
        )
    done = _run(apt_get, "download", DEBIAN_PACKAGE, cwd=workdir)
    if done.returncode != 0:
        # Fresh machines have no package lists yet; refreshing them needs root.
        _run(apt_get, "update", "-qq", cwd=workdir)
        done = _run(apt_get, "download", DEBIAN_PACKAGE, cwd=workdir)
    debs = sorted(workdir.glob(f"{DEBIAN_PACKAGE}_*.deb"))
    if done.returncode != 0 or len(debs) != 1:
        raise PromtoolUnavailableError(
            f"`apt-get download {DEBIAN_PACKAGE}` failed: {done.stderr.strip()[-2000:]}"
        )
    unpacked = workdir / "root"
    done = _run(dpkg_deb, "-x", str(debs[0]), str(unpacked), cwd=workdir)
    if done.returncode != 0:
        raise PromtoolUnavailableError(f"dpkg-deb -x {debs[0].name} failed: {done.stderr.strip()}")
    return unpacked / MEMBER


def ensure_promtool() -> Path:
    """Return a runnable promtool, fetching it into the cache on first use."""
    return ensure_cached(CACHE_DIR / "promtool", "BELLTOWER_PROMTOOL", promtool_version, _download)


def main() -> int:
    try:
        print(ensure_promtool())
    except PromtoolUnavailableError as exc:
        print(f"get_promtool: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
