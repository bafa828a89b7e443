"""helm and the chart for the tests in this folder, fetched once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helm.support import (
    CHART,
    Render,
    chart_without_dependencies,
    fetch_tool,
    has_fetched_dependencies,
    renderer,
)


@pytest.fixture(scope="session")
def helm() -> Path:
    return fetch_tool("get_helm.py")


@pytest.fixture(scope="session")
def chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chart itself when its NATS dependency was fetched, else a copy that declares none."""
    if has_fetched_dependencies():
        return CHART
    return chart_without_dependencies(tmp_path_factory.mktemp("chart"))


@pytest.fixture(scope="session")
def render(helm: Path, chart: Path) -> Render:
    return renderer(helm, chart)
