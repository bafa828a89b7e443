"""The Helm chart as `helm lint` and `helm template` see it, checked the way a platform team would.

helm comes from ``deploy/helm/tools/get_helm.py`` (pinned, cached in ``.cache/``). The rendered
manifests are validated against the Kubernetes JSON schemas shipped by ``kubernetes-validate``
(offline), then checked for what the chart promises: probes on the health endpoints, resources,
the restricted security context, credentials only by Secret reference, HA scheduler replicas,
disruption budgets, config checksums, and monitoring objects only when their CRDs are served.

The official NATS chart is a declared dependency that is not kept in the repository. When it has
not been fetched (``helm dependency build``) the tests use a copy of the chart without that
dependency, and the bundled scenario renders with ``nats.enabled`` as given but no NATS objects.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import promql_parser
import pytest

from belltower.settings import Settings
from belltower.subjects import DUE_STREAM, worker_consumer
from belltower_scheduler.settings import SchedulerSettings
from tests.helm.support import CHART, REPO, HelmError, Render, has_fetched_dependencies, run_helm

SRE_GUIDE = REPO / "docs" / "sre-guide.md"
KUBERNETES_VERSION = "1.30.0"

MONITORING = "monitoring.coreos.com/v1"
KEDA = "keda.sh/v1alpha1"
CNPG = "postgresql.cnpg.io/v1"

# values file -> API versions the cluster is declared to serve for it
SCENARIOS: dict[str, tuple[str, ...]] = {
    "minimal-external-values.yaml": (),
    "bundled-values.yaml": (CNPG, MONITORING),
    "ha-values.yaml": (KEDA, MONITORING),
}
CUSTOM_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("postgresql.cnpg.io/v1", "Cluster"),
}
CONTRACT_METRICS = {
    "belltower_occurrences_dispatched_total",
    "belltower_occurrences_skipped_total",
    "belltower_occurrences_missed_total",
    "belltower_occurrences_recovered_total",
    "belltower_occurrences_lost_total",
    "belltower_runs_abandoned_total",
    "belltower_scheduler_lag_seconds",
    "belltower_scheduler_leader",
    "belltower_scheduler_jobs",
    "belltower_runs_total",
    "belltower_run_duration_seconds",
    "belltower_queue_wait_seconds",
    "belltower_consumer_pending_messages",
    "belltower_consumer_redeliveries_total",
    "belltower_history_events_total",
    "belltower_jobs_failing",
    "belltower_job_failure_streak",
    "belltower_job_alerts_total",
    "belltower_runs_overdue_total",
    "belltower_occurrences_held_total",
    "belltower_concurrency_wait_seconds",
    "up",
}
# BELLTOWER_* variables the services read that are not (yet) fields of the settings classes:
# the health, console and HA contracts agreed between the teams, and the CLI's default zone.
CONTRACT_ENV = {
    "BELLTOWER_HEALTH_HOST",
    "BELLTOWER_HEALTH_PORT",
    "BELLTOWER_CONSOLE_HOST",
    "BELLTOWER_CONSOLE_PORT",
    "BELLTOWER_SCHEDULER_LEASE_S",
    "BELLTOWER_SCHEDULER_PARTITIONS",
    "BELLTOWER_DEFAULT_TZ",
    "BELLTOWER_SECRETS_DIR",
    "BELLTOWER_CONSOLE_SECURE_COOKIES",
}
HEALTH_PORTS = {
    "scheduler": 9101,
    "notifier-worker": 9102,
    "integration-worker": 9103,
    "history": 9104,
}


@pytest.fixture(scope="module")
def rendered(render: Render) -> dict[str, list[dict[str, Any]]]:
    return {name: render(name, api_versions=apis) for name, apis in SCENARIOS.items()}


def own(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Belltower's objects, without those of the NATS chart when it was fetched."""
    return [
        d
        for d in docs
        if d["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "belltower"
    ]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in own(docs) if d["kind"] == kind]


def config_of(docs: list[dict[str, Any]]) -> dict[str, str]:
    return by_name(docs, "ConfigMap")["bt-belltower-config"]["data"]


def by_name(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in of_kind(docs, kind)}


def containers(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for deployment in of_kind(docs, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        for container in pod.get("initContainers", []) + pod["containers"]:
            yield deployment["metadata"]["name"], pod, container


# --- lint and schemas -----------------------------------------------------------------------


@pytest.mark.parametrize("values_file", list(SCENARIOS))
def test_lint_strict_passes(helm: Path, chart: Path, values_file: str) -> None:
    done = run_helm(helm, "lint", "--strict", str(chart), "-f", str(CHART / "ci" / values_file))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[WARNING]" not in done.stdout and "[ERROR]" not in done.stdout, done.stdout


def test_lint_of_the_chart_itself_complains_only_of_the_unfetched_dependency(helm: Path) -> None:
    done = run_helm(
        helm, "lint", str(CHART), "-f", str(CHART / "ci" / "minimal-external-values.yaml")
    )
    complaints = [
        line for line in done.stdout.splitlines() if "[WARNING]" in line or "[ERROR]" in line
    ]
    if has_fetched_dependencies():
        assert complaints == []
    else:
        assert len(complaints) == 1 and "missing these dependencies: nats" in complaints[0]


@pytest.mark.parametrize("values_file", list(SCENARIOS))
def test_manifests_match_the_kubernetes_schemas(
    rendered: dict[str, list[dict[str, Any]]], values_file: str
) -> None:
    docs = rendered[values_file]
    assert of_kind(docs, "Deployment")
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_schema_validator_rejects_a_misspelt_field(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    deployment = json.loads(
        json.dumps(of_kind(rendered["minimal-external-values.yaml"], "Deployment")[0])
    )
    deployment["spec"]["template"]["spec"]["containers"][0]["readynessProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_values_schema_refuses_unknown_keys_and_bad_values(render: Render) -> None:
    for bad, field in [
        ("scheduler.replica=3", "replica"),
        ("notifierWorker.image.pullPolicy=Sometimes", "pullPolicy"),
        ("config.streams.replicas=7", "replicas"),
        ("scheduler.replicas=1", "scheduler.replicas"),
        ("scheduler.reconcile.attempts=0", "attempts"),
    ]:
        with pytest.raises(HelmError, match=re.escape(field)):
            render("minimal-external-values.yaml", sets=(bad,))


def test_the_reconcilers_settings_reach_the_config_and_its_derived_deadlines_stay_derived(
    render: Render,
) -> None:
    default = config_of(render("minimal-external-values.yaml"))
    assert default["BELLTOWER_RECONCILE_INTERVAL_S"] == "30"
    assert default["BELLTOWER_RECONCILE_ATTEMPTS"] == "3"
    assert "BELLTOWER_RECONCILE_START_DEADLINE_S" not in default  # ack wait x most deliveries
    assert "BELLTOWER_RECONCILE_ABANDON_S" not in default
    set_ = config_of(
        render(
            "minimal-external-values.yaml",
            sets=(
                "scheduler.reconcile.startDeadlineSeconds=300",
                "scheduler.reconcile.abandonSeconds=120",
            ),
        )
    )
    assert set_["BELLTOWER_RECONCILE_START_DEADLINE_S"] == "300"
    assert set_["BELLTOWER_RECONCILE_ABANDON_S"] == "120"


# --- what every pod promises ----------------------------------------------------------------


@pytest.mark.parametrize("values_file", list(SCENARIOS))
def test_every_container_has_probes_resources_and_the_restricted_security_context(
    rendered: dict[str, list[dict[str, Any]]], values_file: str
) -> None:
    seen = set()
    for name, pod, container in containers(rendered[values_file]):
        seen.add(name)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe, path in [
            ("startupProbe", "/livez"),
            ("livenessProbe", "/livez"),
            ("readinessProbe", "/readyz"),
        ]:
            check = container[probe]["httpGet"]
            assert check["path"] == path, (name, probe)
            assert check["port"] in ports, (name, probe, check["port"])
        resources = container["resources"]
        assert resources["requests"]["cpu"] and resources["requests"]["memory"], name
        assert resources["limits"]["memory"], name
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] is True, name
        assert sc["readOnlyRootFilesystem"] is True, name
        assert sc["allowPrivilegeEscalation"] is False, name
        assert sc["capabilities"]["drop"] == ["ALL"], name
        assert sc["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["automountServiceAccountToken"] is False, name
        volumes = {v["name"]: v for v in pod["volumes"]}
        tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
        assert tmp and "emptyDir" in volumes[tmp[0]["name"]], name
    assert len(seen) == 5, seen


def test_services_listen_on_the_contract_health_ports(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["minimal-external-values.yaml"]
    config = config_of(docs)
    assert config["BELLTOWER_HEALTH_HOST"] == "0.0.0.0"
    for name, _pod, container in containers(docs):
        env = {e["name"]: e.get("value") for e in container["env"]}
        component = name.removeprefix("bt-belltower-")
        if component == "console":
            assert env["BELLTOWER_CONSOLE_PORT"] == "8080"
            assert env["BELLTOWER_CONSOLE_HOST"] == "0.0.0.0"
        else:
            assert env["BELLTOWER_HEALTH_PORT"] == str(HEALTH_PORTS[component])
            assert container["ports"] == [
                {"name": "health", "containerPort": HEALTH_PORTS[component], "protocol": "TCP"}
            ]


def test_every_belltower_variable_is_one_the_services_read(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    known = {f"BELLTOWER_{f.upper()}" for f in SchedulerSettings.model_fields} | CONTRACT_ENV
    assert {f"BELLTOWER_{f.upper()}" for f in Settings.model_fields} <= known
    for docs in rendered.values():
        names = set(config_of(docs))
        for _name, _pod, container in containers(docs):
            names |= {e["name"] for e in container["env"]}
        unknown = {n for n in names if n.startswith("BELLTOWER_")} - known
        assert unknown == set()


# --- credentials ----------------------------------------------------------------------------

CREDENTIAL_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s@]+:[^/\s@]+@", re.I)
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|DATABASE_URL|CREDS", re.I)


def _plain_strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _plain_strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _plain_strings(value)
    elif isinstance(node, str):
        yield node


@pytest.mark.parametrize("values_file", list(SCENARIOS))
def test_no_credentials_in_plain_text(
    rendered: dict[str, list[dict[str, Any]]], values_file: str
) -> None:
    docs = rendered[values_file]
    # The one Secret the chart makes holds NATS passwords it generates itself, never values.
    assert [s["metadata"]["name"] for s in of_kind(docs, "Secret")] == ["belltower-nats-users"]
    leaked = [s for doc in own(docs) for s in _plain_strings(doc) if CREDENTIAL_URL.search(s)]
    assert leaked == []
    for key in config_of(docs):
        assert not SECRET_NAME.search(key), key
    for name, _pod, container in containers(docs):
        env = {e["name"]: e for e in container["env"]}
        assert "secretKeyRef" in env["BELLTOWER_DATABASE_URL"]["valueFrom"], name
        for var in env.values():
            if SECRET_NAME.search(var["name"]) and not var["name"].endswith("_DIR"):
                assert "value" not in var and "secretKeyRef" in var["valueFrom"], (name, var)


def test_credentials_in_the_nats_url_are_refused(render: Render) -> None:
    with pytest.raises(HelmError, match=r"externalNats\.existingSecret"):
        render("minimal-external-values.yaml", sets=("externalNats.url=nats://u:p@nats:4222",))


def test_an_install_without_a_database_is_refused_with_the_value_to_set(render: Render) -> None:
    with pytest.raises(HelmError, match=r"externalDatabase\.existingSecret is required"):
        render(sets=("externalNats.url=nats://nats:4222",))


# --- HA, disruption budgets, autoscaling ----------------------------------------------------


@pytest.mark.parametrize("values_file", list(SCENARIOS))
def test_scheduler_runs_at_least_two_replicas(
    rendered: dict[str, list[dict[str, Any]]], values_file: str
) -> None:
    scheduler = by_name(rendered[values_file], "Deployment")["bt-belltower-scheduler"]
    assert scheduler["spec"]["replicas"] >= 2


@pytest.mark.parametrize("values_file", list(SCENARIOS))
def test_each_deployment_has_a_disruption_budget(
    rendered: dict[str, list[dict[str, Any]]], values_file: str
) -> None:
    docs = rendered[values_file]
    budgets = of_kind(docs, "PodDisruptionBudget")
    for deployment in of_kind(docs, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        matching = [
            b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert len(matching) == 1, deployment["metadata"]["name"]
    scheduler_budget = by_name(docs, "PodDisruptionBudget")["bt-belltower-scheduler"]
    assert scheduler_budget["spec"]["minAvailable"] >= 1


def test_replicas_spread_over_nodes_unless_told_otherwise(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    for deployment in of_kind(rendered["minimal-external-values.yaml"], "Deployment"):
        pod = deployment["spec"]["template"]
        (spread,) = pod["spec"]["topologySpreadConstraints"]
        assert spread["topologyKey"] == "kubernetes.io/hostname"
        assert (
            spread["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
        )
    ha = by_name(rendered["ha-values.yaml"], "Deployment")["bt-belltower-scheduler"]
    (custom,) = ha["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert custom["labelSelector"]["matchLabels"] == {"app.kubernetes.io/component": "scheduler"}


def test_workers_scale_on_consumer_lag_with_keda_and_history_on_cpu(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["ha-values.yaml"]
    deployments = by_name(docs, "Deployment")
    scaled = by_name(docs, "ScaledObject")
    for pool in ("notifier", "integration"):
        name = f"bt-belltower-{pool}-worker"
        trigger = scaled[name]["spec"]["triggers"][0]
        assert trigger["type"] == "nats-jetstream"
        assert trigger["metadata"]["stream"] == DUE_STREAM
        assert trigger["metadata"]["consumer"] == worker_consumer(pool)
        assert scaled[name]["spec"]["scaleTargetRef"]["name"] == name
        assert "replicas" not in deployments[name]["spec"]
    hpas = by_name(docs, "HorizontalPodAutoscaler")
    assert set(hpas) == {"bt-belltower-history"}
    assert hpas["bt-belltower-history"]["apiVersion"] == "autoscaling/v2"
    assert hpas["bt-belltower-history"]["spec"]["scaleTargetRef"]["name"] in deployments
    assert "replicas" not in deployments["bt-belltower-history"]["spec"]


def test_cpu_autoscaling_gives_the_workers_an_hpa(render: Render) -> None:
    docs = render(
        "minimal-external-values.yaml",
        sets=(
            "notifierWorker.autoscaling.enabled=true",
            "integrationWorker.autoscaling.enabled=true",
        ),
    )
    assert set(by_name(docs, "HorizontalPodAutoscaler")) == {
        "bt-belltower-notifier-worker",
        "bt-belltower-integration-worker",
    }


def test_keda_without_its_api_is_refused(render: Render) -> None:
    with pytest.raises(HelmError, match=r"keda\.sh/v1alpha1"):
        render("ha-values.yaml", api_versions=(MONITORING,))


# --- config rolls the pods ------------------------------------------------------------------


def _checksums(docs: list[dict[str, Any]]) -> dict[str, str]:
    return {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        for d in of_kind(docs, "Deployment")
    }


def test_a_config_change_changes_every_pod_checksum(render: Render) -> None:
    before = _checksums(render("minimal-external-values.yaml"))
    again = _checksums(render("minimal-external-values.yaml"))
    after = _checksums(
        render("minimal-external-values.yaml", sets=("config.streams.runsMaxAgeSeconds=86400",))
    )
    assert before == again
    assert len(before) == 5
    assert all(after[name] != before[name] for name in before)


# --- bundled NATS and PostgreSQL ------------------------------------------------------------


def test_bundled_services_point_at_the_release_nats_and_cnpg_secret(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["bundled-values.yaml"]
    config = config_of(docs)
    assert config["BELLTOWER_NATS_URL"] == "nats://bt-nats.schools.svc:4222"
    cluster = by_name(docs, "Cluster")["bt-belltower-pg"]
    assert cluster["spec"]["instances"] == 3
    assert cluster["spec"]["bootstrap"]["initdb"]["database"] == "belltower"
    for name, _pod, container in containers(docs):
        env = {e["name"]: e for e in container["env"]}
        ref = env["BELLTOWER_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "bt-belltower-pg-app", "key": "uri"}, name
    if has_fetched_dependencies():
        (nats,) = [d for d in docs if d["kind"] == "StatefulSet"]
        assert nats["metadata"]["name"] == "bt-nats" and nats["spec"]["replicas"] == 3
        pod = nats["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        (nats_config,) = [d for d in docs if d["metadata"]["name"] == "bt-nats-config"]
        jetstream = re.search(r'"jetstream": \{[^}]*\}', nats_config["data"]["nats.conf"])
        assert jetstream, nats_config["data"]["nats.conf"]
        assert '"sync_interval": "always"' in jetstream.group(0)
        assert '"max_memory_store": 0' in jetstream.group(0)


def test_bundled_postgres_without_the_operator_is_refused(render: Render) -> None:
    with pytest.raises(HelmError, match="CloudNativePG operator"):
        render("bundled-values.yaml")


# --- monitoring -----------------------------------------------------------------------------


def test_monitoring_objects_only_when_their_crds_are_served(render: Render) -> None:
    without = render("minimal-external-values.yaml")
    assert of_kind(without, "ServiceMonitor") == [] and of_kind(without, "PrometheusRule") == []
    docs = render("minimal-external-values.yaml", api_versions=(MONITORING,))
    (monitor,) = of_kind(docs, "ServiceMonitor")
    (rule,) = of_kind(docs, "PrometheusRule")
    selector = monitor["spec"]["selector"]["matchLabels"]
    scraped = [
        s for s in of_kind(docs, "Service") if selector.items() <= s["metadata"]["labels"].items()
    ]
    assert len(scraped) == 5
    assert all(any(p["name"] == "metrics" for p in s["spec"]["ports"]) for s in scraped)
    assert {g["name"] for g in rule["spec"]["groups"]} >= {"belltower.scheduler", "belltower.runs"}


def _metric_names(expr: str) -> set[str]:
    names: set[str] = set()

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def _base_metric(name: str) -> str:
    return re.sub(r"_(bucket|sum|count)$", "", name)


def _alert_rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    (rule,) = of_kind(docs, "PrometheusRule")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def _github_anchor(heading: str) -> str:
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def test_alerts_parse_use_contract_metrics_and_link_to_their_runbook(render: Render) -> None:
    docs = render(
        "minimal-external-values.yaml",
        sets=("metrics.prometheusRule.thresholds.lagP99Seconds=45",),
        api_versions=(MONITORING,),
    )
    rules = _alert_rules(docs)
    anchors = {
        _github_anchor(line.lstrip("#"))
        for line in SRE_GUIDE.read_text().splitlines()
        if line.startswith("#")
    }
    alerts = {r["alert"] for r in rules}
    assert {
        "BelltowerSchedulerDown",
        "BelltowerSchedulerNoLeader",
        "BelltowerSchedulerLagHigh",
        "BelltowerRunFailureRateHigh",
        "BelltowerConsumerBacklogGrowing",
        "BelltowerJobKeepsFailing",
    } <= alerts
    for r in rules:
        assert "__" not in r["expr"], r["alert"]
        used = {_base_metric(n) for n in _metric_names(r["expr"])}
        assert used and used <= CONTRACT_METRICS, (r["alert"], used - CONTRACT_METRICS)
        notes = r["annotations"]
        assert notes["summary"] and notes["description"], r["alert"]
        base, _, anchor = notes["runbook_url"].partition("#")
        assert base.endswith("docs/sre-guide.md"), r["alert"]
        assert anchor == r["alert"].lower() and anchor in anchors, r["alert"]
    lag = next(r for r in rules if r["alert"] == "BelltowerSchedulerLagHigh")
    assert lag["expr"].rstrip().endswith("> 45")


def test_the_dashboard_charts_every_contract_metric(render: Render) -> None:
    docs = render("minimal-external-values.yaml")
    shipped = by_name(docs, "ConfigMap")["bt-belltower-dashboard"]
    assert shipped["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(shipped["data"]["belltower.json"])
    assert dashboard == json.loads((CHART / "files" / "grafana-dashboard.json").read_text())
    used: set[str] = set()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", "5m").replace("$namespace", ".*")
            used |= {_base_metric(n) for n in _metric_names(expr)}
    assert used == CONTRACT_METRICS
    off = render("minimal-external-values.yaml", sets=("grafanaDashboard.enabled=false",))
    assert "bt-belltower-dashboard" not in by_name(off, "ConfigMap")


def test_keda_finds_the_bundled_nats_monitoring_endpoint_by_itself(render: Render) -> None:
    docs = render(
        "bundled-values.yaml",
        sets=("notifierWorker.keda.enabled=true",),
        api_versions=(CNPG, KEDA),
    )
    (scaled,) = of_kind(docs, "ScaledObject")
    endpoint = scaled["spec"]["triggers"][0]["metadata"]["natsServerMonitoringEndpoint"]
    assert endpoint == "bt-nats-headless.schools.svc.cluster.local:8222"


def test_traces_are_exported_only_when_an_otlp_endpoint_is_set(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    minimal = config_of(rendered["minimal-external-values.yaml"])
    assert minimal["OTEL_TRACES_EXPORTER"] == "none"
    ha = config_of(rendered["ha-values.yaml"])
    assert ha["OTEL_TRACES_EXPORTER"] == "otlp"
    assert ha["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability.svc:4318"
    assert "k8s.namespace.name=schools" in ha["OTEL_RESOURCE_ATTRIBUTES"].split(",")
    names = {
        e["value"]
        for _n, _p, c in containers(rendered["ha-values.yaml"])
        for e in c["env"]
        if e["name"] == "OTEL_SERVICE_NAME"
    }
    assert names == {
        "belltower-scheduler",
        "belltower-notifier-worker",
        "belltower-integration-worker",
        "belltower-history",
        "belltower-console",
    }


def test_job_secrets_are_mounted_read_only_for_the_integration_worker(render: Render) -> None:
    docs = render(
        "minimal-external-values.yaml", sets=("integrationWorker.jobSecrets.existingSecret=jobs",)
    )
    deployments = by_name(docs, "Deployment")
    worker = deployments["bt-belltower-integration-worker"]["spec"]["template"]["spec"]
    container = worker["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    mount = next(m for m in container["volumeMounts"] if m["name"] == "job-secrets")
    assert mount["readOnly"] is True
    assert env["BELLTOWER_SECRETS_DIR"]["value"] == mount["mountPath"]
    volume = next(v for v in worker["volumes"] if v["name"] == "job-secrets")
    assert volume["secret"]["secretName"] == "jobs"
    scheduler = deployments["bt-belltower-scheduler"]["spec"]["template"]["spec"]["containers"][0]
    replica = {e["name"]: e for e in scheduler["env"]}["BELLTOWER_SCHEDULER_REPLICA_ID"]
    assert replica["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
