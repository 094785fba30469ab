"""Peak memory of a command, measured cleanly.

Linux starts a new process's peak-RSS record from the memory of the process that forked it: a command
forked straight from pytest (which holds torch, models, ...) reports pytest's size when its own is lower,
and an honest bound then fails or, worse, a real regression hides below it. So the command is started by
a small launcher process, and its peak RSS is what the launcher's `wait4` says about it alone."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Measured", "run_measured"]

_LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


@dataclass
class Measured:
    peak_mb: float  # peak resident memory of the command alone, in MiB
    returncode: int
    stdout: str
    stderr: str


def run_measured(argv: list[str], *, env: dict[str, str] | None = None, input: bytes | None = None,
                 timeout: float = 600) -> Measured:
    """Run `argv` (stdin from `input`) and measure its peak RSS (Linux: ru_maxrss is in KiB)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "maxrss"
        done = subprocess.run([sys.executable, "-c", _LAUNCHER, str(report), *argv], input=input,
                              capture_output=True, env=env if env is not None else dict(os.environ),
                              timeout=timeout)
        peak = int(report.read_text()) / 1024 if report.exists() else float("nan")
    return Measured(peak, done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace"))
