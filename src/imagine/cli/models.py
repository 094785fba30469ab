"""`imagine models`: the engines, what they take and give, whether they run here; one engine in full."""

from __future__ import annotations

import json
from typing import Any

import click

__all__ = ["models"]


@click.command()
@click.argument("engine_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--refresh", is_flag=True, help="With ENGINE: fetch the provider's model list again now.")
def models(engine_id: str | None, as_json: bool, refresh: bool) -> None:
    """List engines: local or cloud, what they take and give, and whether they can run here.
    `imagine models ENGINE` shows one in full: why it is local or cloud, its models and options."""
    from ..registry import get_registry

    registry = get_registry()
    infos = registry.infos()
    if engine_id is not None:
        _print_engine(registry, engine_id, as_json, refresh)
        return
    if as_json:
        click.echo(json.dumps([{**info.__dict__, "status": info.status} for info in infos], indent=2))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    wide = console.width >= 110  # the default model gets a column only where rows stay on one or two lines
    table = Table(title="imagine engines", caption="imagine models ENGINE: details, models, options")
    table.add_column("engine", no_wrap=True)
    table.add_column("where", no_wrap=True)
    table.add_column("takes → gives")
    if wide:
        table.add_column("default model", overflow="ellipsis", no_wrap=True, max_width=28)
    table.add_column("status", overflow="ellipsis", no_wrap=True, max_width=26)
    assumed = False
    for info in infos:
        status = "[green]ready[/]" if info.unavailable is None else f"[yellow]{escape(info.status)}[/]"
        where = info.locality
        if info.locality_reason.startswith("assumed"):
            where, assumed = where + "*", True
        takes = "any" if len(info.inputs) >= 6 else " ".join(info.inputs)
        cells = [info.id, where, f"{takes} → {' '.join(info.outputs)}"]
        table.add_row(*cells, *([info.default_model or "-"] if wide else []), status)
    if assumed:
        table.caption = "* local because its URL is on this machine; " + str(table.caption)
    console.print(table)


def _print_engine(registry: Any, engine_id: str, as_json: bool, refresh: bool = False) -> None:
    """`imagine models ENGINE`: everything `imagine models` shortens."""
    info = next((i for i in registry.infos() if i.id == engine_id), None)
    if info is None:
        raise registry._not_found(engine_id)
    cls = registry.engine_class(engine_id) if info.locality != "?" else None
    options = getattr(cls, "Options", None)
    fields = getattr(options, "model_fields", {}) if options is not None else {}
    option_rows = [(name, (field.description or "").split(";")[0],
                    "-" if field.default is None or field.default_factory is not None else repr(field.default))
                   for name, field in fields.items()]
    names: list[str] = []
    listed: list[str] | None = None
    listing_error = ""
    if cls is not None and info.unavailable is None:
        engine = registry.engine(engine_id)
        if hasattr(engine, "remote_models"):  # an API: what the provider itself lists (cached for a day)
            from .._bridge import run_sync
            from ..errors import ImagineError

            try:
                listed = run_sync(engine.remote_models(refresh=refresh))
            except ImagineError as exc:
                listing_error = str(exc)
        names = engine.models()
    if as_json:
        click.echo(json.dumps({**info.__dict__, "status": info.status, "models": names, "provider_models": listed,
                               "options": [dict(name=n, description=d, default=v) for n, d, v in option_rows]},
                              indent=2))
        return
    click.echo(f"{info.id}: {info.description}")
    click.echo(f"where:          {info.locality}" + (f" ({info.locality_reason})" if info.locality_reason else ""))
    click.echo(f"takes:          {', '.join(info.inputs) or '-'}")
    click.echo(f"gives:          {', '.join(info.outputs) or '-'}")
    click.echo(f"features:       {', '.join(info.features) or '-'}")
    click.echo(f"default model:  {info.default_model or '(none: name one, -m ' + info.id + ':MODEL)'}")
    if len(names) > 1:
        click.echo(f"models:         {', '.join(names)}")
    if listed is not None:
        click.echo(f"provider lists: {len(listed)} models ({', '.join(listed[:12])}{', …' if len(listed) > 12 else ''})")
    elif listing_error:
        click.echo(f"provider lists: (could not fetch: {listing_error})")
    click.echo(f"status:         {'ready' if info.unavailable is None else info.unavailable}")
    if option_rows:
        click.echo("options (-o key=value):")
        width = max(len(n) for n, _, _ in option_rows)
        for name, description, default in option_rows:
            click.echo(f"  {name:<{width}}  {description}" + (f" (default {default})" if default != "-" else ""))
