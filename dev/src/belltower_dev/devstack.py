"""``make dev``: the whole of Belltower on one machine, with real servers and every service.

Starts NATS JetStream, PostgreSQL (unless ``BELLTOWER_DATABASE_URL`` names one), a mail sink and
the services as child processes, on the ports the settings default to, and writes the CLI's
profile (``.dev/cli-profile.toml``: the console's URL and an API token for its admin, see
``cliprofile``), so the ``belltower`` CLI in another shell in this folder needs no configuration. Data lives in ``.dev/`` and survives restarts;
``make dev-reset`` wipes it. Nothing is restarted automatically: a service that exits is
reported, and Ctrl-C stops everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import secrets
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from belltower import natsauth, sis, streams
from belltower.errors import BelltowerError, ConfigurationError
from belltower.health import DEFAULT_PORTS as HEALTH_PORTS
from belltower.settings import DEV_NATS_PORT, DEV_POSTGRES_PORT, DEV_SMTP_PORT, Settings

from . import cliprofile, demo
from .localservers import (
    LOCALHOST,
    MailSink,
    NatsServer,
    PostgresServer,
    bound_to_parent,
    port_in_use,
)
from .standins import fleet

DEV_NATS_MONITOR_PORT = 18222
DATABASE = "belltower"
DATABASE_OWNER = "belltower"
SERVICES = ("scheduler", "history", "notifier-worker", "integration-worker", "console")
DEV_CONSOLE_PORT = 8080
DEV_ADMIN_USER = "admin"
CHILD_STOP_TIMEOUT_S = 10.0

_COLOURS = ("\033[36m", "\033[35m", "\033[33m", "\033[32m", "\033[34m")
_RESET = "\033[0m"
_BOLD = "\033[1m"


@dataclass
class Service:
    """One Belltower service running as a child process of the dev stack."""

    name: str
    colour: str
    process: asyncio.subprocess.Process | None = None
    output: asyncio.Task[None] | None = None
    exited: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def script(self) -> str:
        return f"belltower-{self.name}"


@dataclass
class DevPaths:
    """Where ``make dev`` keeps its state, under the folder it is started from."""

    root: Path

    @property
    def nats(self) -> Path:
        return self.root / "nats"

    @property
    def postgres(self) -> Path:
        return self.root / "postgres"

    @property
    def mail(self) -> Path:
        return self.root / "mail"

    @property
    def batch(self) -> Path:
        return self.root / "batch"

    @property
    def lock(self) -> Path:
        return self.root / "devstack.lock"

    @property
    def admin_password(self) -> Path:
        return self.root / "console-admin-password"


class Terminal:
    """Writes the stack's own messages and the services' prefixed output lines."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.colour = stream.isatty() and "NO_COLOR" not in os.environ
        self.width = max(len(name) for name in SERVICES)

    def paint(self, text: str, style: str) -> str:
        return f"{style}{text}{_RESET}" if self.colour else text

    def say(self, text: str) -> None:
        print(self.paint("devstack", _BOLD) + " | " + text, file=self.stream, flush=True)

    def service_line(self, service: Service, line: str) -> None:
        prefix = self.paint(service.name.ljust(self.width), service.colour)
        print(f"{prefix} | {line}", file=self.stream, flush=True)


@contextlib.contextmanager
def single_instance(paths: DevPaths) -> Iterator[None]:
    """Refuse to start twice on the same ``.dev`` folder; the kernel drops the lock if we die."""
    paths.root.mkdir(parents=True, exist_ok=True)
    with paths.lock.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise ConfigurationError(
                f"another dev stack (pid {holder}) is already running on {paths.root}: "
                "use it, or stop it with Ctrl-C in its terminal first."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()


def check_ports(ports: dict[str, int]) -> None:
    """Fail before starting anything when a previous stack or another program holds a port."""
    taken = [f"{what} port {port}" for what, port in ports.items() if port_in_use(port, LOCALHOST)]
    if taken:
        first = next(port for port in ports.values() if port_in_use(port, LOCALHOST))
        raise ConfigurationError(
            f"{', '.join(taken)} on {LOCALHOST} already in use: a previous `make dev` is probably "
            "still running (stop it with Ctrl-C in its terminal), or another program uses them "
            f"(see `ss -ltnp 'sport = :{first}'`)."
        )


def service_binary(script: str) -> Path:
    path = Path(sys.executable).parent / script
    if not path.exists():
        raise ConfigurationError(
            f"{script} is not installed next to {sys.executable}: run `uv sync --all-packages` "
            "(make dev does) so every workspace member's console script is installed."
        )
    return path


def console_admin(paths: DevPaths) -> tuple[str, str]:
    """The console's first admin: from the environment, else ``admin`` with a password kept in .dev/.

    The console creates this user only while it has no user at all, so the password printed is
    the one that works until someone changes it in the console.
    """
    user = os.environ.get("BELLTOWER_CONSOLE_ADMIN_USER", DEV_ADMIN_USER)
    if password := os.environ.get("BELLTOWER_CONSOLE_ADMIN_PASSWORD"):
        return user, password
    if paths.admin_password.exists():
        return user, paths.admin_password.read_text().strip()
    password = secrets.token_urlsafe(12)
    paths.admin_password.write_text(password + "\n")
    paths.admin_password.chmod(0o600)
    return user, password


def service_environment(
    nats: NatsServer,
    database_url: str,
    mail: MailSink,
    batch: Path,
    admin: tuple[str, str] = (DEV_ADMIN_USER, ""),
) -> dict[str, str]:
    env = dict(os.environ)
    env |= {
        "BELLTOWER_CONSOLE_ADMIN_USER": admin[0],
        "BELLTOWER_CONSOLE_ADMIN_PASSWORD": admin[1],
        "BELLTOWER_NATS_URL": nats.url,
        "BELLTOWER_DATABASE_URL": database_url,
        "BELLTOWER_SMTP_HOST": mail.host,
        "BELLTOWER_SMTP_PORT": str(mail.port),
        "BELLTOWER_BATCH_FOLDER": str(batch),
        "PYTHONUNBUFFERED": "1",
    }
    if "BELLTOWER_LOG_JSON" not in os.environ:
        env["BELLTOWER_LOG_JSON"] = "false" if sys.stdout.isatty() else "true"
    return env


async def relay_output(service: Service, console: Terminal) -> None:
    assert service.process is not None and service.process.stdout is not None
    async for raw in service.process.stdout:
        console.service_line(service, raw.decode(errors="replace").rstrip("\n"))


def _health_port(name: str) -> dict[str, str]:
    port = HEALTH_PORTS.get(name)
    return {} if port is None else {"BELLTOWER_HEALTH_PORT": str(port)}


CONSOLE_ONLY = ("BELLTOWER_CONSOLE_ADMIN_USER", "BELLTOWER_CONSOLE_ADMIN_PASSWORD")
"""The console's first-admin credentials: no other service needs them, so none is given them."""


def environment_for(service_name: str, env: dict[str, str]) -> dict[str, str]:
    """``env`` less the secrets ``service_name`` has no use for."""
    if service_name == "console":
        return env
    return {k: v for k, v in env.items() if k not in CONSOLE_ONLY}


async def start_service(service: Service, env: dict[str, str], console: Terminal) -> None:
    service.process = await asyncio.create_subprocess_exec(
        *bound_to_parent([service_binary(service.script)]),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        # Each its own health port, whatever BELLTOWER_HEALTH_PORT the shell has; the console
        # serves its probes and metrics on its own port.
        env=environment_for(service.name, env) | _health_port(service.name),
        start_new_session=True,
    )
    service.output = asyncio.create_task(relay_output(service, console))


async def watch_service(service: Service, console: Terminal, stopping: asyncio.Event) -> None:
    """Report a service that exits on its own; the rest of the stack keeps running."""
    assert service.process is not None
    code = await service.process.wait()
    if service.output is not None:
        await service.output
    service.exited.set()
    if not stopping.is_set():
        how = (
            f"was killed by {signal.Signals(-code).name}"
            if code < 0
            else f"exited with code {code}"
        )
        console.say(
            f"{service.script} {how}; it is not restarted. The other services keep running; "
            "press Ctrl-C and run `make dev` again once it is fixed."
        )


def signal_group(process: asyncio.subprocess.Process, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


async def stop_services(services: list[Service], console: Terminal, hurry: asyncio.Event) -> None:
    """SIGTERM every running service, SIGKILL those still running after the timeout."""
    running = [s for s in services if s.process is not None and s.process.returncode is None]
    if not running:
        return
    console.say(f"stopping {', '.join(s.name for s in running)} ...")
    for service in running:
        assert service.process is not None
        signal_group(service.process, signal.SIGTERM)
    all_exited = asyncio.ensure_future(asyncio.gather(*(s.exited.wait() for s in running)))
    hurried = asyncio.ensure_future(hurry.wait())
    either: list[asyncio.Future[Any]] = [all_exited, hurried]
    await asyncio.wait(either, timeout=CHILD_STOP_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
    hurried.cancel()
    for service in running:
        assert service.process is not None
        if service.process.returncode is None:
            console.say(f"{service.script} did not stop in time; killing it")
            signal_group(service.process, signal.SIGKILL)
    await all_exited


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostport}"))


def console_url() -> str:
    return f"http://{LOCALHOST}:{os.environ.get('BELLTOWER_CONSOLE_PORT', DEV_CONSOLE_PORT)}"


async def write_cli_profile(paths: DevPaths, admin: tuple[str, str], console: Terminal) -> None:
    """The CLI's profile with a token for the admin, made once; a failure is said, not fatal."""
    try:
        path, made = await cliprofile.ensure_profile(paths.root, console_url(), admin)
    except Exception as exc:  # the stack is still useful without the CLI's profile
        console.say(f"could not write the CLI's profile: {exc}")
        return
    if made:
        console.say(f"made an API token for {admin[0]} for the CLI; profile in {path}")


def banner(
    console: Terminal,
    nats: NatsServer,
    database_url: str,
    postgres: PostgresServer | None,
    mail: MailSink,
    paths: DevPaths,
    admin: tuple[str, str] = (DEV_ADMIN_USER, ""),
    standins: list[fleet.StandIn] | None = None,
) -> None:
    database = _without_password(database_url)
    console_url_ = console_url()
    if postgres is None:
        database += "   (from BELLTOWER_DATABASE_URL)"
    lines = [
        "Belltower dev stack is up. Ctrl-C stops it; data in .dev/ is kept (make dev-reset wipes it).",
        "",
        f"  Console     {console_url_}/   log in as {admin[0]} / {admin[1]}",
        f"  HTTP API    {console_url_}/api/v1   (OpenAPI: {console_url_}/api/v1/openapi.json)",
        f"  OneRoster   {console_url_}/ims/oneroster/rostering/v1p2/users   token: POST "
        f"{console_url_}/ims/oneroster/token",
        "              (a client: an API token named 'oneroster: My LMS', under Users & tokens)",
        f"  NATS        {nats.url}   monitoring {nats.monitor_url}",
        f"  PostgreSQL  {database}",
        f"  SMTP        {mail.host}:{mail.port}   mail is saved to {paths.mail}",
        f"  Batch       {paths.batch}",
        "  Health      /livez /readyz /metrics /asyncapi.json on",
        *(
            f"              http://{LOCALHOST}:{port}  {name}"
            for name, port in HEALTH_PORTS.items()
        ),
        f"  Logs        {nats.log_path}"
        + (f"\n              {postgres.log_path}" if postgres else ""),
        "",
        f"  CLI, from another shell in this folder (its profile: {paths.root / cliprofile.PROFILE}):",
        "      .venv/bin/belltower job-types",
        "      uv run belltower --help",
        *standin_lines(standins or []),
    ]
    rule = "-" * 78
    print("\n".join([rule, *lines, rule]), file=console.stream, flush=True)


def standin_lines(standins: list[fleet.StandIn]) -> list[str]:
    """The stand-ins' addresses and, for each, a job to create and run against it."""
    if not standins:
        return []
    lines = [
        "",
        "  Stand-ins (jobs may reach 127.0.0.1 over http in make dev only; secrets are set):",
    ]
    lines += [f"      {s.name:<20} {s.url}" for s in standins]
    lines += ["", "  A roster sync against one, then its run (see `belltower runs list`):"]
    for s in standins:
        lines.append(
            f"      .venv/bin/belltower jobs create --type {s.job_type} {example_arguments(s)}"
        )
    lines.append("      .venv/bin/belltower jobs run-now JOB_ID --wait")
    return lines


def example_arguments(standin: fleet.StandIn) -> str:
    """``jobs create`` arguments for the stand-in's example job: on demand, its parameters."""
    params = " ".join(f"--param {k}={v}" for k, v in standin.params.items())
    return f'--title "{standin.name} (stand-in)" --on-demand {params}'


async def start_servers(
    nats: NatsServer,
    postgres: PostgresServer | None,
    mail: MailSink,
    paths: DevPaths,
    external_db: str | None,
    console: Terminal,
) -> str:
    """Start the servers the services need and return the database URL they are to use."""
    console.say(f"starting nats-server on {nats.url} (store {paths.nats})")
    await nats.astart()
    if postgres is None:
        assert external_db is not None
        database_url = external_db
    else:
        console.say(f"starting PostgreSQL on port {postgres.port} (data {paths.postgres})")
        await postgres.astart()
        database_url = await asyncio.to_thread(postgres.ensure_database, DATABASE, DATABASE_OWNER)
    await asyncio.to_thread(mail.start)
    paths.batch.mkdir(parents=True, exist_ok=True)
    return database_url


def dev_nats(
    paths: DevPaths,
    auth: natsauth.DevAuth,
    port: int = DEV_NATS_PORT,
    monitor_port: int = DEV_NATS_MONITOR_PORT,
) -> NatsServer:
    """The dev stack's nats-server: its users and permissions from ``auth``; clients and the
    monitoring port (which has no authentication of its own) on 127.0.0.1 only."""
    return NatsServer(
        port=port,
        store_dir=paths.nats,
        monitor_port=monitor_port,
        host=LOCALHOST,
        args=auth.server_args(),
    )


async def provision_streams(nats: NatsServer, auth: natsauth.DevAuth, console: Terminal) -> None:
    """Create or update the streams and buckets as the provisioner, as the chart's Job does:
    the services' own identities may only check them. The settings come from this environment,
    which the services inherit, so both agree on replicas and ages."""
    identity = auth.identities["provisioner"]
    settings = Settings(nats_url=nats.url, nats_user=identity.user, nats_password=identity.password)
    done = await streams.provision(settings)
    console.say(f"{streams.COMMAND} (as {identity.user}): " + ", ".join(done))


async def load_demo_school(database_url: str, console: Terminal) -> None:
    """Give the notifiers a school to work on: the demo SIS, loaded once into an empty ``sis`` schema."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    try:
        await sis.migrate(pool)
        people = await pool.fetchval("SELECT count(*) FROM sis.people")
        if people:
            console.say(f"SIS schema holds {people} people; demo data not loaded again")
            return
        data = await asyncio.to_thread(demo.generate)
        async with pool.acquire() as conn:
            counts = await demo.load(conn, data)
        console.say(
            f"loaded the demo school into schema sis: {counts['people']} people, "
            f"{counts['sections']} sections, {counts['enrollments']} enrollments"
        )
    finally:
        await pool.close()


async def run(paths: DevPaths, console: Terminal) -> int:
    external_db = os.environ.get("BELLTOWER_DATABASE_URL")
    ports = {
        "NATS": DEV_NATS_PORT,
        "NATS monitoring": DEV_NATS_MONITOR_PORT,
        "SMTP": DEV_SMTP_PORT,
        "console": int(os.environ.get("BELLTOWER_CONSOLE_PORT", DEV_CONSOLE_PORT)),
    }
    ports |= {f"{name} health": port for name, port in HEALTH_PORTS.items()}
    if not external_db:
        ports["PostgreSQL"] = DEV_POSTGRES_PORT
    check_ports(ports)
    for script in (f"belltower-{name}" for name in SERVICES):
        service_binary(script)

    stopping = asyncio.Event()
    hurry = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stopping.is_set():
            hurry.set()
        else:
            stopping.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)

    # NATS with the same least-privileged users as a production install: an identity per
    # service, generated once into .dev/. The CLI uses none: it goes through the console.
    auth = natsauth.prepare_dev(paths.root)
    nats = dev_nats(paths, auth)
    postgres = None if external_db else PostgresServer(DEV_POSTGRES_PORT, paths.postgres)
    mail = MailSink(LOCALHOST, DEV_SMTP_PORT, maildir=paths.mail)
    services = [Service(name, _COLOURS[i % len(_COLOURS)]) for i, name in enumerate(SERVICES)]
    watchers: list[asyncio.Task[None]] = []
    outside = contextlib.ExitStack()
    try:
        database_url = await start_servers(nats, postgres, mail, paths, external_db, console)
        await provision_streams(nats, auth, console)
        await load_demo_school(database_url, console)
        admin = console_admin(paths)
        env = service_environment(nats, database_url, mail, paths.batch.absolute(), admin)
        console.say("starting the outside services' stand-ins (LMS, rostering, Ed-Fi)")
        standins = await asyncio.to_thread(outside.enter_context, fleet.running())
        env |= fleet.environment(standins)
        for service in services:
            if stopping.is_set():
                break
            await start_service(service, env | auth.env(service.name), console)
            watchers.append(asyncio.create_task(watch_service(service, console, stopping)))
        if not stopping.is_set():
            await write_cli_profile(paths, admin, console)
            banner(console, nats, database_url, postgres, mail, paths, admin, standins)
        await stopping.wait()
    finally:
        await stop_services(services, console, hurry)
        await asyncio.gather(*watchers, return_exceptions=True)
        await asyncio.to_thread(outside.close)
        await asyncio.to_thread(mail.stop)
        if postgres is not None:
            await postgres.astop()
        await nats.astop()
        console.say("stopped; data kept in " + str(paths.root))
    return 0


def main() -> None:
    console = Terminal(sys.stdout)
    paths = DevPaths(Path(".dev").absolute())
    try:
        with single_instance(paths):
            code = asyncio.run(run(paths, console))
    except BelltowerError as exc:
        console.say(console.paint("error: ", _BOLD) + exc.message)
        code = 1
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
