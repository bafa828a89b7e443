"""The web process carries neither the CLI nor typer: the console reads schedule flags with
belltower.schedule.ScheduleFlags, not through the `belltower` command's package."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import importlib, json, pkgutil, sys
import belltower_console
served = [m.name for m in pkgutil.iter_modules(belltower_console.__path__) if m.name != "cli"]
for name in served:
    importlib.import_module("belltower_console." + name)
loaded = {"served": served, "typer": "typer" in sys.modules, "cli": "belltower.cli" in sys.modules}
importlib.import_module("belltower_console.cli")
loaded["cli_after_shell"] = "belltower.cli" in sys.modules
print(json.dumps(loaded))
"""


def test_the_console_imports_neither_the_cli_nor_typer() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True
    )
    loaded = json.loads(out.stdout)
    assert {"app", "api", "web", "forms", "actions"} <= set(loaded["served"])
    assert loaded["typer"] is False, "a module the web process serves from imports typer"
    assert loaded["cli"] is False, "a module the web process serves from imports belltower.cli"
    # `belltower-console` (create-user, create-token, serve) is a typer command of its own,
    # but it too does without the `belltower` CLI.
    assert loaded["cli_after_shell"] is False
