"""`imagine mcp`: serve imagine's tasks to MCP clients, and try any MCP server's tools from the shell.

`serve` runs the MCP server (stdio by default, the way MCP clients launch servers; `--http` for streamable
HTTP on loopback). `tools` and `call` connect to a server given as a command line or a URL, the same
spec `mcp_tools()` takes in Python. The mcp SDK is imported only when one of them runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ._common import OutPath, output_path
from .app import ImagineGroup

__all__ = ["mcp"]

SERVER = click.argument("server", metavar="SERVER")
HEADER = click.option("-H", "--header", "headers", multiple=True, metavar="'NAME: VALUE'",
                      help="An HTTP header for a URL server, e.g. 'Authorization: Bearer KEY' (repeatable).")


def _headers(pairs: tuple[str, ...]) -> dict[str, str]:
    from ..errors import InputError

    out: dict[str, str] = {}
    for pair in pairs:
        name, colon, value = pair.partition(":")
        if not colon or not name.strip():
            raise InputError(f"--header {pair!r} is not 'NAME: VALUE'")
        out[name.strip()] = value.strip()
    return out


@click.group(cls=ImagineGroup)
def mcp() -> None:
    """MCP both ways: `serve` imagine's tasks as MCP tools; list (`tools`) or `call` any MCP server's tools."""


@mcp.command()
@click.option("--http", "use_http", is_flag=True, help="Serve streamable HTTP at http://HOST:PORT/mcp "
                                                       "instead of stdio.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind (--http). Anything but loopback needs API keys (`imagine keys create`).")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(1, 65535))
@click.option("--files", "folders", multiple=True, type=click.Path(file_okay=False, path_type=Path),
              help="A folder whose files tools may read by path (repeatable). Default: any path over "
                   "stdio, the current folder over HTTP.")
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def serve(use_http: bool, host: str, port: int, folders: tuple[Path, ...], log_level: str) -> None:
    """Serve imagine's tasks as MCP tools: read_text, transcribe, see, watch, frame, speak, draw, embed,
    search, read_file and ask (the agent's built-in tools, but fetch).

    Over stdio an MCP client launches it (`imagine mcp serve` as the server command); with --http it
    listens on HOST:PORT. With API keys in use, every HTTP request needs one (Authorization: Bearer)."""
    import asyncio

    from ..agents.mcp_client import _require_mcp
    from ..agents.mcp_server import serve_http, serve_stdio, task_tools

    _require_mcp()
    if not use_http:
        asyncio.run(serve_stdio(task_tools(list(folders) or None)))
        return
    from ..server.keys import KeyStore
    from ..server.settings import ServerSettings
    from ..tasks import default_client

    keys = KeyStore(default_client().settings.home)
    from ..server.app import check_bind

    check_bind(ServerSettings(host=host, port=port), keys)  # the same refusal as `imagine serve`
    check_key = (lambda presented: keys.check(presented) is not None) if keys.active() else None
    tools = task_tools(list(folders) or [Path.cwd()])
    serve_http(tools, host=host, port=port, check_key=check_key, log_level=log_level)


@mcp.command()
@SERVER
@HEADER
@click.option("--json", "as_json", is_flag=True, help="Print JSON: name, description, parameters, marks.")
def tools(server: str, headers: tuple[str, ...], as_json: bool) -> None:
    """List the tools of an MCP SERVER, with what each takes.

    SERVER is a command line in one argument ('python my_server.py') or an http(s) URL."""
    from ..agents.mcp_client import connect_sync, describe

    with connect_sync(server, headers=_headers(headers)) as client:
        found = client.tools
    if as_json:
        click.echo(json.dumps([describe(t) for t in found], indent=2))
        return
    if not found:
        click.echo(f"{server} offers no tools")
        return
    for tool in found:
        props = tool.parameters.get("properties", {})
        required = set(tool.parameters.get("required", []))
        args = " ".join(name if name in required else f"[{name}]" for name in props)
        marks = ", ".join(m for m, on in (("side effects", tool.side_effects), ("sends data", tool.sends_data))
                          if on)
        click.echo(f"{tool.name}({args}){f'  [{marks}]' if marks else ''}")
        if tool.description:
            click.echo(f"    {tool.description}")


def _write(part: Any, out: str | None, default_name: str) -> Path:
    target = output_path(out, default_name) if out else Path(default_name)
    target.write_bytes(part.data)
    return target


@mcp.command()
@SERVER
@click.argument("tool")
@HEADER
@click.option("--args", "arguments", default="{}", metavar="JSON", help="The tool's arguments, a JSON object.")
@click.option("-O", "--out", type=OutPath(),
              help="Where images and audio the tool returns go (a file, or a folder); default: here.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (media as records).")
def call(server: str, tool: str, headers: tuple[str, ...], arguments: str, out: str | None, as_json: bool) -> None:
    """Call TOOL of an MCP SERVER with --args JSON and print what it returns (media go to files).

    SERVER is a command line in one argument ('python my_server.py') or an http(s) URL."""
    from ..agents.mcp_client import connect_sync, value_json
    from ..errors import InputError
    from ..parts import Part, Text
    from ..tools import check_arguments

    try:
        args = json.loads(arguments)
    except json.JSONDecodeError as exc:
        raise InputError(f"--args is not JSON: {exc.msg} at column {exc.colno}") from None
    with connect_sync(server, headers=_headers(headers)) as client:
        spec = next((t for t in client.tools if t.name == tool), None)
        if spec is None:
            names = ", ".join(t.name for t in client.tools) or "none"
            raise InputError(f"{server} has no tool named {tool!r}", hint=f"its tools: {names}")
        value = client.call_sync(tool, check_arguments(spec, args))
    items = value if isinstance(value, list) else [value]
    media = [p for p in items if isinstance(p, Part) and not isinstance(p, Text)]
    written: list[Path] = []
    for i, part in enumerate(media):
        ext = part.mime.split("/")[-1].split("+")[0].replace("jpeg", "jpg").replace("x-wav", "wav")
        default = f"{tool}{'-' + str(i + 1) if len(media) > 1 else ''}.{ext}"
        written.append(_write(part, out if len(media) == 1 or not out else out.rstrip("/") + "/", default))
    if as_json:
        click.echo(json.dumps({"result": value_json(value), "files": [str(p) for p in written]}))
        return
    for item in items:
        if isinstance(item, Text):
            click.echo(item.text)
        elif isinstance(item, str):
            click.echo(item)
        elif not isinstance(item, Part):
            click.echo(json.dumps(item))
    for path in written:
        click.echo(f"wrote {path}", err=True)
