"""`imagine logs`: the logged responses, their cost by day and engine, one response in full."""

from __future__ import annotations

import json
from typing import Any

import click

from ._common import FiniteFloat
from .app import ImagineGroup

__all__ = ["logs"]


@click.group(cls=ImagineGroup, invoke_without_command=True)
@click.option("-n", "--count", default=10, show_default=True, type=click.IntRange(1, 100000), help="How many.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--cost", is_flag=True, help="Sum tokens and cost by day and engine.")
@click.pass_context
def logs(ctx: click.Context, count: int, as_json: bool, cost: bool) -> None:
    """Show logged responses, newest first (`imagine logs show ID` for one)."""
    if ctx.invoked_subcommand is not None:
        return
    from ..tasks import get_store

    store = get_store()
    if cost:
        _print_costs(store.cost_by_engine_and_day(), as_json)
        return
    rows = store.recent(count)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        click.echo(f"no responses logged yet in {store.db_path}")
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"latest {len(rows)} of {store.count()} responses · {store.db_path}")
    console = Console()
    for column in ("id", "time (UTC)", "model", "tokens", "ms", "output"):
        table.add_column(column, no_wrap=True, justify="right" if column in ("tokens", "ms") else "left")
    room = max(16, console.width - 24 - 14 - 20 - 7 - 6 - 19)
    for row in rows:
        text = (row["error"] or row["output_text"] or "").replace("\n", " ")
        if row.get("bad_columns"):  # a damaged row is shown as one, not a failed listing
            text = f"[bad row: {', '.join(row['bad_columns'])} unreadable] {text}"
        text = text if len(text) <= room else text[: room - 1] + "…"
        out = f"[red]{escape(text)}[/]" if row["error"] or row.get("bad_columns") else escape(text)
        model = f"{row['engine']}:{row['model']}"
        table.add_row(str(row["id"]), str(row["created"])[5:19].replace("T", " "),
                      model if len(model) <= 20 else model[:19] + "…",
                      f"{_count(row['input_tokens'])}/{_count(row['output_tokens'])}",
                      f"{row['latency_ms'] or 0:.0f}", out)
    console.print(table)


def _count(tokens: int | None) -> str:
    """A logged token count; "?" when the engine could not say (None), never a made-up 0."""
    return "?" if tokens is None else str(tokens)


def _print_costs(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="cost by day and engine (US dollars)")
    for column in ("day", "engine", "responses", "tokens in", "tokens out", "cost"):
        table.add_column(column, justify="left" if column in ("day", "engine") else "right")
    for row in rows:
        priced = f"{row['cost']:.6f}" + (f" (+{row['unpriced']} unpriced)" if row["unpriced"] else "")
        unknown = " +?" if row.get("uncounted") else ""  # some responses could not say how many tokens
        table.add_row(row["day"], row["engine"], str(row["responses"]), f"{row['input_tokens']}{unknown}",
                      f"{row['output_tokens']}{unknown}", priced)
    total = sum(r["cost"] for r in rows)
    table.add_row("", "total", str(sum(r["responses"] for r in rows)), "", "", f"{total:.6f}")
    Console().print(table)


@logs.command("show")
@click.argument("response_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def logs_show(response_id: str, as_json: bool) -> None:
    """Show one logged response in full (an id prefix is enough)."""
    from ..tasks import get_store

    row = get_store().get(response_id)
    if as_json:
        click.echo(json.dumps(row, indent=2, default=str))
        return
    click.echo(f"id:            {row['id']}\nconversation:  {row['conversation_id']}\ntime:          {row['created']}")
    click.echo(f"model:         {row['engine']}:{row['model']}  ({row['engine_version']})")
    click.echo(f"options:       {json.dumps(row['options'])}")
    click.echo(f"usage:         {_count(row['input_tokens'])} in / {_count(row['output_tokens'])} out · "
               f"cost {row['cost']}")
    click.echo(f"latency:       {row['latency_ms']} ms (first token {row['ttft_ms']} ms) · {row['finish_reason']}")
    click.echo(f"routing:       {json.dumps(row['routing'])}")
    if row.get("bad_columns"):
        click.echo(f"damaged:       {', '.join(row['bad_columns'])} (not valid JSON in the log)")
    for message in row["input"] if isinstance(row["input"], list) else []:
        for part in message.get("parts", []) if isinstance(message, dict) else []:
            if not isinstance(part, dict):
                continue
            body = part.get("text") if part.get("kind") == "text" else \
                f"[{part.get('mime')} {part.get('size')} bytes {str(part.get('sha256'))[:12]}]"
            click.echo(f"--- {message.get('role')} ({part.get('kind')})\n{body}")
    click.echo(f"--- assistant\n{row['output_text']}")
    if row["error"]:
        click.echo(f"--- error\n{row['error']}")


@logs.command("gc")
@click.option("--grace", default=3600.0, show_default=True, type=FiniteFloat(0),
              help="Seconds: younger files are kept (a writer may be about to log a row naming them).")
@click.option("--dry-run", is_flag=True, help="Say what would go; remove nothing.")
def logs_gc(grace: float, dry_run: bool) -> None:
    """Remove blobs no logged response refers to, and leftover temporary files of killed writers."""
    from ..tasks import get_store

    store = get_store()
    done = store.gc(grace_s=grace, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {done['blobs']} unreferenced blobs and {done['tmp']} temporary files "
               f"({done['bytes']} bytes) from {store.blobs.root}"
               + (f"; kept {done['kept_young']} younger than {grace:g} s" if done["kept_young"] else ""))
