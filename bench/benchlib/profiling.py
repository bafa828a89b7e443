"""Sampling profiles of the service processes during a measurement (``--profile DIR``).

py-spy attaches to running processes without changing them, so the profile is of the very run
whose figure is printed. It is optional: without it on PATH (``uv tool install py-spy``) the
benchmark says so and runs unprofiled. Profiles are kept as collapsed stacks (one line per
stack and its sample count, flamegraph.pl/speedscope input) and summarised on stderr by the
functions holding the most samples.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path

from .stack import log

_TOP = 15


def _py_spy() -> str | None:
    return shutil.which("py-spy") or next(
        (
            str(p)
            for p in (Path.home() / ".local/bin/py-spy",)
            if p.exists() and os.access(p, os.X_OK)
        ),
        None,
    )


class SpyGroup:
    """One ``py-spy record`` per named process, started and stopped together."""

    def __init__(self, out_dir: Path | None, label: str, pids: dict[str, int | None]) -> None:
        self.out_dir = out_dir
        self.label = label
        self.pids = {name: pid for name, pid in pids.items() if pid is not None}
        self.procs: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}

    @property
    def available(self) -> bool:
        return _py_spy() is not None

    def start(self) -> None:
        if self.out_dir is None:
            return
        binary = _py_spy()
        if binary is None:
            log(
                "profile: py-spy is not installed (`uv tool install py-spy`); services not profiled"
            )
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, pid in self.pids.items():
            if name == "nats-server":
                continue  # not a Python process
            path = self.out_dir / f"{self.label}-{name}.collapsed"
            proc = subprocess.Popen(
                [
                    binary,
                    "record",
                    "--pid",
                    str(pid),
                    "--format",
                    "raw",
                    "--nonblocking",
                    "--output",
                    str(path),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            self.procs[name] = (proc, path)

    async def stop(self) -> None:
        """Stop sampling (py-spy writes its file on SIGINT) and log where each process spent its time."""
        for proc, _ in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
        for name, (proc, path) in self.procs.items():
            for _ in range(200):
                if proc.poll() is not None:
                    break
                await asyncio.sleep(0.05)
            else:
                proc.kill()
            proc.wait()
            if path.exists():
                log(f"profile of {name} ({path}):\n{summarise(path)}")
            else:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                log(f"profile of {name}: py-spy wrote nothing ({err.strip()[-500:]})")
        self.procs.clear()


def summarise(path: Path, top: int = _TOP) -> str:
    """The functions with the most samples: on-CPU ("self", innermost frame) and inclusive."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        own[_short(frames[-1])] += count
        for frame in {_short(f) for f in frames}:
            inclusive[frame] += count
    if not total:
        return "  (no samples)"
    lines = [f"  {total} samples; self:"]
    lines += [f"    {100 * c / total:5.1f}%  {f}" for f, c in own.most_common(top)]
    lines.append("  inclusive:")
    lines += [f"    {100 * c / total:5.1f}%  {f}" for f, c in inclusive.most_common(top * 2)]
    return "\n".join(lines)


def _short(frame: str) -> str:
    """``func (path/to/site-packages/pkg/mod.py:12)`` -> ``func (pkg/mod.py:12)``."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "/src/", "lib/python3.11/"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    return f"{name} ({where})" if where else name
