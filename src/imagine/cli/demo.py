"""`imagine demo`: the offline demo (the script itself is imagine.demo)."""

from __future__ import annotations

import click

__all__ = ["demo"]


@click.command()
@click.option("-m", "--model", help="Run the demo on another model.")
def demo(model: str | None) -> None:
    """Run the offline demo on the bundled model: a streamed answer, a schema extraction, a summary."""
    from ..demo import run_demo

    run_demo(model)
