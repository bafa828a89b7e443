"""End-to-end fixtures: the services as real processes, and the CLI run as a user runs it: through
the console's HTTP API with an API token of the console's admin, as every change is audited."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from belltower_dev.localservers import MailSink, bound_to_parent, free_port
from tests.helpers.console import ADMIN, cli_env, console_env, issue_token, wait_console

BIN = Path(sys.executable).parent
SERVICES = ("scheduler", "history", "notifier-worker", "integration-worker")


@dataclass
class Cli:
    """Runs ``belltower`` in a subprocess with the stack's environment; once the stack's console
    is up (:meth:`Stack.open_door`) that holds its URL and a token for its admin."""

    env: dict[str, str]

    def run(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(BIN / "belltower"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"belltower {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json").stdout)


@dataclass
class Stack:
    """The services of one test, each a child process with its log in ``logs``."""

    env: dict[str, str]
    logs: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    health_ports: dict[str, int] = field(default_factory=dict)
    """Each service's health and metrics port: a free one, so stacks never clash with `make dev`."""
    api_url: str | None = None
    """The console's URL once it is started (:meth:`open_door`)."""

    def start(self, name: str, **extra_env: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        port = self.health_ports.setdefault(name, free_port())
        proc = subprocess.Popen(
            bound_to_parent([BIN / f"belltower-{name}"]),
            env={**self.env, "BELLTOWER_HEALTH_PORT": str(port), **extra_env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs[name] = proc
        return proc

    def kill(self, name: str) -> None:
        """SIGKILL, as a crash or an OOM kill would: no clean-up runs."""
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop(self, name: str) -> None:
        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def stop_all(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop(name)

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def open_door(self, cli: Cli, admin: tuple[str, str] = ADMIN, **extra_env: str) -> str:
        """Start the console (the CLI's door) unless it runs, with ``extra_env`` (e.g. its NATS
        identity), and give ``cli`` its URL and a token for ``admin``; returns the URL."""
        if "console" not in self.procs:
            port = free_port()
            self.health_ports["console"] = port  # it serves its probes and metrics on its own port
            self.start("console", **console_env(port, admin), **extra_env)
            self.api_url = f"http://127.0.0.1:{port}"
        assert self.api_url is not None
        proc = self.procs["console"]
        wait_console(self.api_url, lambda: proc.poll() is None, lambda: self.log("console"))
        cli.env.update(cli_env(self.api_url, issue_token(self.api_url, admin)))
        return self.api_url

    def wait_ready(self, cli: Cli, job_types: int = 3, timeout: float = 120) -> None:
        """Until the scheduler answers through the console and every worker pool has registered
        its job types (the console is started first when it is not running)."""
        if "BELLTOWER_API_TOKEN" not in cli.env:
            self.open_door(cli)
        deadline = time.monotonic() + timeout
        while True:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise AssertionError(
                        f"{name} exited with {proc.returncode}:\n{self.log(name)[-3000:]}"
                    )
            try:
                result = cli.run("job-types", "--json", check=False, timeout=20)
            except subprocess.TimeoutExpired as exc:
                # A loaded machine: the CLI's own start can take that long; ask again.
                result = subprocess.CompletedProcess(exc.cmd, -1, "", f"timed out: {exc}")
            if result.returncode == 0:
                types = json.loads(result.stdout)
                pools = {t["pool"] for t in types}
                started = {n.removesuffix("-worker") for n in self.procs if n.endswith("-worker")}
                # One pool alone may advertise many types: wait for every started worker's pool.
                if len(types) >= job_types and started <= pools:
                    return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"stack not ready: {result.stderr}\n"
                    + "\n".join(self.log(n)[-2000:] for n in self.procs)
                )
            time.sleep(0.3)


@pytest.fixture
def stack_env(fresh_nats, database_url: str, tmp_batch_folder: Path, mail_sink) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BELLTOWER_")}
    env.update(
        BELLTOWER_NATS_URL=fresh_nats.url,
        BELLTOWER_DATABASE_URL=database_url,
        BELLTOWER_BATCH_FOLDER=str(tmp_batch_folder),
        BELLTOWER_SMTP_HOST=mail_sink.host,
        BELLTOWER_SMTP_PORT=str(mail_sink.port),
        BELLTOWER_ACK_WAIT_S="3",
        # The stand-ins for outside services listen on this machine, over plain http.
        BELLTOWER_OUTBOUND_ALLOW_HTTP="true",
        BELLTOWER_OUTBOUND_ALLOW_HOSTS='["127.0.0.1"]',
        BELLTOWER_LOG_JSON="true",
        BELLTOWER_LOG_LEVEL="INFO",
        OTEL_TRACES_EXPORTER="none",  # a developer's collector settings must not leak in
    )
    return env


@pytest.fixture
def cli(stack_env: dict[str, str]) -> Cli:
    return Cli(stack_env)


@pytest.fixture
def stack(stack_env: dict[str, str], tmp_path: Path, cli: Cli) -> Iterator[Stack]:
    logs = tmp_path / "logs"
    logs.mkdir()
    s = Stack(stack_env, logs)
    try:
        for name in SERVICES:
            s.start(name)
        s.wait_ready(cli)
        yield s
    finally:
        s.stop_all()


@dataclass
class ConsoleStack:
    """The services plus ``belltower-console`` as processes, shared by the console's tests."""

    stack: Stack
    cli: Cli
    url: str
    admin: tuple[str, str]
    database_url: str
    mail: MailSink
    """The SMTP server the stack sends to (result e-mails, notifiers)."""


@pytest.fixture(scope="session")
def console_stack(
    pg_server, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleStack]:
    """One private NATS, one database, the four services and the console, started once.

    Session-scoped because the console's API and browser tests are many short requests against
    one running system; each test makes its own jobs and users, so they do not depend on each
    other, and starting the stack once saves a start per module.
    """
    from belltower_dev.localservers import (
        NatsServer,
        create_database,
        drop_database,
        free_port,
    )

    tmp = tmp_path_factory.mktemp("console")
    admin_url = pg_server.url()
    name = f"belltower_console_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
    create_database(admin_url, name, template=template_database)
    port = free_port()
    admin = ADMIN
    (tmp / "logs").mkdir()
    (tmp / "batch").mkdir()
    with NatsServer() as nats, MailSink(maildir=tmp / "mail") as mail:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BELLTOWER_")}
        env.update(
            BELLTOWER_NATS_URL=nats.url,
            BELLTOWER_DATABASE_URL=pg_server.url(name),
            BELLTOWER_BATCH_FOLDER=str(tmp / "batch"),
            BELLTOWER_SMTP_HOST=mail.host,
            BELLTOWER_SMTP_PORT=str(mail.port),
            BELLTOWER_ACK_WAIT_S="3",
            BELLTOWER_LOG_JSON="true",
            # Imports have their own, larger body limit; 8 MiB keeps the test of it small.
            BELLTOWER_CONSOLE_MAX_IMPORT_BYTES=str(8 * 1024 * 1024),
            **console_env(port, admin),
        )
        cli = Cli(dict(env))
        stack = Stack(env, tmp / "logs", health_ports={"console": port})
        try:
            for service in (*SERVICES, "console"):
                stack.start(service)
            url = f"http://127.0.0.1:{port}"
            stack.api_url = url
            stack.open_door(cli, admin)
            stack.wait_ready(cli)
            yield ConsoleStack(stack, cli, url, admin, pg_server.url(name), mail)
        finally:
            stack.stop_all()
            drop_database(admin_url, name)
