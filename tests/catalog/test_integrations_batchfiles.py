"""Batch-folder files: exports appear whole under their final name, drops are archived with a
timestamp, and the retries file carries unmatched records to the next run."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from belltower.errors import InvalidInput, JobFailed
from belltower_integration import batchfiles


def test_readers_never_see_a_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "export.csv"
    versions = [(str(i) * 200_000).encode() for i in range(1, 6)]
    batchfiles.atomic_write(target, versions[0])
    seen: set[bytes] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.add(target.read_bytes())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(10):
            for version in versions:
                batchfiles.atomic_write(target, version)
    finally:
        stop.set()
        reader.join()
    assert seen and seen <= set(versions)
    assert [p.name for p in tmp_path.iterdir()] == ["export.csv"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "names.csv"
    batchfiles.write_csv(target, ["a"], [["old"]])
    with pytest.raises(RuntimeError), batchfiles.atomic_open(target) as f:
        f.write("half a fi")
        raise RuntimeError("disk went away")
    assert target.read_bytes() == b"a\r\nold\r\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["names.csv"]


def test_csv_round_trip_with_quotes_and_a_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    n = batchfiles.write_csv(path, ["Id", "Name"], [[1, 'Chevy "The Man", Chase'], [2, None]])
    assert n == 2
    rows = batchfiles.read_csv(path, ["id", "name"])
    assert rows == [{"id": "1", "name": 'Chevy "The Man", Chase'}, {"id": "2", "name": ""}]
    with pytest.raises(JobFailed, match=r"people.csv lacks the column\(s\) email"):
        batchfiles.read_csv(path, ["id", "email"])


def test_archive_renames_with_a_timestamp_and_never_overwrites(tmp_path: Path) -> None:
    drop = tmp_path / "Frontline_Leave.csv"
    name = f"Leave_{batchfiles.stamp(datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC))}.csv"
    assert name == "Leave_20260304050607.csv"
    drop.write_text("first")
    first = batchfiles.archive(drop, tmp_path / "done", name)
    drop.write_text("second")
    second = batchfiles.archive(drop, tmp_path / "done", name)
    assert not drop.exists()
    assert (first.name, first.read_text()) == ("Leave_20260304050607.csv", "first")
    assert (second.name, second.read_text()) == ("Leave_20260304050607-1.csv", "second")


def test_retries_file_keeps_one_row_per_key_and_disappears_when_empty(tmp_path: Path) -> None:
    retries = batchfiles.RetriesFile(tmp_path / "neogov_retries.csv", ["ein", "email"], "ein", "|")
    assert retries.load() == []
    retries.save(
        [{"ein": "1", "email": "a@x"}, {"ein": "2", "email": "b@x"}, {"ein": "1", "email": "c@x"}]
    )
    assert retries.load() == [{"ein": "1", "email": "c@x"}, {"ein": "2", "email": "b@x"}]
    assert retries.path.read_text().startswith("ein|email")
    retries.save([])
    assert not retries.path.exists()


def test_paths_may_not_leave_the_batch_folder(tmp_path: Path) -> None:
    assert (
        batchfiles.inside(tmp_path, "neogov/userdata", "param.folder")
        == tmp_path / "neogov/userdata"
    )
    for bad in ("../etc", "/etc/passwd", "a/../../b"):
        with pytest.raises(InvalidInput, match=r"param.folder: .* leaves the batch folder"):
            batchfiles.inside(tmp_path, bad, "param.folder")
