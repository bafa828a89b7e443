"""The CSV files and the zip of a OneRoster set, byte for byte the same for the same rows and
instant (fixed member order and times), so a repeated occurrence writes an identical file."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime

from .. import batchfiles
from .binding import (
    FILES,
    MANIFEST_FILES,
    MANIFEST_HEADER,
    MANIFEST_VERSION,
    ONEROSTER_VERSION,
    header,
)


def manifest(modes: dict[str, str], system_name: str, system_code: str) -> list[list[str]]:
    rows = [["manifest.version", MANIFEST_VERSION], ["oneroster.version", ONEROSTER_VERSION]]
    rows += [[f"file.{name}", modes.get(name, "absent")] for name in MANIFEST_FILES]
    rows += [["source.systemName", system_name], ["source.systemCode", system_code]]
    return rows


def files(
    rows: dict[str, list[list[str]]], mode: str, system_name: str, system_code: str
) -> dict[str, bytes]:
    """``manifest.csv`` and every file with rows (a file with none is declared absent)."""
    sent = {name: r for name, r in rows.items() if r}
    out = {
        "manifest.csv": batchfiles.csv_text(
            MANIFEST_HEADER, manifest(dict.fromkeys(sent, mode), system_name, system_code)
        ).encode()
    }
    for name in FILES:
        if name in sent:
            out[f"{name}.csv"] = batchfiles.csv_text(header(name), sent[name]).encode()
    return out


def zipped(members: dict[str, bytes], at: datetime) -> bytes:
    when = at.astimezone(UTC)
    stamp = (max(when.year, 1980), when.month, when.day, when.hour, when.minute, when.second)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, data)
    return buffer.getvalue()
