"""History's run rows: the attrgetter fast path gives, field for field, what the events hold.

The rows go to COPY by position (``_RUN_FIELDS``), so a started event's row must carry its own
values in the leading columns and NULL in every finished-only one, and a finished event's row
every field; a column out of place would store one field's value in another's column.
"""

from datetime import UTC, datetime, timedelta

from belltower.events import RunFinishedData, RunStartedData
from belltower_history.store import _RUN_FIELDS, _run_row

_AT = datetime(2031, 9, 2, 7, 30, tzinfo=UTC)
_COMMON = {
    "run_id": "5b0a3c43-6c1e-5d6e-9d2b-4b9a6a2b7f10",
    "occurrence_id": "0f1e2d3c-4b5a-5968-8776-a5b4c3d2e1f0",
    "job_id": "11111111-2222-4333-8444-555555555555",
    "job_type": "system.canary",
    "job_title": "Morning canary",
    "pool": "notifier",
    "priority": 700,
    "trigger": "manual",
    "requested_by": "registrar@example.edu",
    "scheduled_for": _AT,
    "dispatched_at": _AT + timedelta(seconds=1),
    "started_at": _AT + timedelta(seconds=2),
    "attempt": 2,
    "worker": "host:12",
    "trace_id": "0af7651916cd43dd8448eb211c80319c",
    "requested_from": "203.0.113.9",
}


def _expected(data: object) -> tuple[object, ...]:
    return tuple(getattr(data, f, None) for f in _RUN_FIELDS)


def test_a_started_run_row_holds_its_fields_and_nulls_for_the_rest() -> None:
    data = RunStartedData(**_COMMON)
    row = _run_row(data)
    assert row == _expected(data)
    assert row[_RUN_FIELDS.index("status")] is None
    assert row[_RUN_FIELDS.index("requested_from")] == "203.0.113.9"


def test_a_finished_run_row_holds_every_field_in_column_order() -> None:
    data = RunFinishedData(
        **_COMMON,
        status="failed",
        finished_at=_AT + timedelta(seconds=5),
        duration_ms=3000,
        summary="it broke",
        output_text="line 1\nline 2\n",
        output_html="<p>x</p>",
        error="boom",
    )
    row = _run_row(data)
    assert row == _expected(data)
    assert row[_RUN_FIELDS.index("error")] == "boom"
    assert len(row) == len(_RUN_FIELDS)
