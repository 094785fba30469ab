"""`imagine serve` (the OpenAI-compatible server) and `imagine keys` (its API keys).

Both import the server package only when they run; `keys` never imports FastAPI."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from ._common import FiniteFloat
from .app import ImagineGroup

__all__ = ["keys", "serve", "studio"]


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything but loopback needs API keys (`imagine keys create`).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes (each loads its own models).")
@click.option("--allow-host", "allowed_hosts", multiple=True, metavar="NAME",
              help="Also answer to this Host header (a DNS name for the server); repeatable.")
@click.option("--cors-origin", "cors_origins", multiple=True, metavar="ORIGIN",
              help="Allow browser calls from this origin (CORS is off otherwise); repeatable.")
@click.option("--max-body-mb", default=64.0, show_default=True, type=FiniteFloat(min=0.001),
              help="Largest request body, in MiB (413 above it).")
@click.option("--max-n", default=8, show_default=True, type=click.IntRange(1, 128), help="Largest `n`.")
@click.option("--max-tokens", default=32768, show_default=True, type=click.IntRange(1), help="Largest max_tokens.")
@click.option("--slots", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Generations each local model runs at once (the rest wait their turn).")
@click.option("--queue", default=32, show_default=True, type=click.IntRange(0),
              help="Requests that may wait for a busy local model; one more gets 429 with Retry-After.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.option("--studio/--no-studio", default=None,
              help="Serve the web studio at /studio (default: when Gradio is installed).")
def serve(host: str, port: int, workers: int, allowed_hosts: tuple[str, ...], cors_origins: tuple[str, ...],
          max_body_mb: float, max_n: int, max_tokens: int, slots: int, queue: int, log_level: str,
          studio: bool | None) -> None:
    """Serve imagine's engines over the OpenAI API (chat completions, models) at http://HOST:PORT/v1."""
    settings = _settings(host, port, allowed_hosts, cors_origins, max_body_mb, max_n, max_tokens, slots, queue)
    _run(settings, workers, log_level, studio=studio)


def _settings(host: str, port: int, allowed_hosts: tuple[str, ...], cors_origins: tuple[str, ...],
              max_body_mb: float, max_n: int, max_tokens: int, slots: int, queue: int) -> Any:
    from ..server.keys import KeyStore
    from ..server.settings import ServerSettings
    from ..tasks import default_client

    settings = ServerSettings(host=host, port=port, allowed_hosts=list(allowed_hosts),
                              cors_origins=list(cors_origins), max_body_bytes=int(max_body_mb * (1 << 20)),
                              max_n=max_n, max_tokens=max_tokens, local_slots=slots, local_queue=queue)
    from ..server.app import check_bind

    check_bind(settings, KeyStore(default_client().settings.home))  # before FastAPI loads: fail fast
    return settings


def _run(settings: Any, workers: int, log_level: str, *, studio: bool | None, on_started: Any = None) -> None:
    from ..studio.mount import gradio_missing

    missing = gradio_missing()
    if studio and missing:
        from ..errors import EngineUnavailable

        raise EngineUnavailable(missing)
    with_studio = studio if studio is not None else missing is None
    from ..server.app import run

    factory = "imagine.studio:app_from_env" if with_studio else "imagine.server.app:app_from_env"
    run(settings, workers=workers, log_level=log_level, factory=factory, on_started=on_started)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything but loopback needs API keys (`imagine keys create`).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--no-browser", is_flag=True, help="Do not open a browser (print the address only).")
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def studio(host: str, port: int, no_browser: bool, log_level: str) -> None:
    """Start the server with the web studio and open it in a browser: chat, compare, tasks, history, flows."""
    settings = _settings(host, port, (), (), 64.0, 8, 32768, 1, 32)
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/studio/"

    def opened() -> None:
        click.echo(f"imagine studio: {url}  (Ctrl-C stops it)", err=True)
        if not no_browser:
            import webbrowser

            webbrowser.open(url)

    _run(settings, 1, log_level, studio=True, on_started=opened)


@click.group(cls=ImagineGroup)
def keys() -> None:
    """API keys for `imagine serve`: stored hashed in the imagine home, each shown once."""


def _store():  # type: ignore[no-untyped-def]
    from ..server.keys import KeyStore
    from ..tasks import default_client

    return KeyStore(default_client().settings.home)


@keys.command("create")
@click.option("--name", default="", help="A label to recognise the key by.")
@click.option("--local-only", is_flag=True, help="Requests with this key never leave the device.")
@click.option("--daily-budget", type=FiniteFloat(min=0), default=None, help="US dollars a day (UTC).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def create(name: str, local_only: bool, daily_budget: float | None, as_json: bool) -> None:
    """Create a key and print it: it is shown this once, and only its hash is kept."""
    key, secret = _store().create(name, local_only=local_only, daily_budget=daily_budget)
    if as_json:
        click.echo(json.dumps({**key.public(), "key": secret}))
        return
    click.echo(secret)
    click.echo(f"{key.id} created; the key above is not stored and cannot be shown again", err=True)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_keys(as_json: bool) -> None:
    """List keys (ids, labels, policies; never the keys themselves)."""
    rows = _store().keys()
    if as_json:
        click.echo(json.dumps([k.public() for k in rows]))
        return
    if not rows:
        click.echo("no API keys (`imagine keys create` makes one)")
        return
    for k in rows:
        policy = ", ".join(p for p in ("local_only" if k.local_only else "",
                                       f"${k.daily_budget:g}/day" if k.daily_budget is not None else "") if p)
        state = f"revoked {time.strftime('%Y-%m-%d', time.localtime(k.revoked))}" if k.revoked else "active"
        click.echo(f"{k.id}  {k.shown:<12} {state:<18} {k.name or '-':<16} {policy}")


@keys.command("revoke")
@click.argument("key_id")
def revoke(key_id: str) -> None:
    """Revoke a key by its id (a running server refuses it from its next request)."""
    key = _store().revoke(key_id)
    click.echo(f"{key.id} revoked")
