"""Files in the batch folder: exports written atomically, file drops picked up and archived.

Another system may read an export the moment its name appears, so an export is written to a
temporary file in the same directory, flushed to disk and only then renamed into place: under
its final name a file is always complete. A dropped file, once processed, is renamed with a
timestamp (the seeds' ``Leave_YYYYMMDDHHMMSS.csv``, ``MetLife-X.csv``), so the next run finds
nothing to do until a new file arrives. Records that cannot be matched yet wait in a retries
file for the next run.

These are plain blocking functions: job handlers call them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from belltower import fences
from belltower.errors import JobFailed

STAMP_FORMAT = "%Y%m%d%H%M%S"


def stamp(at: datetime | None = None) -> str:
    """``YYYYMMDDHHMMSS`` in UTC, the timestamp the seeds put in processed file names."""
    return (at or datetime.now(UTC)).astimezone(UTC).strftime(STAMP_FORMAT)


def inside(base: Path, relative: str | None, field: str) -> Path:
    """``relative`` resolved under ``base`` (symlinks followed); refuses a path that would leave
    the batch folder, by its text or by where it resolves."""
    return fences.confine(base, relative, field)


def within(base: Path, path: Path, field: str) -> Path:
    """``path`` as given, once it is known to resolve inside ``base`` (a symlink dropped into
    the folder cannot lead a job to read or write outside it)."""
    fences.inside_root(base, path, field)
    return path


def confined(base: Path, paths: Iterable[Path]) -> list[Path]:
    """The ``paths`` (found by a glob or a listing) that resolve inside ``base``; the others,
    symlinks leading out, are left alone."""
    root = base.resolve()
    return [p for p in paths if p.resolve().is_relative_to(root)]


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems cannot fsync a directory
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "w", *, encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; on success it replaces ``path`` whole.

    On any error the temporary file is removed and ``path`` is untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        text = "b" not in mode
        with os.fdopen(
            fd, mode, encoding=encoding if text else None, newline="" if text else None
        ) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write(path: Path, data: bytes | str) -> int:
    """Write ``data`` to ``path`` atomically; returns the bytes written."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_open(path, "wb") as f:
        f.write(payload)
    return len(payload)


def csv_text(header: Sequence[str], rows: Iterable[Sequence[object]], delimiter: str = ",") -> str:
    """CSV text with a header row (RFC 4180 quoting, CRLF line ends as spreadsheets expect)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter)
    writer.writerow(header)
    writer.writerows(["" if v is None else v for v in row] for row in rows)
    return buffer.getvalue()


def write_csv(
    path: Path, header: Sequence[str], rows: Iterable[Sequence[object]], delimiter: str = ","
) -> int:
    """Write a CSV file atomically; returns the number of data rows."""
    count = 0
    with atomic_open(path) as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        for row in rows:
            writer.writerow(["" if v is None else v for v in row])
            count += 1
    return count


def read_csv(
    path: Path, required: Sequence[str] = (), delimiter: str = ","
) -> list[dict[str, str]]:
    """The rows of a CSV file with a header line, as dicts keyed by lower-cased, trimmed column names.

    Raises JobFailed naming the file and the columns when a required column is missing, so a
    malformed drop is reported and left in place rather than half imported.
    """
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, delimiter=delimiter)
            header = next(reader, None)
            if header is None:
                raise JobFailed(
                    f"{path.name} is empty; expected a header line: {', '.join(required)}"
                )
            columns = [c.strip().lower() for c in header]
            missing = [c for c in required if c.lower() not in columns]
            if missing:
                raise JobFailed(
                    f"{path.name} lacks the column(s) {', '.join(missing)}; "
                    f"its header is {delimiter.join(header)!r}, expected {delimiter.join(required)!r}"
                )
            rows = []
            for values in reader:
                if not any(v.strip() for v in values):
                    continue
                padded = [*values, *[""] * (len(columns) - len(values))]
                rows.append({c: v.strip() for c, v in zip(columns, padded, strict=False)})
            return rows
    except UnicodeDecodeError as exc:
        raise JobFailed(f"{path.name} is not UTF-8 text ({exc}); save it as UTF-8 CSV") from None
    except csv.Error as exc:
        raise JobFailed(f"{path.name} is not valid CSV: {exc}") from None


def settled(path: Path, min_age_s: float) -> bool:
    """Whether ``path`` has not been modified for ``min_age_s`` seconds: a drop still being
    uploaded is left for the next run."""
    try:
        return time.time() - path.stat().st_mtime >= min_age_s
    except FileNotFoundError:
        return False


def archive(path: Path, folder: Path, name: str) -> Path:
    """Move ``path`` into ``folder`` as ``name`` without overwriting anything already archived.

    A name already taken gets ``-1``, ``-2``... before its suffix. The move is a rename, so the
    file is never seen half-moved; across file systems it is copied atomically, then removed.
    """
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    stem, suffix = target.stem, target.suffix
    n = 0
    while True:
        try:
            os.link(path, target)
            break
        except FileExistsError:
            n += 1
            target = folder / f"{stem}-{n}{suffix}"
        except OSError:
            # Hard links unsupported or another file system: copy atomically, then remove.
            if target.exists():
                n += 1
                target = folder / f"{stem}-{n}{suffix}"
                continue
            atomic_write(target, path.read_bytes())
            break
    path.unlink()
    _fsync_dir(folder)
    _fsync_dir(path.parent)
    return target


class RetriesFile:
    """Records that could not be matched yet, kept as a CSV beside the drop and retried next run.

    Keyed by one column, so a record that fails again replaces its earlier copy instead of
    piling up; records that succeed are removed; an empty retries file is deleted.
    """

    def __init__(
        self,
        path: Path,
        header: Sequence[str],
        key: str | Callable[[dict[str, str]], str],
        delimiter: str = ",",
    ) -> None:
        self.path = path
        self.header = list(header)
        self.key = key if callable(key) else (lambda row, column=key: row.get(column, ""))
        self.delimiter = delimiter

    def load(self) -> list[dict[str, str]]:
        if not self.path.exists():
            return []
        return read_csv(self.path, self.header, self.delimiter)

    def save(self, rows: Iterable[dict[str, str]]) -> int:
        unique: dict[str, dict[str, str]] = {}
        for row in rows:
            unique[self.key(row)] = row
        if not unique:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            return 0
        return write_csv(
            self.path,
            self.header,
            ([row.get(c, "") for c in self.header] for row in unique.values()),
            self.delimiter,
        )
