"""The chart's trust boundary: a NATS user per Deployment, the bundled NATS configured with the
declared permissions, a NetworkPolicy per component, helm test hooks and the Secure cookie."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.errors import Error as NatsError

from belltower import natsauth
from belltower_dev.localservers import NatsServer
from tests.helm.support import CHART, Render

COMPONENTS = ("scheduler", "notifier-worker", "integration-worker", "history", "console")


def _own(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {
        d["metadata"]["name"]: d
        for d in docs
        if d["kind"] == kind
        and d["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "belltower"
    }


def _env(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e for e in container["env"]}


@pytest.fixture(scope="module")
def bundled(render: Render) -> list[dict[str, Any]]:
    return render("bundled-values.yaml", api_versions=("postgresql.cnpg.io/v1",))


@pytest.fixture(scope="module")
def minimal(render: Render) -> list[dict[str, Any]]:
    return render("minimal-external-values.yaml")


def test_the_chart_declares_the_users_natsauth_declares() -> None:
    shipped = json.loads((CHART / "files" / "nats-users.json").read_text())
    assert shipped == natsauth.chart_users(), (
        "regenerate deploy/helm/belltower/files/nats-users.json from belltower.natsauth.chart_users()"
    )


@pytest.mark.parametrize("scenario", ["bundled", "minimal"])
def test_each_deployment_connects_as_its_own_nats_user(request, scenario: str) -> None:
    docs = request.getfixturevalue(scenario)
    deployments = _own(docs, "Deployment")
    assert set(deployments) == {f"bt-belltower-{c}" for c in COMPONENTS}
    for component in COMPONENTS:
        env = _env(deployments[f"bt-belltower-{component}"])
        assert env["BELLTOWER_NATS_USER"]["value"] == component
        ref = env["BELLTOWER_NATS_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "belltower-nats-users", "key": component}
    (secret,) = _own(docs, "Secret").values()
    assert set(secret["data"]) == set(natsauth.ROLES)
    assert len(set(secret["data"].values())) == len(natsauth.ROLES)  # no two alike
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_a_supplied_secret_is_referenced_not_generated(render: Render) -> None:
    docs = render("minimal-external-values.yaml", sets=("natsAuth.createSecret=false",))
    assert _own(docs, "Secret") == {}
    env = _env(_own(docs, "Deployment")["bt-belltower-history"])
    assert env["BELLTOWER_NATS_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "history"


def test_an_external_nats_ca_reaches_every_service(render: Render) -> None:
    docs = render(
        "minimal-external-values.yaml",
        sets=(
            "natsTls.existingSecret=nats-ca",
            "natsTls.certKey=tls.crt",
            "natsTls.keyKey=tls.key",
        ),
    )
    for name, deployment in _own(docs, "Deployment").items():
        env = _env(deployment)
        assert env["BELLTOWER_NATS_TLS_CA"]["value"] == "/etc/belltower/nats-tls/ca.crt", name
        assert env["BELLTOWER_NATS_TLS_CERT"]["value"] == "/etc/belltower/nats-tls/tls.crt", name
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes["nats-tls"]["secret"]["secretName"] == "nats-ca", name


def test_the_bundled_nats_refuses_anonymous_clients_and_admits_each_service(
    bundled: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chart's auth.conf, run by a real nats-server with the passwords in its environment."""
    auth = _own(bundled, "ConfigMap")["belltower-nats-auth"]["data"]["auth.conf"]
    identities = natsauth.generate_identities()
    assert auth.strip() == natsauth.server_config(identities, password_env=True).strip()
    config = tmp_path / "auth.conf"
    config.write_text(auth)
    for role, identity in identities.items():  # the server inherits them, as in its pod
        monkeypatch.setenv(natsauth.password_variable(role), identity.password)
    with NatsServer(store_dir=tmp_path / "nats", args=("-c", str(config))) as server:

        async def probe() -> None:
            with pytest.raises(NatsError, match=r"(?i)authorization"):
                await nats.connect(server.url, allow_reconnect=False, max_reconnect_attempts=0)
            for identity in identities.values():
                nc = await nats.connect(
                    server.url,
                    user=identity.user,
                    password=identity.password,
                    allow_reconnect=False,
                )
                await nc.close()

        asyncio.run(probe())


def test_a_network_policy_per_component(bundled: list[dict[str, Any]], render: Render) -> None:
    policies = _own(bundled, "NetworkPolicy")
    assert set(policies) == {f"bt-belltower-{c}" for c in (*COMPONENTS, "nats", "postgres")}
    console = policies["bt-belltower-console"]["spec"]
    assert console["policyTypes"] == ["Ingress"]
    (rule,) = console["ingress"]
    assert rule["ports"] == [{"port": 8080, "protocol": "TCP"}]
    assert {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}
    } in rule["from"]
    nats_rules = policies["bt-belltower-nats"]["spec"]["ingress"]
    (clients,) = [r for r in nats_rules if r["ports"][0]["port"] == 4222]
    assert clients["from"] == [
        {
            "podSelector": {
                "matchLabels": {
                    "app.kubernetes.io/name": "belltower",
                    "app.kubernetes.io/instance": "bt",
                }
            }
        }
    ]
    postgres = policies["bt-belltower-postgres"]["spec"]
    (sql,) = [r for r in postgres["ingress"] if r["ports"][0]["port"] == 5432]
    components = {
        p["podSelector"]["matchLabels"].get("app.kubernetes.io/component") for p in sql["from"]
    }
    assert components == {*COMPONENTS, None}  # None: the PostgreSQL instances themselves
    opened = render(
        "bundled-values.yaml",
        sets=("networkPolicy.integratorNamespaces={district-lms}",),
        api_versions=("postgresql.cnpg.io/v1",),
    )
    rules = _own(opened, "NetworkPolicy")["bt-belltower-nats"]["spec"]["ingress"]
    (clients,) = [r for r in rules if r["ports"][0]["port"] == 4222]
    assert {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "district-lms"}}
    } in clients["from"]
    assert (
        _own(
            render("minimal-external-values.yaml", sets=("networkPolicy.enabled=false",)),
            "NetworkPolicy",
        )
        == {}
    )


def test_helm_test_checks_the_console_and_that_nats_refuses_anonymous_clients(
    bundled: list[dict[str, Any]],
) -> None:
    pods = _own(bundled, "Pod")
    assert set(pods) == {"bt-belltower-test-console", "bt-belltower-test-nats-auth"}
    for pod in pods.values():
        assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
        (container,) = pod["spec"]["containers"]
        assert container["securityContext"]["runAsNonRoot"] is True
    console = pods["bt-belltower-test-console"]["spec"]["containers"][0]["command"][-1]
    assert "http://bt-belltower-console:80/readyz" in console
    probe = pods["bt-belltower-test-nats-auth"]["spec"]["containers"][0]["command"][-1]
    compile(probe, "nats-auth-test", "exec")
    assert "authorization" in probe


def test_the_session_cookie_is_secure_whenever_the_ingress_serves_tls(
    bundled: list[dict[str, Any]], minimal: list[dict[str, Any]], render: Render
) -> None:
    def secure(docs: list[dict[str, Any]]) -> str:
        env = _env(_own(docs, "Deployment")["bt-belltower-console"])
        return env["BELLTOWER_CONSOLE_SECURE_COOKIES"]["value"]

    assert secure(bundled) == "true"  # its ingress has a tls block
    assert secure(minimal) == "false"  # no ingress
    plain = render(
        "bundled-values.yaml",
        sets=("console.ingress.tls=null",),
        api_versions=("postgresql.cnpg.io/v1",),
    )
    assert secure(plain) == "false"
