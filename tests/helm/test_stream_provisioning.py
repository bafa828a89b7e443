"""The chart's provisioning step: a hook Job runs ``belltower-streams apply`` as the provisioner
NATS user, with the settings the services check against; run for real on a nats-server with the
chart's users. And the bundled NATS's monitoring port is open only to Belltower and the metrics
peers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nats
import pytest
import yaml

from belltower import natsauth, natsclient, streams
from belltower.settings import Settings
from belltower_dev.localservers import NatsServer
from tests.helm.support import CHART, Render, run_helm

JOB = "bt-belltower-provision-streams"
UPGRADE_JOB = "bt-belltower-provision-streams-pre-upgrade"
SCENARIOS = ("minimal-external-values.yaml", "bundled-values.yaml")
STREAM_SETTINGS = (
    "BELLTOWER_STREAM_REPLICAS",
    "BELLTOWER_DUE_MAX_AGE_S",
    "BELLTOWER_RUNS_MAX_AGE_S",
    "BELLTOWER_DUPLICATE_WINDOW_S",
)


def _own(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {
        d["metadata"]["name"]: d
        for d in docs
        if d["kind"] == kind
        and d["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "belltower"
    }


def _rendered(render: Render, values_file: str, *sets: str) -> list[dict[str, Any]]:
    apis = ("postgresql.cnpg.io/v1",) if values_file == "bundled-values.yaml" else ()
    return render(values_file, sets=sets, api_versions=apis)


def _container(job: dict[str, Any]) -> dict[str, Any]:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize("values_file", SCENARIOS)
def test_a_job_provisions_as_the_provisioner_on_install_and_a_hook_before_upgrades(
    render: Render, values_file: str
) -> None:
    docs = _rendered(render, values_file)
    jobs = _own(docs, "Job")
    assert set(jobs) == {JOB, UPGRADE_JOB}
    # on install a Job of the release (a post-install hook would wait for the services to be
    # ready under `helm install --wait`, and they wait for it); before upgrades a hook
    assert "helm.sh/hook" not in jobs[JOB]["metadata"].get("annotations", {})
    annotations = jobs[UPGRADE_JOB]["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-upgrade"
    assert "hook-succeeded" in annotations["helm.sh/hook-delete-policy"]
    assert jobs[UPGRADE_JOB]["spec"] == jobs[JOB]["spec"]
    job = jobs[JOB]
    pod = job["spec"]["template"]["spec"]
    container = _container(job)
    assert container["command"] == ["belltower-streams", "apply"]
    env = {e["name"]: e for e in container["env"]}
    assert env["BELLTOWER_NATS_USER"]["value"] == "provisioner"
    assert env["BELLTOWER_NATS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "belltower-nats-users",
        "key": "provisioner",
    }
    assert env["BELLTOWER_STREAM_DRIFT"]["value"] == "migrate"
    # the same stream settings as the services check against
    config = _own(docs, "ConfigMap")["bt-belltower-config"]["data"]
    for name in (*STREAM_SETTINGS, "BELLTOWER_NATS_URL"):
        assert env[name]["value"] == config[name], name
    # the restricted Pod Security Standard, like every other pod of the chart
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    assert pod["restartPolicy"] == "Never"
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert container["resources"]["limits"]["memory"]
    # its labels let it through the NATS NetworkPolicy (clients: Belltower's pods)
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "belltower"
    assert labels["app.kubernetes.io/instance"] == "bt"
    # no service is given the provisioner's password
    for deployment in _own(docs, "Deployment").values():
        (service,) = deployment["spec"]["template"]["spec"]["containers"]
        refs = [e.get("valueFrom", {}).get("secretKeyRef") for e in service["env"]]
        assert {"name": "belltower-nats-users", "key": "provisioner"} not in refs


def test_the_job_follows_the_values(render: Render) -> None:
    docs = _rendered(
        render,
        "minimal-external-values.yaml",
        "provisioning.drift=refuse",
        "config.streams.runsMaxAgeSeconds=86400",
        "natsTls.existingSecret=nats-ca",
    )
    container = _container(_own(docs, "Job")[JOB])
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["BELLTOWER_STREAM_DRIFT"] == "refuse"
    assert env["BELLTOWER_RUNS_MAX_AGE_S"] == "86400"
    assert env["BELLTOWER_NATS_TLS_CA"] == "/etc/belltower/nats-tls/ca.crt"
    assert "nats-tls" in {m["name"] for m in container["volumeMounts"]}
    off = _rendered(render, "minimal-external-values.yaml", "provisioning.enabled=false")
    assert _own(off, "Job") == {}


def test_the_bundled_nats_knows_every_role_s_password(render: Render) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    env = values["nats"]["container"]["env"]
    for role in natsauth.ROLES:
        assert env[natsauth.password_variable(role)] == {
            "valueFrom": {"secretKeyRef": {"name": "belltower-nats-users", "key": role}}
        }, role
    secret = _own(_rendered(render, "bundled-values.yaml"), "Secret")["belltower-nats-users"]
    assert "provisioner" in secret["data"]


def test_the_rendered_job_provisions_a_nats_with_the_chart_s_users_and_the_services_start(
    render: Render, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bundled scenario's auth.conf on a real nats-server, the Job's command with its
    rendered environment, then each service's check with the ConfigMap's settings."""
    docs = _rendered(render, "bundled-values.yaml")
    auth = _own(docs, "ConfigMap")["belltower-nats-auth"]["data"]["auth.conf"]
    identities = natsauth.generate_identities()
    (tmp_path / "auth.conf").write_text(auth)
    for role, identity in identities.items():  # the server inherits them, as in its pod
        monkeypatch.setenv(natsauth.password_variable(role), identity.password)
    container = _container(_own(docs, "Job")[JOB])
    config = _own(docs, "ConfigMap")["bt-belltower-config"]["data"]
    with NatsServer(
        store_dir=tmp_path / "nats", args=("-c", str(tmp_path / "auth.conf"))
    ) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BELLTOWER_")}
        for var in container["env"]:
            if "value" in var:
                env[var["name"]] = var["value"]
            else:
                key = var["valueFrom"]["secretKeyRef"]["key"]
                env[var["name"]] = identities[key].password  # type: ignore[index]
        env["BELLTOWER_NATS_URL"] = server.url  # the release's NATS Service, here
        env["BELLTOWER_STREAM_REPLICAS"] = "1"  # one server here, three in the cluster
        command = Path(sys.executable).parent / container["command"][0]
        done = subprocess.run(
            [str(command), *container["command"][1:]],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"created stream {streams.DUE_STREAM}" in done.stdout

        async def services_start() -> None:
            settings = {
                "nats_url": server.url,
                "stream_replicas": 1,
                "due_max_age_s": float(config["BELLTOWER_DUE_MAX_AGE_S"]),
                "runs_max_age_s": float(config["BELLTOWER_RUNS_MAX_AGE_S"]),
                "duplicate_window_s": float(config["BELLTOWER_DUPLICATE_WINDOW_S"]),
            }
            for role in ("scheduler", "notifier-worker", "integration-worker", "history"):
                identity = identities[role]  # type: ignore[index]
                ours = Settings(
                    **settings, nats_user=identity.user, nats_password=identity.password
                )
                nc = await nats.connect(
                    server.url, allow_reconnect=False, **natsclient.connect_options(ours, role)
                )
                try:
                    assert not streams.provisions(nc.jetstream(), ours)
                    await streams.ensure(nc.jetstream(timeout=2), ours)
                finally:
                    await nc.close()

        asyncio.run(services_start())


def test_the_bundled_nats_monitoring_port_is_open_only_to_belltower_and_the_metrics_peers(
    render: Render,
) -> None:
    docs = _rendered(render, "bundled-values.yaml")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    rules = _own(docs, "NetworkPolicy")["bt-belltower-nats"]["spec"]["ingress"]
    (monitoring,) = [r for r in rules if r["ports"] == [{"port": 8222, "protocol": "TCP"}]]
    belltower = {
        "podSelector": {
            "matchLabels": {
                "app.kubernetes.io/name": "belltower",
                "app.kubernetes.io/instance": "bt",
            }
        }
    }
    assert monitoring["from"] == [belltower, *values["networkPolicy"]["metricsFrom"]]
    assert all(r.get("from") for r in rules)  # no port of NATS is open to every peer


def test_an_upgrade_renders_only_the_pre_upgrade_hook(helm: Path, chart: Path) -> None:
    values = CHART / "ci" / "minimal-external-values.yaml"
    done = run_helm(
        helm,
        "template",
        "bt",
        str(chart),
        "--namespace",
        "schools",
        "-f",
        str(values),
        "--is-upgrade",
    )
    assert done.returncode == 0, done.stderr
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert set(_own(docs, "Job")) == {UPGRADE_JOB}  # Helm deletes the install Job
