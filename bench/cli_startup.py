"""CLI startup: `imagine --help` against a minimal click program's `--help`, in one run.

Both run as fresh subprocesses of this same interpreter, alternating (so a busy machine slows both
alike), and the medians are compared. Goal: `imagine --help` within 2x the minimal program, which
needs the commands to load lazily (imagine/cli/app.py lists them from a table without importing them).

    .venv/bin/python bench/cli_startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

# The baseline: one click group with one command, nothing else imported.
MINIMAL = '''
import click

@click.group()
def cli():
    """A minimal click program."""

@cli.command()
def hello():
    """Say hello."""
    click.echo("hello")

cli(prog_name="minimal")
'''


def once(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0 or "Usage:" not in proc.stdout:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="runs of each (alternating); the first pair warms up")
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "IMAGINE_HOME": tempfile.mkdtemp(prefix="imagine-bench-")}
    programs = {"minimal click --help": [sys.executable, "-c", MINIMAL, "--help"],
                "imagine --help": [sys.executable, "-m", "imagine", "--help"]}
    for argv in programs.values():  # warm the OS file cache and the .pyc files; not counted
        once(argv, env)
    times: dict[str, list[float]] = {name: [] for name in programs}
    for _ in range(args.runs):
        for name, argv in programs.items():
            times[name].append(once(argv, env))
    print(f"python {sys.version.split()[0]}, {args.runs} alternating runs each, median (min-max) wall time:")
    for name, values in times.items():
        print(f"  {name:<22} {statistics.median(values) * 1000:7.1f} ms  "
              f"({min(values) * 1000:.1f}-{max(values) * 1000:.1f})")
    ratio = statistics.median(times["imagine --help"]) / statistics.median(times["minimal click --help"])
    print(f"ratio imagine/minimal: {ratio:.2f}x (goal <= 2x: {'met' if ratio <= 2 else 'NOT met'})")


if __name__ == "__main__":
    main()
