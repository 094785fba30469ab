"""`imagine flow ...`: run, check, show, list and resume declarative flows (imagine.flows).

Every error about the flow file is one line naming the file, line, column and field (exit 2). Progress
bars appear only on a terminal; a pipe or a log gets the one summary line at the end.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Callable

import click

from ._common import OutPath

__all__ = ["flow"]


def _inputs(pairs: tuple[str, ...]) -> dict[str, str]:
    from ..errors import InputError

    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise InputError(f"--input {pair!r}: give NAME=PATH", hint="e.g. --input audio=talks/")
        out[name.strip()] = value.strip()
    return out


class _Bars:
    """One rich bar per step and one for items, updated from the runner's progress callback."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[note]}"), TimeElapsedColumn(), console=Console(stderr=True), transient=False)
        self.tasks: dict[str, Any] = {}
        self.total: int | None = None

    def __call__(self, step: str, key: str, status: str) -> None:
        if step == "total":  # the runner says how many items there are (it grows under --watch)
            self.total = int(status)
            for task in self.tasks.values():
                self.progress.update(task, total=self.total)
            return
        if step not in self.tasks:
            self.tasks[step] = self.progress.add_task(step, total=self.total, note="")
        note = "" if status in ("done", "cached") else f"{key}: {status}"
        self.progress.update(self.tasks[step], advance=1, note=note[-40:])


def _progress() -> tuple[Callable[[str, str, str], None] | None, Any]:
    if not sys.stderr.isatty():
        return None, None
    bars = _Bars()
    return bars, bars.progress


def _say_result(result: Any, as_json: bool) -> None:
    counts = result.manifest.get("counts", {})
    if as_json:
        click.echo(json.dumps({"run_id": result.run_id, "status": result.status, "counts": counts,
                               "manifest": str(result.manifest_path)}))
        return
    shown = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no items"
    click.echo(f"run {result.run_id}: {result.status} ({shown})")
    click.echo(f"manifest: {result.manifest_path}")
    for item in result.items:
        if item["status"] != "done" and item.get("error"):
            click.echo(f"  {item['status']} {item['key']}: {item['error']}", err=True)


def _run(call: Callable[[Any], Any], as_json: bool) -> None:
    from ..errors import ImagineError

    report, live = _progress()
    if live is not None:
        with live:
            result = call(report)
    else:
        result = call(None)
    _say_result(result, as_json)
    if result.status == "failed":
        failed = next((i for i in result.items if i["status"] == "failed"), None)
        raise ImagineError(f"flow run {result.run_id} failed: " + (f"item {failed['key']}: {failed['error']}"
                                                                 if failed else "see the manifest"))


def _executor_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed([
        click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                     help="local: asyncio in this process; ray: one Ray task per item (pip install 'imagine[ray]')."),
        click.option("--ray-address", default=None, metavar="ADDRESS",
                     help="Run on this Ray cluster (e.g. ray://head:10001) instead of a Ray started here."),
        click.option("--ray-cpus", type=click.IntRange(min=1), default=None,
                     help="CPUs of the Ray started here (default: all)."),
    ]):
        command = option(command)
    return command


def _executor(kind: str, address: str | None, cpus: int | None) -> Any:
    """None for the local executor (the runner's default); a RayExecutor, which the caller closes."""
    if kind != "ray":
        if address or cpus:
            raise click.UsageError("--ray-address and --ray-cpus need --executor ray")
        return None
    from ..flows.ray import RayExecutor

    return RayExecutor(address=address, num_cpus=cpus)


@click.group("flow")
def flow() -> None:
    """Declarative multimodal flows: a YAML DAG of steps run over many items, cached and resumable."""


@flow.command("run")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--input", "-i", "inputs", multiple=True, metavar="NAME=PATH", help="Bind or override an input.")
@click.option("-O", "--out", type=OutPath(), default=None, help="Output folder (default: the home's flows/RUN_ID).")
@click.option("--watch", "watch", type=click.Path(file_okay=False), default=None,
              help="Keep running: process new files in DIR (the for_each input) as they arrive.")
@click.option("--poll", type=float, default=1.0, show_default=True, help="Seconds between --watch scans.")
@click.option("--json", "as_json", is_flag=True, help="One JSON line: run id, status, counts, manifest path.")
@_executor_options
def run(file: str, inputs: tuple[str, ...], out: str | None, watch: str | None, poll: float, as_json: bool,
        executor: str, ray_address: str | None, ray_cpus: int | None) -> None:
    """Run FILE over its inputs; writes outputs and manifest.json under the output folder."""
    from ..flows import Flow

    loaded = Flow.load(file)
    bound = _inputs(inputs)
    chosen = _executor(executor, ray_address, ray_cpus)
    try:
        _run(lambda report: loaded.run(bound, out, watch=watch, poll=poll, progress=report, executor=chosen),
             as_json)
    finally:
        if chosen is not None:
            chosen.close()


@flow.command("resume")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON line: run id, status, counts, manifest path.")
@_executor_options
def resume(run_id: str, as_json: bool, executor: str, ray_address: str | None, ray_cpus: int | None) -> None:
    """Finish RUN_ID after a crash or Ctrl-C; finished items are not computed again."""
    from ..flows import Flow

    chosen = _executor(executor, ray_address, ray_cpus)
    try:
        _run(lambda report: Flow.resume(run_id, progress=report, executor=chosen), as_json)
    finally:
        if chosen is not None:
            chosen.close()


@flow.command("validate")
@click.argument("file", type=click.Path(dir_okay=False))
def validate(file: str) -> None:
    """Check FILE without running it: tasks, references, cycles, modalities, engine options."""
    from ..flows import Flow

    loaded = Flow.load(file)
    click.echo(f"{file}: ok ({len(loaded.spec.steps)} steps)")


@flow.command("show")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--png", "png", type=OutPath(), default=None, metavar="PNG",
              help="Also draw the DAG as a picture to this PNG file.")
def show(file: str, png: str | None) -> None:
    """Print FILE's DAG as text: inputs, steps in order with what each reads, outputs."""
    from ..flows import Flow

    loaded = Flow.load(file)
    click.echo(loaded.show())
    if png is not None:
        from ..flows.picture import save_png

        click.echo(f"picture: {save_png(loaded, png)}", err=True)


@flow.command("runs")
@click.option("-n", "--limit", type=int, default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="JSON lines.")
def runs(limit: int, as_json: bool) -> None:
    """Recent flow runs, newest first: id, status, items done, flow file."""
    from ..config import get_settings
    from ..flows.state import RunState

    state = RunState(get_settings().home / "flows.db")
    try:
        rows = state.runs(limit)
    finally:
        state.close()
    for row in rows:
        if as_json:
            click.echo(json.dumps(row, default=str))
        else:
            click.echo(f"{row['id']}  {row['status']:<11} {row['done']}/{row['items']} items  {row['flow']}")
    if not rows and not as_json:
        click.echo("no flow runs yet", err=True)
