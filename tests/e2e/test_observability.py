"""What an SRE scrapes: each service process's /readyz and /metrics after real runs."""

from __future__ import annotations

import re
import time

import pytest

from tests.helpers.metrics import fetch, scrape, value

pytestmark = pytest.mark.slow


def test_every_service_is_ready_and_counts_what_it_did(stack, cli) -> None:
    ports = stack.health_ports
    for name, port in ports.items():
        status, body = fetch(port, "/readyz")
        assert status == 200, f"{name}: {body}"
        assert fetch(port, "/livez")[0] == 200

    before = scrape(ports["notifier-worker"])
    assert value(before, "belltower_runs_total", pool="notifier", job_type="system.canary", status="succeeded") is None  # fmt: skip

    job = cli.json("jobs", "create", "--type", "system.canary", "--title", "Canary", "--every", "1h", "--paused")  # fmt: skip
    bad = cli.json("jobs", "create", "--type", "system.canary", "--title", "Broken", "--every", "1h", "--paused", "--param", "fail=true")  # fmt: skip
    waited = cli.run("jobs", "run-now", job["id"], "--wait").stdout
    assert re.search(r"trace id:\s+[0-9a-f]{32}\b", waited), waited
    for _ in range(3):
        cli.run("jobs", "run-now", bad["id"], "--wait", check=False)

    scheduler = scrape(ports["scheduler"])
    assert value(scheduler, "belltower_occurrences_dispatched_total", pool="notifier", job_type="system.canary") == 4  # fmt: skip
    assert value(scheduler, "belltower_scheduler_lag_seconds_count") == 4
    assert value(scheduler, "belltower_scheduler_jobs") == 2
    assert value(scheduler, "belltower_scheduler_leader", partition="0") == 1

    worker = scrape(ports["notifier-worker"])
    assert value(worker, "belltower_runs_total", pool="notifier", job_type="system.canary", status="succeeded") == 1  # fmt: skip
    assert value(worker, "belltower_runs_total", pool="notifier", job_type="system.canary", status="failed") == 3  # fmt: skip
    assert value(worker, "belltower_run_duration_seconds_count", pool="notifier", job_type="system.canary") == 4  # fmt: skip
    assert value(worker, "belltower_queue_wait_seconds_count", pool="notifier") == 4
    assert value(worker, "belltower_consumer_pending_messages", stream="BELLTOWER_DUE", consumer="notifier-worker") == 0  # fmt: skip
    assert value(worker, "belltower_occurrences_dispatched_total", pool="notifier", job_type="system.canary") is None, "each process serves its own series"  # fmt: skip

    deadline = time.monotonic() + 10
    while True:
        history = scrape(ports["history"])
        if value(history, "belltower_history_events_total", event="finished") == 4:
            break
        assert time.monotonic() < deadline, "history did not count the finished events"
        time.sleep(0.2)
    assert value(history, "belltower_history_events_total", event="started") == 4
    assert value(history, "belltower_jobs_failing") == 1, "the job whose last 3 runs failed"
    assert value(history, "belltower_consumer_pending_messages", stream="BELLTOWER_RUNS", consumer="history") == 0  # fmt: skip
