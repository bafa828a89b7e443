"""Running the pinned helm on the chart, shared by the chart and alert tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "belltower"
TOOLS = REPO / "deploy" / "helm" / "tools"

Render = Callable[..., list[dict[str, Any]]]


class HelmError(Exception):
    """helm exited non-zero; the message is its stderr."""


def fetch_tool(script: str) -> Path:
    """Run one of ``deploy/helm/tools/get_*.py`` and return the binary path it prints."""
    done = subprocess.run(
        [sys.executable, str(TOOLS / script)],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.strip())


def has_fetched_dependencies() -> bool:
    return any((CHART / "charts").glob("nats-*.tgz"))


def chart_without_dependencies(destination: Path) -> Path:
    """A copy of the chart that declares no dependency, for when the NATS chart was not fetched."""
    copy = destination / "belltower"
    shutil.copytree(CHART, copy)
    meta = yaml.safe_load((copy / "Chart.yaml").read_text())
    meta.pop("dependencies")
    (copy / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return copy


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), *args], capture_output=True, text=True, check=False, timeout=120
    )


def renderer(helm: Path, chart: Path) -> Render:
    """``helm template`` of release ``bt`` in namespace ``schools``, parsed into documents."""

    def _render(
        values_file: str | None = None,
        sets: tuple[str, ...] = (),
        api_versions: tuple[str, ...] = (),
    ) -> list[dict[str, Any]]:
        args = ["template", "bt", str(chart), "--namespace", "schools"]
        if values_file:
            args += ["-f", str(CHART / "ci" / values_file)]
        for s in sets:
            args += ["--set", s]
        for api in api_versions:
            args += ["--api-versions", api]
        done = run_helm(helm, *args)
        if done.returncode != 0:
            raise HelmError(done.stderr)
        return [doc for doc in yaml.safe_load_all(done.stdout) if doc]

    return _render
