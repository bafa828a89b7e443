"""Symlink Photos in a real batch folder: links made once, inside the folder only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _newer_than(path: Path, other: Path) -> None:
    later = other.stat().st_mtime + 10
    os.utime(path, (later, later))


def _all_inside(links: list[Path], base: Path) -> bool:
    return all(p.resolve().is_relative_to(base.resolve()) for p in links if p.is_symlink())


async def test_photos_are_linked_once_and_no_link_leaves_the_batch_folder(
    run_job, school, tmp_batch_folder: Path, tmp_path: Path
) -> None:
    student, teacher = await school.person("Pia"), await school.person("Tom", status="faculty")
    prospect = await school.person("Pro", status="prospect")
    uploads = tmp_batch_folder / "photos" / "uploads"
    uploads.mkdir(parents=True)
    (uploads / f"{student['sis_id']}.JPG").write_bytes(b"\xff\xd8 student")
    (uploads / f"{teacher['sis_id']}.png").write_bytes(b"\x89PNG teacher")
    (uploads / f"{prospect['sis_id']}.jpg").write_bytes(b"prospect")
    (uploads / "notes.txt").write_text("not a photo")
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(b"outside")
    (uploads / "S99999.jpg").symlink_to(secret)  # an upload that leads out

    dry = await run_job("files.symlink_photos", {"dry_run": True})
    assert dry.summary.startswith("2 photos would link"), dry.summary
    assert not (tmp_batch_folder / "photos" / "students").exists()

    ran = await run_job("files.symlink_photos")
    assert ran.status == "succeeded", ran.error
    assert ran.summary == "2 photos linked, 0 already linked, 0 links removed, 3 refused"
    link = tmp_batch_folder / "photos" / "students" / f"{student['sis_id']}.jpg"
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    assert link.read_bytes() == b"\xff\xd8 student"
    assert (
        tmp_batch_folder / "photos" / "users" / f"{teacher['sis_id']}.png"
    ).read_bytes() == b"\x89PNG teacher"
    assert "S99999.jpg  a symlink, not an uploaded photo" in ran.text
    assert f"no student or user with SIS id {prospect['sis_id']}" in ran.text
    assert not list((tmp_batch_folder / "photos" / "students").glob("S99999*"))

    again = await run_job("files.symlink_photos")
    assert again.summary.startswith("0 photos linked, 2 already linked, 0 links removed")

    # A newer upload of another type replaces the old link; a planted link leading out goes;
    # a regular file in the photo folder is never replaced.
    newer = uploads / f"{student['sis_id']}.png"
    newer.write_bytes(b"newer")
    _newer_than(newer, uploads / f"{student['sis_id']}.JPG")
    planted = tmp_batch_folder / "photos" / "users" / "X1.jpg"
    planted.symlink_to(secret)
    (tmp_batch_folder / "photos" / "users" / f"{teacher['sis_id']}.png").unlink()
    (tmp_batch_folder / "photos" / "users" / f"{teacher['sis_id']}.png").write_bytes(b"real file")
    changed = await run_job("files.symlink_photos")
    assert not link.exists() and not link.is_symlink()
    assert (link.with_suffix(".png")).read_bytes() == b"newer"
    assert not planted.is_symlink()
    assert (
        tmp_batch_folder / "photos" / "users" / f"{teacher['sis_id']}.png"
    ).read_bytes() == b"real file"
    assert "a regular file is there: not replaced" in changed.text
    assert "removed link photos/users/X1.jpg" in changed.text
    links = [p for d in ("students", "users") for p in (tmp_batch_folder / "photos" / d).iterdir()]
    assert _all_inside(links, tmp_batch_folder)


async def test_an_upload_folder_outside_is_refused(run_job) -> None:
    ran = await run_job("files.symlink_photos", {"uploads": "../elsewhere"})
    assert ran.status == "failed"
