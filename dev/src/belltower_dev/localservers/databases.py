"""Databases on a PostgreSQL server: create (from a template), drop, point a URL at one."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

_T = TypeVar("_T")


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def database_url(server_url: str, dbname: str, user: str | None = None) -> str:
    """``server_url`` pointed at another database (and optionally another user, no password)."""
    parts = urlsplit(server_url)
    netloc = parts.netloc
    if user is not None:
        netloc = f"{quote(user, safe='')}@{netloc.rpartition('@')[2]}"
    return urlunsplit((parts.scheme, netloc, "/" + quote(dbname, safe=""), parts.query, ""))


def _run_blocking(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine from sync code, even when the calling thread is running an event loop."""
    with ThreadPoolExecutor(1, thread_name_prefix="belltower-sql") as pool:
        return pool.submit(asyncio.run, coro).result()


async def _execute(server_url: str, *statements: str) -> None:
    conn = await asyncpg.connect(server_url, timeout=10)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def _ensure_database(server_url: str, name: str, owner: str | None) -> None:
    conn = await asyncpg.connect(server_url, timeout=10)
    try:
        if owner is not None and not await conn.fetchval(
            "SELECT 1 FROM pg_roles WHERE rolname = $1", owner
        ):
            await conn.execute(f"CREATE ROLE {_quote_ident(owner)} LOGIN")
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            owner_clause = f" OWNER {_quote_ident(owner)}" if owner else ""
            await conn.execute(f"CREATE DATABASE {_quote_ident(name)}{owner_clause}")
    finally:
        await conn.close()


def create_database(
    server_url: str, name: str, *, owner: str | None = None, template: str | None = None
) -> str:
    """Create database ``name`` (cloned from ``template`` if given) and return its URL.

    Cloning a template is how each test gets a fresh, migrated database in milliseconds; the
    template must have no open connections while it is cloned.
    """
    clauses = ""
    if owner is not None:
        clauses += f" OWNER {_quote_ident(owner)}"
    if template is not None:
        clauses += f" TEMPLATE {_quote_ident(template)}"
    _run_blocking(_execute(server_url, f"CREATE DATABASE {_quote_ident(name)}{clauses}"))
    return database_url(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    """Drop database ``name`` if it exists, disconnecting whoever still uses it."""
    _run_blocking(
        _execute(server_url, f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")
    )


def ensure_database(server_url: str, name: str, owner: str | None = None) -> None:
    """Create role ``owner`` (LOGIN) and database ``name`` owned by it unless they exist."""
    _run_blocking(_ensure_database(server_url, name, owner))
