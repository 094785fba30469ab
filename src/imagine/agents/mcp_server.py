"""imagine's tasks as MCP tools, served over stdio or streamable HTTP (`imagine mcp serve`).

Any MCP client (an IDE, a desktop assistant, another agent) can then read text in a picture, transcribe,
speak, embed, answer or pull a frame from a video with imagine's local models. Results go back as MCP
content of their own kind: text as text, images and audio as base64 image/audio content with their mime
type, so a client that shows pictures or plays sound gets them as such.

The server is the SDK's low-level `Server` over a list of imagine `Tool`s: `serve_stdio(tools)` and
`http_app(tools)` take any list. The tools themselves are the agent loop's built-ins (`builtin.py`), so
a task has one implementation whether a model or an MCP client calls it. Media inputs are a file path
or a `data:` URL; `files` limits the folders a path may be in (an HTTP server reads only below them). A server bound beyond loopback is the
CLI's business to refuse without API keys; here `http_app(check_key=...)` demands a key on every request.
"""

from __future__ import annotations

import base64
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Sequence

from ..errors import ImagineError
from ..parts import Audio, Data, Image, Part, Segments, Text, Vector, Video
from ..tools import Tool, as_tool, check_arguments
from .mcp_client import _require_mcp
from .safety import run_tool

if TYPE_CHECKING:
    from mcp.server.lowlevel import Server

    from ..client import Client

__all__ = ["MCP_TOOLS", "build_server", "http_app", "serve_http", "serve_stdio", "task_tools", "to_content"]

SERVER_NAME = "imagine"
INSTRUCTIONS = ("imagine's multimodal tasks on local models: read text in images, transcribe speech, see "
                "and watch, take a frame from a video, speak, draw, embed and compare texts, search an index, "
                "read files, answer prompts. Media inputs are a file path on the server's machine or a "
                "data: URL.")


# -- the tools --------------------------------------------------------------------------------------------
# The agent's built-in tools that `imagine mcp serve` offers (fetch is left out: a server on this machine
# should not become a way to make it request URLs for whoever connects).
MCP_TOOLS = ("read_text", "transcribe", "see", "watch", "frame", "speak", "draw", "embed", "search", "read_file")


def task_tools(files: Sequence[Path] | None = None, client: "Client | None" = None) -> list[Tool]:
    """The tools `imagine mcp serve` offers: the agent loop's built-in tools (`builtin.Workspace`, one
    implementation for both), plus `ask` (an answer from imagine's default model).

    Media arguments are a file path or a `data:` URL; `files` are the folders a path may be in (None:
    anywhere, which is what a local stdio client launching the server as its own user already has)."""
    from .. import tasks
    from ..client import default_client
    from .builtin import Workspace

    client = client or default_client()
    # None: the current folder first (a relative path is taken there), then the whole file system
    folders = list(files) if files is not None else [Path.cwd(), Path(Path.cwd().anchor)]
    workspace = Workspace(client, allow_dirs=folders, folder_hint="send a data: URL, or start the server "
                                                                  "with --files FOLDER")

    async def ask(prompt: str) -> str:
        """Ask imagine's default language model; returns its answer."""
        return (await tasks.ask(prompt, client=client)).text()

    return [workspace.tool(name) for name in MCP_TOOLS] + [replace(as_tool(ask), timeout=300.0)]


# -- results as MCP content -------------------------------------------------------------------------------
def to_content(value: Any) -> list[Any]:
    """A tool's value as MCP content blocks: text, image and audio content; anything else as JSON text."""
    from mcp import types as mt

    from ..engine import Response

    if value is None:
        return []
    if isinstance(value, Response):
        text = value.text()
        return ([mt.TextContent(type="text", text=text)] if text else []) + to_content(value.parts)
    if isinstance(value, dict):
        return _dict_content(value)
    if isinstance(value, (list, tuple)):
        return [block for item in value for block in to_content(item)]
    if isinstance(value, str):
        return [mt.TextContent(type="text", text=value)]
    if isinstance(value, Text):
        return [mt.TextContent(type="text", text=value.text)]
    if isinstance(value, (Image, Audio)):
        data = base64.b64encode(value.data).decode("ascii")
        if isinstance(value, Image):
            return [mt.ImageContent(type="image", data=data, mime_type=value.mime)]
        return [mt.AudioContent(type="audio", data=data, mime_type=value.mime)]
    if isinstance(value, Video):
        blob = mt.BlobResourceContents(uri=f"imagine://blob/{value.sha256}", mime_type=value.mime,
                                       blob=base64.b64encode(value.data).decode("ascii"))
        return [mt.EmbeddedResource(type="resource", resource=blob)]
    if isinstance(value, Vector):
        value = list(value.values)
    elif isinstance(value, Data):
        value = value.value
    elif isinstance(value, Segments):
        value = [{"start": s.start, "end": s.end, "text": s.text} for s in value.items]
    elif isinstance(value, Part):
        value = value.to_record()
    return [mt.TextContent(type="text", text=json.dumps(value, default=str))]


def _dict_content(value: dict[str, Any]) -> list[Any]:
    """A built-in tool's result (`{"text": ...}`, `{"audio": Audio, "seconds": 2.1}`): each image, audio or
    video as its own content block, the rest as one text block: the string itself when only one string is
    left, else JSON (vectors as lists of numbers)."""
    from mcp import types as mt

    media = [v for v in value.values() if isinstance(v, (Image, Audio, Video))]
    rest = {k: v for k, v in value.items() if not isinstance(v, (Image, Audio, Video))}
    blocks = [block for part in media for block in to_content(part)]
    if len(rest) == 1 and isinstance(next(iter(rest.values())), str):
        return [mt.TextContent(type="text", text=next(iter(rest.values())))] + blocks
    if rest:
        plain = {k: list(v.values) if isinstance(v, Vector) else v for k, v in rest.items()}
        blocks.insert(0, mt.TextContent(type="text", text=json.dumps(plain, default=str)))
    return blocks


def build_server(tools: Sequence[Tool]) -> "Server[Any]":
    """The SDK's low-level server over `tools`: lists them, runs them, answers errors as `isError` results
    (the message a model can act on), never as a dropped connection."""
    _require_mcp()
    from importlib.metadata import version

    from mcp import types as mt
    from mcp.server.lowlevel import Server

    by_name = {t.name: t for t in tools}

    def listed(tool: Tool) -> "mt.Tool":
        hints = mt.ToolAnnotations(read_only_hint=not tool.side_effects, open_world_hint=tool.sends_data)
        return mt.Tool(name=tool.name, description=tool.description, input_schema=tool.parameters,
                       annotations=hints)

    def failed(message: str) -> "mt.CallToolResult":
        return mt.CallToolResult(content=[mt.TextContent(type="text", text=message)], is_error=True)

    async def on_list_tools(ctx: Any, params: Any) -> "mt.ListToolsResult":
        return mt.ListToolsResult(tools=[listed(t) for t in tools])

    async def on_call_tool(ctx: Any, params: "mt.CallToolRequestParams") -> "mt.CallToolResult":
        tool = by_name.get(params.name)
        if tool is None:
            return failed(f"no tool named {params.name!r}; this server has {', '.join(sorted(by_name))}")
        try:
            arguments = check_arguments(tool, params.arguments or {})
            value = await run_tool(tool, arguments)  # within the tool's timeout (ToolTimeout past it)
            return mt.CallToolResult(content=to_content(value))
        except ImagineError as exc:
            return failed(str(exc))
        except Exception as exc:  # a bug in a tool: say what, keep serving
            print(f"imagine mcp: tool {tool.name!r} raised {type(exc).__name__}: {exc}", file=sys.stderr)
            return failed(f"tool {tool.name!r} failed: {type(exc).__name__}: {exc}")

    return Server(SERVER_NAME, version=version("imagine"), instructions=INSTRUCTIONS,
                  on_list_tools=on_list_tools, on_call_tool=on_call_tool)


async def serve_stdio(tools: Sequence[Tool]) -> None:
    """Serve over this process's stdin/stdout until the client closes them."""
    from mcp.server.stdio import stdio_server

    server = build_server(tools)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


ASGIApp = Callable[[dict[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
                   Awaitable[None]]


def http_app(tools: Sequence[Tool], *, host: str = "127.0.0.1",
             check_key: Callable[[str | None], bool] | None = None) -> ASGIApp:
    """The streamable HTTP app at /mcp. With `check_key`, a request without a key it accepts
    (`Authorization: Bearer KEY`) gets 401 before it reaches the MCP session."""
    app = build_server(tools).streamable_http_app(host=host)
    if check_key is None:
        return app  # type: ignore[no-any-return]

    async def guarded(scope: dict[str, Any], receive: Callable[[], Awaitable[Any]],
                      send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            scheme, _, presented = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not check_key(presented.strip() or None):
                body = json.dumps({"error": "a valid API key is needed (Authorization: Bearer KEY)"}).encode()
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"www-authenticate", b"Bearer")]})
                await send({"type": "http.response.body", "body": body})
                return
        await app(scope, receive, send)

    return guarded


def serve_http(tools: Sequence[Tool], *, host: str = "127.0.0.1", port: int = 8765,
               check_key: Callable[[str | None], bool] | None = None, log_level: str = "warning") -> None:
    """Serve streamable HTTP at http://HOST:PORT/mcp until interrupted."""
    import uvicorn

    app = http_app(tools, host=host, check_key=check_key)
    shown = f"[{host}]" if ":" in host else host
    print(f"imagine MCP server on http://{shown}:{port}/mcp", file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
