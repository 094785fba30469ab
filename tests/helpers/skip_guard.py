"""A pytest plugin: the session fails when a test or a test module was skipped because an install failed.

`make test` installs every extra the tests need, so a skip that says how to install something
("... pip install -e '.[hf]'", "needs the speech extra") or a bare `pytest.importorskip` ("could not import
'x'") means a part of the suite went quietly unrun: the run is then reported as failed, with the list.
Skips for reasons outside the project (no GPU, a system font or program missing) must not use those words.
A developer with a partial install sets IMAGINE_ALLOW_SKIPS=1 to keep such skips as plain skips.
"""

from __future__ import annotations

import os
import re

import pytest

ALLOW_VAR = "IMAGINE_ALLOW_SKIPS"
INSTALL_SKIP = re.compile(r"pip install|\bextras?\b|could not import", re.IGNORECASE)



def install_skip_reason(report: pytest.CollectReport | pytest.TestReport) -> str | None:
    """The skip reason when `report` is a skip that an install failure explains, else None."""
    if not report.skipped or hasattr(report, "wasxfail"):
        return None
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    reason = reason.removeprefix("Skipped: ")
    return reason if INSTALL_SKIP.search(reason) else None


def allowed() -> bool:
    return os.environ.get(ALLOW_VAR, "").strip().lower() not in ("", "0", "false", "no")


class SkipGuard:
    """One per session: records install skips (modules at collection, tests when they run), fails the end."""

    def __init__(self) -> None:
        self.skips: list[tuple[str, str]] = []

    def _record(self, report: pytest.CollectReport | pytest.TestReport) -> None:
        reason = install_skip_reason(report)
        if reason is not None:
            self.skips.append((report.nodeid or "<session>", reason))

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self._record(report)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._record(report)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.skips and not allowed() and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.skips:
            return
        ok = allowed()
        title = (f"skipped for a missing install ({ALLOW_VAR} is set: not a failure)" if ok
                 else "FAILED: skipped because something `make test` installs is missing")
        terminalreporter.write_sep("=", title, red=not ok, yellow=ok, bold=True)
        for nodeid, reason in self.skips:
            terminalreporter.write_line(f"{nodeid}: {reason}")
        if not ok:
            terminalreporter.write_line(
                "Install the extras (`make test` runs pip install -e '.[defaults,cloud,hf,test]'), or set "
                f"{ALLOW_VAR}=1 to run a partial install on purpose.")


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(SkipGuard(), "imagine-skip-guard")
