"""The alert rules as the chart ships them, checked and unit-tested with promtool.

``alert-rules-test.yaml`` feeds synthetic series to each alert and states when it must fire,
with which labels and with which summary, description and runbook link; ``promtool test rules``
evaluates the rules exactly as Prometheus would. The rules under test are the chart's rendered
PrometheusRule, so the threshold and runbook substitutions are tested too.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.helm.support import Render, fetch_tool

RULE_TESTS = Path(__file__).with_name("alert-rules-test.yaml")
RUNBOOK_BASE = "https://runbooks.example/docs/sre-guide.md"


@pytest.fixture(scope="module")
def promtool() -> Path:
    return fetch_tool("get_promtool.py")


@pytest.fixture(scope="module")
def rule_dir(render: Render, tmp_path_factory: pytest.TempPathFactory) -> Path:
    docs = render(
        "minimal-external-values.yaml",
        sets=(f"metrics.prometheusRule.runbookBaseUrl={RUNBOOK_BASE}",),
        api_versions=("monitoring.coreos.com/v1",),
    )
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    folder = tmp_path_factory.mktemp("rules")
    (folder / "rules.yaml").write_text(yaml.safe_dump(rule["spec"], sort_keys=False))
    shutil.copy(RULE_TESTS, folder / RULE_TESTS.name)
    return folder


def promtool_run(promtool: Path, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), *args], cwd=folder, capture_output=True, text=True, check=False, timeout=120
    )


def test_promtool_accepts_the_rendered_rules(promtool: Path, rule_dir: Path) -> None:
    done = promtool_run(promtool, rule_dir, "check", "rules", "rules.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 12 rules found" in done.stdout


def test_each_alert_fires_when_and_as_documented(promtool: Path, rule_dir: Path) -> None:
    done = promtool_run(promtool, rule_dir, "test", "rules", RULE_TESTS.name)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_unit_test(rule_dir: Path) -> None:
    rules = yaml.safe_load((rule_dir / "rules.yaml").read_text())
    alerts = {r["alert"] for group in rules["groups"] for r in group["rules"]}
    cases = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    firing = {
        check["alertname"]
        for case in cases
        for check in case["alert_rule_test"]
        if check["exp_alerts"]
    }
    assert firing == alerts
