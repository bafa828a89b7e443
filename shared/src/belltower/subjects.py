"""Subject, stream, consumer and bucket names: the NATS side of Belltower's contracts.

Subjects run from general to specific so wildcards select by kind, pool, outcome and type:
``belltower.due.<pool>.<job type>`` for due work and
``belltower.run.<started|progress|finished>[.<status>].<job type>`` for run events and
``belltower.run.alert.<failing|recovered|overdue>.<job type>`` for the scheduler's alerts.
Job-type names are dotted (``system.canary``), so they are the subject's last tokens.
"""

from __future__ import annotations

import re
from typing import Literal

Pool = Literal["notifier", "integration"]
POOLS: tuple[Pool, ...] = ("notifier", "integration")

DUE_STREAM = "BELLTOWER_DUE"
DUE_SUBJECTS = "belltower.due.>"
RUNS_STREAM = "BELLTOWER_RUNS"
RUNS_SUBJECTS = "belltower.run.>"

CATALOG_BUCKET = "belltower_catalog"
CLAIMS_BUCKET = "belltower_claims"
LEASES_BUCKET = "belltower_leases"
"""One key per scheduler partition: which replica dispatches it, renewed with a per-message TTL."""
SCHEDULER_CHANGES = "belltower.scheduler.changed"
"""Core NATS: the id of a job whose definition a scheduler replica just changed in PostgreSQL."""
SCHEDULER_RUN_NOW = "belltower.scheduler.run-now"
"""Core NATS requests, ``.<partition>``: a run-now a replica accepted for a partition it does not
hold, handed to the partition's holder, which answers with the ledger row or the refusal."""


def scheduler_run_now(partition: int) -> str:
    return f"{SCHEDULER_RUN_NOW}.{partition}"


HISTORY_CONSUMER = "history"

JOB_TYPE_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\Z")
JOB_TYPE_FORM = "lower-case words of letters, digits and _ joined by dots, e.g. system.canary"


def worker_consumer(pool: Pool) -> str:
    return f"{pool}-worker"


def due_subject(pool: str, job_type: str) -> str:
    return f"belltower.due.{pool}.{job_type}"


def due_filter(pool: str) -> str:
    return f"belltower.due.{pool}.>"


def run_started_subject(job_type: str) -> str:
    return f"belltower.run.started.{job_type}"


def run_progress_subject(job_type: str) -> str:
    return f"belltower.run.progress.{job_type}"


def run_finished_subject(status: str, job_type: str) -> str:
    return f"belltower.run.finished.{status}.{job_type}"


def alert_subject(kind: Literal["failing", "recovered", "overdue"], job_type: str) -> str:
    """``belltower.run.alert.<failing|recovered|overdue>.<job type>``: the scheduler's alerts,
    on the run events stream so history (the notice mail) and integrators already receive them."""
    return f"belltower.run.alert.{kind}.{job_type}"


ALERT_SUBJECTS = "belltower.run.alert.>"


ApiService = Literal["scheduler", "history", "integration"]
"""The services that answer management operations (:mod:`belltower.operations`); the
integration worker answers the OneRoster provider's reads."""


def api_subject(service: ApiService, operation: str) -> str:
    """Request-reply subject of a management operation, e.g. ``belltower.api.scheduler.jobs.create``."""
    return f"belltower.api.{service}.{operation}"


def claim_key(occurrence_id: str) -> str:
    return f"occ.{occurrence_id}"
