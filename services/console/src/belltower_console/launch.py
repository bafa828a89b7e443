"""``belltower-console``: the web process starts without the shell commands' typer.

With no command, or ``serve``, it serves the API and the console; anything else (``create-user``,
``create-token``, ``--help``) is a shell command of :mod:`belltower_console.cli`.
"""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:] in ([], ["serve"]):
        from .app import serve
        from .settings import ConsoleSettings

        try:
            serve(ConsoleSettings())
        except KeyboardInterrupt:
            sys.exit(130)
        return
    from .cli import main as shell

    shell()
