"""Belltower's performance figures, measured on real servers: ``make bench``.

Starts its own nats-server (JetStream, temporary store) and PostgreSQL (private cluster on a
free port), runs the services as the deployment does, and prints one JSON object per figure on
stdout (progress goes to stderr)::

    uv run python bench/run.py                       # everything, full size (a few minutes)
    uv run python bench/run.py --scale 0.1           # a quick look
    uv run python bench/run.py --quick               # a smoke run of everything (about a minute)
    uv run python bench/run.py --only dispatch_rate --profile bench/results

Figures: ``dispatch_rate`` (with its raw ``publish_async`` baseline), ``e2e_runs_rate`` and
``e2e_runs_rate_2_workers`` (with each process's CPU seconds per 1,000 runs),
``e2e_peer_celery_rate``, ``e2e_peer_arq_rate`` and ``e2e_runs_rate_vs_peers`` (the same
workload on Celery and arq, Belltower measured in the same window, ``make bench-peers``),
``history_ingest_rate`` (runs/s), ``schedules_loaded`` (bytes per schedule at a million schedules) and
``schedules_load_s``, ``burst_drain_s`` and ``burst_out_of_priority_order`` (100,000 due at
once), ``lateness_p50_ms`` and ``lateness_p99_ms`` (1,000 due per second), ``failover_s``,
``sis_demo_load_s`` and ``notifier_mail_rate`` (with a one-connection-per-message baseline) and
``frontline_import_rate`` (with a bare ``executemany`` baseline),
``calc_daily_attendance_rate`` (class marks turned into daily attendance per second),
``jobs_page_first_ms``, ``jobs_page_deep_ms``, ``runs_page_first_ms`` and ``runs_page_deep_ms``
(p95 of the HTTP API's list pages with 100,000 jobs and 1,000,000 runs, ``GET /api/v1/me`` as the
baseline) and ``jobs_import_s`` (100,000 jobs through ``POST /api/v1/import``). Each line has
``name``, ``value``, ``unit``, ``target`` and ``met``; paired figures add ``baseline`` and
``ratio``. Exit status is 0 when every benchmark ran (``--check``: and met its target), so a
slow machine does not break ``make bench`` but CI can still gate on it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from benchlib import (
    calculations,
    dispatch,
    e2e,
    ingest,
    integrations,
    lists,
    memory,
    notifiers,
    peers,
    scheduling,
)
from benchlib.figures import Figure
from benchlib.stack import Servers, inherited_overrides, log

from belltower_dev.localservers import PostgresServer


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: the figures it yields (for ``--only``) and how to run it at a size."""

    figures: tuple[str, ...]
    units: tuple[str, ...]
    targets: tuple[float, ...]
    run: Callable[[Servers, argparse.Namespace], Awaitable[list[Figure]]]


def _size(args: argparse.Namespace, explicit: int | None, full: int, floor: int) -> int:
    return explicit if explicit is not None else max(floor, int(full * args.scale))


async def _dispatch(servers: Servers, args: argparse.Namespace) -> list[Figure]:
    n = _size(args, args.dispatch_occurrences, 100_000, 1_000)
    return [await dispatch.run(servers, n, args.profile)]


async def _e2e(servers: Servers, args: argparse.Namespace) -> list[Figure]:
    n = _size(args, args.e2e_runs, 10_000, 500)
    wanted = set(args.only or ())
    # `--only e2e_runs_rate` is the one-process figure, unless --e2e-workers names no 1.
    counts = [k for k in args.e2e_workers if not wanted or e2e.figure_name(k) in wanted]
    counts = counts or args.e2e_workers
    return [await e2e.run(servers, n, args.profile, k) for k in counts]


def _worker_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"worker counts must be 1 or more: {text!r}")
    return counts


async def _peers(servers: Servers, args: argparse.Namespace) -> list[Figure]:
    n = _size(args, args.e2e_runs, 10_000, 500)
    return await peers.run(servers, n)


async def _ingest(servers: Servers, args: argparse.Namespace) -> list[Figure]:
    runs = _size(args, args.ingest_runs, 50_000, 1_000)
    return [await ingest.run(servers, runs, args.profile)]


async def _memory(servers: Servers, args: argparse.Namespace) -> list[Figure]:
    n = _size(args, args.schedules, 1_000_000, 2_000)
    return await memory.run(servers, n)


async def _burst(servers: Servers, args: argparse.Namespace) -> list[Figure]:
    n = _size(args, args.burst_occurrences, 100_000, 1_000)
    return await scheduling.burst(servers, n)


async def _lateness(servers: Servers, args: argparse.Namespace) -> list[Figure]:
    seconds = args.lateness_seconds or max(3.0, 20.0 * min(1.0, args.scale * 5))
    return await scheduling.lateness(servers, args.lateness_rate, seconds)


async def _failover(servers: Servers, args: argparse.Namespace) -> list[Figure]:
    n = _size(args, args.failover_jobs, 100_000, 1)
    return await scheduling.failover(servers, n)


async def _integrations(servers: Servers, args: argparse.Namespace) -> list[Figure]:
    rows = _size(args, args.import_rows, 20_000, 1_000)
    return await integrations.run(servers, rows)


async def _calculations(servers: Servers, args: argparse.Namespace) -> list[Figure]:
    students = _size(args, args.students, 2_500, 250)
    return await calculations.run(servers, students)


async def _notifiers(servers: Servers, args: argparse.Namespace) -> list[Figure]:
    students = _size(args, args.students, 2_500, 250)
    return await notifiers.run(servers, students)


async def _lists(servers: Servers, args: argparse.Namespace) -> list[Figure]:
    jobs = _size(args, args.list_jobs, 100_000, 2_000)
    runs = _size(args, args.list_runs, 1_000_000, 20_000)
    imports = _size(args, args.import_jobs, 100_000, 2_000)
    return await lists.run(servers, jobs, runs, imports)


BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark(("dispatch_rate",), ("occurrences/s",), (dispatch.TARGET_RATE,), _dispatch),
    Benchmark(
        ("e2e_runs_rate", "e2e_runs_rate_2_workers"),
        ("runs/s", "runs/s"),
        (e2e.TARGET_RATE, e2e.TARGET_RATE),
        _e2e,
    ),
    Benchmark(
        ("e2e_peer_celery_rate", "e2e_peer_arq_rate", "e2e_runs_rate_vs_peers"),
        ("runs/s", "runs/s", "runs/s"),
        (0.0, 0.0, e2e.TARGET_RATE),
        _peers,
    ),
    Benchmark(("history_ingest_rate",), ("runs/s",), (ingest.TARGET_RATE,), _ingest),
    Benchmark(
        ("schedules_loaded", "schedules_load_s"),
        ("bytes", "s"),
        (memory.TARGET_BYTES, memory.TARGET_LOAD_S),
        _memory,
    ),
    Benchmark(
        ("burst_drain_s", "burst_out_of_priority_order"),
        ("s", "share"),
        (scheduling.TARGET_BURST_S, scheduling.TARGET_OUT_OF_ORDER),
        _burst,
    ),
    Benchmark(
        ("lateness_p50_ms", "lateness_p99_ms"),
        ("ms", "ms"),
        (scheduling.TARGET_P50_MS, scheduling.TARGET_P99_MS),
        _lateness,
    ),
    Benchmark(("failover_s",), ("s",), (scheduling.TARGET_FAILOVER_S,), _failover),
    Benchmark(
        ("sis_demo_load_s", "notifier_mail_rate"),
        ("s", "messages/s"),
        (notifiers.TARGET_LOAD_S, notifiers.TARGET_RATE),
        _notifiers,
    ),
    Benchmark(
        ("frontline_import_rate",), ("records/s",), (integrations.TARGET_RATE,), _integrations
    ),
    Benchmark(
        ("calc_daily_attendance_rate",), ("marks/s",), (calculations.TARGET_RATE,), _calculations
    ),
    Benchmark(
        (
            "jobs_import_s",
            "jobs_page_first_ms",
            "jobs_page_deep_ms",
            "runs_page_first_ms",
            "runs_page_deep_ms",
        ),
        ("s", *("ms (p95)",) * 4),
        (lists.TARGET_IMPORT_S, *(lists.TARGET_MS,) * 4),
        _lists,
    ),
)
ALL_FIGURES = tuple(name for b in BENCHMARKS for name in b.figures)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=ALL_FIGURES,
        metavar="NAME",
        help=f"run only the benchmark producing NAME (repeatable); one of {', '.join(ALL_FIGURES)}",
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply every default size (0.1 for a quick run)"
    )
    parser.add_argument(
        "--dispatch-occurrences",
        type=int,
        help="occurrences due at once for dispatch_rate (default 100,000)",
    )
    parser.add_argument(
        "--e2e-runs", type=int, help="canary runs due at once for e2e_runs_rate (default 10,000)"
    )
    parser.add_argument(
        "--e2e-workers",
        type=_worker_counts,
        default=[1, 2],
        help="notifier-worker process counts for e2e_runs_rate, comma-separated, one figure "
        "each, to see horizontal scaling (default 1,2)",
    )
    parser.add_argument(
        "--ingest-runs",
        type=int,
        help="runs (2 events each) for history_ingest_rate (default 50,000)",
    )
    parser.add_argument(
        "--schedules", type=int, help="jobs loaded for schedules_loaded (default 1,000,000)"
    )
    parser.add_argument(
        "--burst-occurrences",
        type=int,
        help="occurrences due at the same instant for burst_drain_s (default 100,000)",
    )
    parser.add_argument(
        "--lateness-rate",
        type=int,
        default=1_000,
        help="occurrences due per second for lateness_p50_ms/p99_ms (default 1,000)",
    )
    parser.add_argument(
        "--lateness-seconds", type=float, help="how long the steady rate is kept (default 20)"
    )
    parser.add_argument(
        "--failover-jobs",
        type=int,
        help="jobs the standby loads when it takes over, for failover_s (default 100,000)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run of every benchmark at a small size (same as --scale 0.01)",
    )
    parser.add_argument(
        "--students",
        type=int,
        help="students in the demo school for notifier_mail_rate (default 2,500)",
    )
    parser.add_argument(
        "--import-rows",
        type=int,
        help="rows in the Frontline leave file for frontline_import_rate (default 20,000)",
    )
    parser.add_argument(
        "--list-jobs", type=int, help="jobs in the database for jobs_page_* (default 100,000)"
    )
    parser.add_argument(
        "--list-runs", type=int, help="runs in the database for runs_page_* (default 1,000,000)"
    )
    parser.add_argument(
        "--import-jobs", type=int, help="jobs imported for jobs_import_s (default 100,000)"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="save py-spy profiles of the measured processes here (cProfile of tick() without py-spy)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work folder with the services' logs"
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when a figure misses its target"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.scale = 0.01
    if args.scale <= 0:
        parser.error("--scale must be positive")
    return args


async def main(args: argparse.Namespace) -> int:
    selected = [b for b in BENCHMARKS if not args.only or set(b.figures) & set(args.only)]
    work_dir = Path(tempfile.mkdtemp(prefix="belltower-bench-"))
    failures = 0
    missed = 0
    started = time.monotonic()
    try:
        log(f"starting PostgreSQL (work folder {work_dir})")
        with PostgresServer() as pg:
            servers = Servers(pg=pg, work_dir=work_dir)
            for bench in selected:
                load_before = os.getloadavg()[0]
                try:
                    figures = await bench.run(servers, args)
                except Exception as exc:
                    failures += 1
                    log(f"{'/'.join(bench.figures)} failed:\n{traceback.format_exc()}")
                    figures = [
                        Figure(
                            name, None, unit, target, "higher", error=f"{type(exc).__name__}: {exc}"
                        )
                        for name, unit, target in zip(
                            bench.figures, bench.units, bench.targets, strict=True
                        )
                    ]
                for figure in figures:
                    # Other work on the machine skews every figure: say how busy it was
                    # (the 1-minute average also still counts the previous benchmark).
                    figure.extra["host_load_1m_before"] = round(load_before, 2)
                    if overrides := inherited_overrides():
                        figure.extra["env_overrides"] = overrides
                    missed += not figure.met
                    print(figure.to_json(), flush=True)
    finally:
        if args.keep:
            log(f"work folder kept: {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
    log(f"done in {time.monotonic() - started:.0f} s")
    if failures:
        return 1
    return 1 if args.check and missed else 0


def _terminate(signum: int, _: object) -> None:
    """Turn SIGTERM into an exception so every ``finally`` stops what it started."""
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    try:
        sys.exit(asyncio.run(main(parse_args())))
    except KeyboardInterrupt:
        log("interrupted; servers and services stopped")
        sys.exit(130)
