"""`imagine engines`: list engines and add or remove configured endpoints in config.toml."""

from __future__ import annotations

import json
import re

import click

__all__ = ["engines"]

KINDS = ("openai", "anthropic", "gemini")


@click.group(invoke_without_command=True)
@click.pass_context
def engines(ctx: click.Context) -> None:
    """Engines and endpoints (`imagine engines add NAME ...` writes an [endpoints.NAME] table)."""
    if ctx.invoked_subcommand is None:
        root = ctx.find_root()  # `models` comes from the root group, which loads it (no import of it here)
        models = root.command.get_command(root, "models") if isinstance(root.command, click.Group) else None
        if models is None:  # this group run on its own, outside `imagine`
            raise click.UsageError("name a subcommand: add or remove", ctx)
        ctx.invoke(models, as_json=False)


@engines.command("add")
@click.argument("name")
@click.option("--kind", type=click.Choice(KINDS), default="openai", show_default=True, help="Wire protocol.")
@click.option("--base-url", help="API base URL (e.g. http://127.0.0.1:11434/v1 for Ollama).")
@click.option("--key-env", help="Environment variable that holds the API key (the key itself is never stored).")
@click.option("--model", "default_model", help="Default model of the endpoint.")
@click.option("--local/--cloud", "local", default=None,
              help="Locality, written to config.toml (default: local for loopback URLs, said so when added).")
def engines_add(name: str, kind: str, base_url: str | None, key_env: str | None, default_model: str | None,
                local: bool | None) -> None:
    """Add an endpoint NAME (then use `-m NAME:MODEL`)."""
    from ..config import get_settings, load_settings, reset_settings
    from ..errors import ConfigError, InputError

    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,40}", name):
        raise InputError(f"endpoint name {name!r} must be lowercase letters, digits, - or _")
    if base_url and not re.match(r"https?://", base_url):
        raise InputError(f"--base-url {base_url!r} must start with http:// or https://")
    if key_env and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key_env):
        raise InputError(f"--key-env {key_env!r} is not an environment variable name")
    settings = get_settings()
    if name in settings.endpoints:
        raise InputError(f"endpoint {name!r} already exists in {settings.config_path}",
                         hint="remove it first: imagine engines remove " + name)
    lines = [f"\n[endpoints.{name}]", f"kind = {json.dumps(kind)}"]
    for key, value in (("base_url", base_url), ("key_env", key_env), ("default_model", default_model)):
        if value:
            lines.append(f"{key} = {json.dumps(value)}")
    # written down either way, so what leaves the device never hangs on a guess made from the URL
    from ..engines.cloud._cloud import is_loopback

    if local is None:
        local = is_loopback(base_url)
        why = (f"its URL is on this machine; if a proxy or tunnel there forwards to a cloud service, "
               "add it again with --cloud" if local else "its URL is not on this machine")
    else:
        why = f"--{'local' if local else 'cloud'}"
    lines.append(f"locality = {json.dumps('local' if local else 'cloud')}")
    path = settings.config_path
    before = path.read_text() if path.exists() else None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text((before or "") + "\n".join(lines) + "\n")
    try:
        load_settings()
    except ConfigError:
        if before is None:
            path.unlink()
        else:
            path.write_text(before)  # leave the file as it was
        raise
    reset_settings()
    click.echo(f"added [endpoints.{name}] to {path}")
    click.echo(f"locality: {'local' if local else 'cloud'} ({why})")
    if key_env:
        click.echo(f"set {key_env} in your environment, then: imagine ask -m {name}:{default_model or 'MODEL'} \"...\"")


@engines.command("remove")
@click.argument("name")
def engines_remove(name: str) -> None:
    """Remove the endpoint NAME from config.toml (added by `engines add`)."""
    from ..config import get_settings
    from ..errors import InputError

    path = get_settings().config_path
    text = path.read_text() if path.exists() else ""
    pattern = re.compile(rf"\n?\[endpoints\.{re.escape(name)}(\.[^\]]*)?\]\n(?:(?!\[).*\n?)*")
    new, count = pattern.subn("", text)
    if not count:
        raise InputError(f"no endpoint {name!r} in {path}")
    path.write_text(new)
    click.echo(f"removed [endpoints.{name}] from {path}")
