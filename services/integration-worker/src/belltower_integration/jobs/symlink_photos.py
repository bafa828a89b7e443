"""``files.symlink_photos``: Focus's Symlink Photos.

Photos uploaded from the server land in ``uploads`` (inside the batch folder) named by the
person's SIS id (``S00042.jpg``; jpg, jpeg, png or gif). Each is linked, by a relative symlink,
as ``<students>/<sis id>.<ext>`` for a student and ``<users>/<sis id>.<ext>`` for faculty and
staff, where the SIS's pages read photos from. No link may leave the batch folder: an upload
that is itself a symlink, or resolves outside, is refused; a link is written only when its
target resolves inside; links in the two photo folders that dangle or lead out are removed
(never a regular file). A person's newest upload wins; their older links of another
extension go. A link already right is left alone, so a re-run changes nothing.
"""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import msgspec

from belltower.errors import JobFailed
from belltower.fences import BatchPath
from belltower.jobtypes import JobContext, JobType

from .. import batchfiles
from ..calculations.common import SEED_001
from ..report import Tally

PHOTO = re.compile(r"^(?P<id>[A-Za-z0-9_-]{1,64})\.(?P<ext>jpe?g|png|gif)$", re.IGNORECASE)
USER_STATUSES = ("faculty", "staff")


class SymlinkPhotosParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    uploads: Annotated[
        BatchPath, msgspec.Meta(description="where photos are uploaded, inside the batch folder")
    ] = "photos/uploads"
    students: Annotated[BatchPath, msgspec.Meta(description="the student photo folder")] = (
        "photos/students"
    )
    users: Annotated[BatchPath, msgspec.Meta(description="the user (staff) photo folder")] = (
        "photos/users"
    )
    dry_run: Annotated[bool, msgspec.Meta(description="report the links, change nothing")] = False


@dataclass
class Plan:
    """What the file system work does, and what it did."""

    base: Path
    dry_run: bool
    linked: list[tuple[str, str]] = field(default_factory=list)
    kept: int = 0
    removed: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)


def _uploads(base: Path, folder: Path, plan: Plan) -> dict[str, tuple[Path, str]]:
    """The newest upload per SIS id: (file, extension)."""
    newest: dict[str, tuple[Path, str, float]] = {}
    for path in sorted(folder.iterdir()):
        name = path.name
        if path.is_symlink():
            plan.refused.append((name, "a symlink, not an uploaded photo"))
            continue
        if not path.is_file():
            continue
        m = PHOTO.match(name)
        if m is None:
            plan.refused.append((name, "not <sis id>.jpg, .jpeg, .png or .gif"))
            continue
        try:
            batchfiles.within(base, path, "uploads")
        except Exception as exc:
            plan.refused.append((name, str(exc)))
            continue
        mtime = path.stat().st_mtime
        key = m["id"].upper()
        if key not in newest or mtime > newest[key][2]:
            newest[key] = (path, m["ext"].lower(), mtime)
    return {k: (p, ext) for k, (p, ext, _) in newest.items()}


def _link(base: Path, link: Path, target: Path, plan: Plan) -> None:
    """Make ``link`` a relative symlink to ``target`` (both inside ``base``)."""
    relative = os.path.relpath(target, link.parent)
    if link.is_symlink() and os.readlink(link) == relative:
        plan.kept += 1
        return
    if link.exists() and not link.is_symlink():
        plan.refused.append((str(link.relative_to(base)), "a regular file is there: not replaced"))
        return
    resolved = (link.parent / relative).resolve()
    if not resolved.is_relative_to(base.resolve()):  # cannot happen for a confined upload
        plan.refused.append((str(link.relative_to(base)), "the link would leave the batch folder"))
        return
    plan.linked.append((str(link.relative_to(base)), relative))
    if plan.dry_run:
        return
    link.parent.mkdir(parents=True, exist_ok=True)
    temporary = link.with_name(f".{link.name}.link")
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(relative)
    os.replace(temporary, link)


def _prune(base: Path, folder: Path, wanted: set[str], plan: Plan) -> None:
    """Remove this folder's links that dangle, lead out, or are a person's superseded photo."""
    if not folder.is_dir():
        return
    root = base.resolve()
    for path in sorted(folder.iterdir()):
        if not path.is_symlink():
            continue
        target = path.resolve()
        gone = not target.exists() or not target.is_relative_to(root)
        m = PHOTO.match(path.name)
        stale = m is not None and m["id"].upper() in {w.split(".")[0] for w in wanted}
        if gone or (stale and path.name not in wanted):
            plan.removed.append(str(path.relative_to(base)))
            if not plan.dry_run:
                path.unlink()


def link_photos(base: Path, uploads: Path, folders: dict[str, Path], who: dict[str, str],
                plan: Plan) -> None:  # fmt: skip
    """Link each upload of a known person into their folder, then prune both folders."""
    wanted: dict[str, set[str]] = {kind: set() for kind in folders}
    for sis_id, (path, ext) in _uploads(base, uploads, plan).items():
        kind = who.get(sis_id)
        if kind is None:
            plan.refused.append((path.name, f"no student or user with SIS id {sis_id}"))
            continue
        name = f"{sis_id}.{ext}"
        wanted[kind].add(name)
        _link(base, folders[kind] / name, path, plan)
    for kind, folder in folders.items():
        _prune(base, folder, wanted[kind], plan)


async def run(ctx: JobContext, params: SymlinkPhotosParams) -> None:
    base = Path(ctx.settings.batch_folder)
    uploads = batchfiles.inside(base, params.uploads, "param.uploads")
    folders = {
        "students": batchfiles.inside(base, params.students, "param.students"),
        "users": batchfiles.inside(base, params.users, "param.users"),
    }
    if not uploads.is_dir():
        raise JobFailed(f"the upload folder {params.uploads} does not exist in the batch folder")
    names = [m["id"].upper() for p in uploads.iterdir() if (m := PHOTO.match(p.name)) is not None]
    pool = await ctx.db.pool()
    rows = await pool.fetch(
        "SELECT upper(sis_id) AS sis_id, status FROM sis.people WHERE upper(sis_id) = ANY($1::text[])",
        names,
    )
    who = {
        r["sis_id"]: "students" if r["status"] == "student" else "users"
        for r in rows
        if r["status"] == "student" or r["status"] in USER_STATUSES
    }
    plan = Plan(base, params.dry_run)
    await asyncio.to_thread(link_photos, base, uploads, folders, who, plan)
    tally = Tally("Symlink photos")
    verb = "would link" if params.dry_run else "linked"
    for link, target in plan.linked:
        tally.ok(link, f"{verb} to {target}")
    tally.processed += plan.kept
    for name, why in plan.refused:
        tally.skip(name, why)
    for link in plan.removed:
        tally.fact(f"{'would remove' if params.dry_run else 'removed'} link {link}")
    tally.write(
        ctx,
        f"{len(plan.linked)} photos {verb}, {plan.kept} already linked, "
        f"{len(plan.removed)} links removed, {len(plan.refused)} refused"
        + (" (dry run: nothing changed)" if params.dry_run else ""),
    )


job_type = JobType(
    name="files.symlink_photos",
    pool="integration",
    title="Symlink Photos",
    description=(
        "Symlinks the student and user photos uploaded from the server into the student and "
        "user photo folders, inside the batch folder only. From " + SEED_001 + ": 'Symlink Photos'."
    ),
    params=SymlinkPhotosParams,
    run=run,
)
