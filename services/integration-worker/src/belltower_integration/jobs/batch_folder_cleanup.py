"""``files.batch_folder_cleanup``: the seeds' Batch Folder Cleanup.

Deletes files older than the number-of-days threshold from the batch folder, reports each one,
and alerts the given addresses when anything was deleted.
"""

from __future__ import annotations

import html
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import msgspec

from belltower import fences
from belltower.errors import JobFailed, Unavailable
from belltower.fences import BatchGlob, BatchPath
from belltower.jobtypes import JobContext, JobType, counted

from .. import batchfiles


class CleanupParams(msgspec.Struct, forbid_unknown_fields=True):
    days: Annotated[int, msgspec.Meta(ge=0, description="Number of Days Threshold")] = 30
    folder: Annotated[
        BatchPath | None,
        msgspec.Meta(description="Folder inside the batch folder; default: the batch folder"),
    ] = None
    pattern: Annotated[BatchGlob, msgspec.Meta(description="Files to consider, e.g. *.csv")] = "*"
    recursive: bool = False
    dry_run: bool = False
    notify: list[str] = []


def _old_files(base: Path, folder: Path, params: CleanupParams) -> list[tuple[Path, int, float]]:
    """Regular files matching the pattern, older than the threshold, that resolve inside the
    batch folder (a symlink, or a file reached through one, is left alone)."""
    cutoff = time.time() - params.days * 86400
    candidates = folder.rglob(params.pattern) if params.recursive else folder.glob(params.pattern)
    old = []
    for path in sorted(batchfiles.confined(base, candidates)):
        if path.is_symlink() or not path.is_file():
            continue
        stat = path.stat()
        if stat.st_mtime < cutoff:
            old.append((path, stat.st_size, stat.st_mtime))
    return old


async def run(ctx: JobContext, params: CleanupParams) -> None:
    base = Path(ctx.settings.batch_folder)
    folder = batchfiles.inside(base, params.folder, "param.folder")
    fences.check_relative(params.pattern, "param.pattern", glob=True)
    if not folder.is_dir():
        raise JobFailed(
            f"batch folder {folder} does not exist; set BELLTOWER_BATCH_FOLDER or the job's 'folder' parameter"
        )
    old = _old_files(base, folder, params)
    verb = "would delete" if params.dry_run else "deleted"
    deleted, failed, freed = [], [], 0
    for index, (path, size, mtime) in enumerate(old, 1):
        if not params.dry_run:
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                failed.append((path, str(exc)))
                continue
        deleted.append((path, size, mtime))
        freed += size
        if index % 100 == 0:
            await ctx.progress(index, len(old), f"{verb} {index} of {len(old)} files")
    ctx.output.line(
        f"{verb} {len(deleted)} files older than {params.days} days from {folder} ({_bytes(freed)})"
    )
    for path, size, mtime in deleted:
        age = datetime.fromtimestamp(mtime, UTC).isoformat(timespec="seconds")
        ctx.output.line(f"  {path.relative_to(folder)}  {_bytes(size)}  modified {age}")
    for path, error in failed:
        ctx.output.line(f"  not deleted: {path.relative_to(folder)}: {error}")
    ctx.output.html(
        f"<p>{verb.capitalize()} <strong>{len(deleted)}</strong> {'file' if len(deleted) == 1 else 'files'} older than {counted(params.days, 'day')} "
        f"from <code>{html.escape(str(folder))}</code> ({_bytes(freed)}).</p>"
        + (
            "<ul>"
            + "".join(
                f"<li><code>{html.escape(str(p.relative_to(folder)))}</code> {_bytes(s)}</li>"
                for p, s, _ in deleted
            )
            + "</ul>"
            if deleted
            else ""
        )
    )
    ctx.output.summary = f"{verb} {len(deleted)} files ({_bytes(freed)})" + (
        f", {len(failed)} could not be deleted" if failed else ""
    )
    if deleted and params.notify and not params.dry_run:
        names = "\n".join(f"  {p.relative_to(folder)}" for p, _, _ in deleted)
        try:
            await ctx.mailer.send(
                params.notify,
                f"Batch folder cleanup: {counted(len(deleted), 'old file')} deleted",
                f"{ctx.output.summary} from {folder}, older than {counted(params.days, 'day')}:\n{names}\n",
            )
        except Unavailable as exc:
            raise JobFailed(
                f"files were deleted but the alert was not sent: {exc.message}"
            ) from None
        ctx.output.line(f"alert sent to {', '.join(params.notify)}")
    if failed:
        raise JobFailed(f"{counted(len(failed), 'file')} could not be deleted; see the output")


def _bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


job_type = JobType(
    name="files.batch_folder_cleanup",
    pool="integration",
    title="Batch Folder Cleanup",
    description=(
        "Deletes files older than the Number of Days Threshold from the batch folder, lists what it "
        "deleted, and alerts the given e-mail addresses."
    ),
    params=CleanupParams,
    run=run,
)
