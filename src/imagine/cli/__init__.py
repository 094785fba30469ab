"""The `imagine` command: thin — parse, call the core, render events.

`app` holds the root group (commands loaded lazily from a table, errors -> one line and an exit code),
`_common` the shared helpers, and each other module one group of commands. Errors are one line on
stderr and a non-zero exit code (no traceback unless --debug). Heavy modules are imported inside
the commands that need them, so `imagine --help` starts fast.
"""

from __future__ import annotations

from .app import cli, main

__all__ = ["cli", "main"]
