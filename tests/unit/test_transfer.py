"""Export/import documents: the format the console, the API and the CLI share."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from belltower import transfer
from belltower.api import Job
from belltower.errors import InvalidInput
from belltower.schedule import Daily, Schedule


def job(title: str, **extra: object) -> Job:
    now = datetime(2026, 9, 1, 7, 30, tzinfo=UTC)
    fields = dict(
        id=f"00000000-0000-0000-0000-00000000000{len(title) % 10}",
        title=title,
        type="system.canary",
        pool="notifier",
        params={"message": "hi"},
        schedule=Schedule(
            rule=Daily(times=["07:30"], weekdays=["mon"]), tz="Europe/London", start=now
        ),
        schedule_text="daily",
        priority=500,
        paused=False,
        next_run_at=now,
        keep_history_days=None,
        timeout_s=None,
        type_installed=True,
        created_at=now,
        updated_at=now,
    )
    fields.update(extra)
    return Job(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", transfer.FORMATS)
def test_dump_then_load_gives_the_documents_back(fmt: str) -> None:
    docs = transfer.documents_of([job("b second"), job("A first")])
    assert [d["title"] for d in docs] == ["A first", "b second"]
    assert set(docs[0]) == {
        "id",
        "title",
        "type",
        "schedule",
        "priority",
        "params",
        "paused",
        "keep_history_days",
        "timeout_s",
        "result_emails",
        "result_email_on",
        "catch_up",
        "catch_up_window_s",
        "catch_up_max",
        "overlap",
        "retries",
        "retry_backoff",
        "max_deliveries",
        "after",
        "max_runs",
        "alert_after_failures",
        "pause_after_failures",
        "concurrency_key",
        "concurrency_limit",
    }
    assert transfer.load(transfer.dump(docs, fmt)) == docs  # type: ignore[arg-type]


def test_load_accepts_one_document_a_list_or_a_jobs_key() -> None:
    assert transfer.load("title: x\ntype: t\n") == [{"title": "x", "type": "t"}]
    assert transfer.load('{"jobs": [{"title": "x"}]}') == [{"title": "x"}]
    assert transfer.load("start: 2026-09-01T07:30:00+00:00\n") == [
        {"start": "2026-09-01T07:30:00+00:00"}
    ]


@pytest.mark.parametrize("text", ["{not json", "a: [b", "[1, 2"])
def test_unreadable_files_are_refused_naming_the_file(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        transfer.load(text)
    assert caught.value.field == "file"
