"""``belltower-console``: serve the API and console, or create users and tokens from a shell."""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from typing import Annotated

import typer

from belltower.db import create_pool, migrate
from belltower.errors import BelltowerError

from .actions import Console
from .errors import FieldErrors
from .settings import ConsoleSettings
from .store import ONEROSTER_CLIENT, ROLES, Store

app = typer.Typer(
    name="belltower-console",
    help="Belltower's HTTP API and web console.",
    add_completion=False,
    pretty_exceptions_enable=False,
    invoke_without_command=True,
)


@app.callback()
def _root(ctx: typer.Context) -> None:
    """Without a command: serve on BELLTOWER_CONSOLE_HOST:BELLTOWER_CONSOLE_PORT."""
    if ctx.invoked_subcommand is None:
        serve()


@app.command()
def serve() -> None:
    """Serve the API (/api/v1) and the console (/)."""
    from .app import serve as run

    run(ConsoleSettings())


async def _offline(fn):
    settings = ConsoleSettings()
    pool = await create_pool(settings.database_url, max_size=2)
    try:
        await migrate(pool, "console", "belltower_console")
        console = Console(None, Store(pool), timedelta(hours=settings.console_session_hours))  # type: ignore[arg-type]
        return await fn(console)
    finally:
        await pool.close()


def _run(fn):
    try:
        return asyncio.run(_offline(fn))
    except FieldErrors as exc:
        for err in exc.errors:
            accepted = f" (accepted: {err.accepted})" if err.accepted else ""
            typer.echo(f"error: {err.field}: {err.message}{accepted}", err=True)
        raise typer.Exit(2) from None
    except BelltowerError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(3) from None


@app.command("create-user")
def create_user(
    username: Annotated[str, typer.Argument(help="Login name.")],
    role: Annotated[str, typer.Option(help=f"One of {', '.join(ROLES)}.")] = "viewer",
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            envvar="BELLTOWER_CONSOLE_PASSWORD",
            show_envvar=True,
            help="Prompted for when not given.",
        ),
    ] = "",
) -> None:
    """Add a local user in the console's database (BELLTOWER_DATABASE_URL); audited as 'cli'."""
    _run(lambda c: c.add_user(None, "cli", username, password, role))
    typer.echo(f"created user {username} ({role})")


@app.command("create-token")
def create_token(
    username: Annotated[str, typer.Argument(help="Whose token.")],
    name: Annotated[str, typer.Option(help="What it is for.")] = "script",
    days: Annotated[float, typer.Option(help="Expires after this many days.")] = 90,
) -> None:
    """Create an API token; the secret is printed once and stored only hashed."""
    token = _run(lambda c: c.add_token(None, "cli", username, name, days))
    typer.echo(token["token"])
    typer.echo(f"token {token['id']} for {username}, expires {token['expires_at']}", err=True)


@app.command("create-oneroster-client")
def create_oneroster_client(
    name: Annotated[str, typer.Argument(help="Who pulls the roster, e.g. 'Canvas LMS'.")],
    username: Annotated[
        str, typer.Option(help="The user the client is issued under (disabling them stops it).")
    ] = "admin",
    days: Annotated[float, typer.Option(help="Expires after this many days.")] = 365,
) -> None:
    """Issue OAuth 2 client credentials for the OneRoster provider (/ims/oneroster/...): an API
    token named 'oneroster: NAME' that only gets OneRoster access tokens. Prints the client id
    and secret once; revoke it as any token."""
    label = f"{ONEROSTER_CLIENT} {name.strip()}"
    token = _run(lambda c: c.add_token(None, "cli", username, label, days))
    typer.echo(f"client_id={token['id']}")
    typer.echo(f"client_secret={token['token']}")
    typer.echo(
        f"OneRoster client {label!r} for {username}, expires {token['expires_at']}", err=True
    )


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
