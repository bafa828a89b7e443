"""``make dev`` hands each service only what it needs: the console's first-admin password never
reaches a worker, where a job could read its environment."""

from __future__ import annotations

from belltower_dev.devstack import SERVICES, environment_for


def test_only_the_console_gets_the_admin_bootstrap_credentials() -> None:
    env = {
        "BELLTOWER_CONSOLE_ADMIN_USER": "admin",
        "BELLTOWER_CONSOLE_ADMIN_PASSWORD": "correct horse battery staple",
        "BELLTOWER_NATS_URL": "nats://127.0.0.1:14222",
    }
    assert environment_for("console", env) == env
    for service in SERVICES:
        if service == "console":
            continue
        given = environment_for(service, env)
        assert given == {"BELLTOWER_NATS_URL": "nats://127.0.0.1:14222"}, service
