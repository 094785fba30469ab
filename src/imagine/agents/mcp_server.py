"""imagine's tasks as MCP tools, served over stdio or streamable HTTP (`imagine mcp serve`).

Any MCP client (an IDE, a desktop assistant, another agent) can then read text in a picture, transcribe,
speak, embed, answer or pull a frame from a video with imagine's local models. Results go back as MCP
content of their own kind: text as text, images and audio as base64 image/audio content with their mime
type, so a client that shows pictures or plays sound gets them as such.

The server is the SDK's low-level `Server` over a list of imagine `Tool`s: `serve_stdio(tools)` and
`http_app(tools)` take any list, so the tool set is one function (`task_tools`) that can become the agent
loop's built-in tools when those land. Media inputs are a file path or a `data:` URL; `files` limits the
folders a path may be in (an HTTP server reads only below them). A server bound beyond loopback is the
CLI's business to refuse without API keys; here `http_app(check_key=...)` demands a key on every request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import inspect
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Sequence
from urllib.parse import unquote_to_bytes

from ..errors import ImagineError, InputError
from ..parts import Audio, Data, Image, Part, Segments, Text, Vector, Video, load_part
from ..tools import Tool, check_arguments
from .mcp_client import _require_mcp

if TYPE_CHECKING:
    from mcp.server.lowlevel import Server

__all__ = ["build_server", "http_app", "serve_http", "serve_stdio", "task_tools", "to_content"]

SERVER_NAME = "imagine"
INSTRUCTIONS = ("imagine's multimodal tasks on local models: read text in images, transcribe speech, speak "
                "text, embed texts, answer prompts, take a frame from a video. Media inputs are a file path "
                "on the server's machine or a data: URL.")


# -- inputs ---------------------------------------------------------------------------------------------
def load_input(source: str, kinds: tuple[type[Part], ...], what: str,
               files: Sequence[Path] | None) -> Part:
    """A media argument as a part: a `data:` URL, or a file path inside `files` (None: any path)."""
    from ..client import default_client

    limits = default_client().settings.part_limits()
    if not isinstance(source, str) or not source.strip():
        raise InputError(f"{what}: give a file path or a data: URL")
    if source.startswith("data:"):
        header, comma, body = source.partition(",")
        if not comma:
            raise InputError(f"{what}: a data: URL needs a comma before its data")
        try:
            data = base64.b64decode(body, validate=True) if header.endswith(";base64") else unquote_to_bytes(body)
        except (binascii.Error, ValueError):
            raise InputError(f"{what}: the data: URL is not valid base64") from None
        part = load_part(data, limits=limits)
    elif source[:8].lower().startswith(("http://", "https://")):
        raise InputError(f"{what}: this server does not fetch URLs", hint="send a data: URL instead")
    else:
        path = Path(source).expanduser()
        if files is not None:
            real = path.resolve()
            if not any(real.is_relative_to(Path(root).resolve()) for root in files):
                raise InputError(f"{what}: {source} is outside the folders this server may read",
                                 hint="send a data: URL, or start the server with --files FOLDER")
        part = load_part(path, limits=limits)
    if not isinstance(part, kinds):
        wanted = " or ".join(k.modality.value for k in kinds)
        raise InputError(f"{what} needs {wanted}, got {part.modality.value}")
    return part


def _media_param(what: str) -> dict[str, Any]:
    return {"type": "string", "description": f"the {what}: a file path on the server's machine, or a data: URL"}


# -- the tools --------------------------------------------------------------------------------------------
def task_tools(files: Sequence[Path] | None = None) -> list[Tool]:
    """The tools `imagine mcp serve` offers, each a thin call of one imagine task on its default model.

    A minimal set written here; the agent loop's built-in tools can replace it once they exist."""
    from .. import tasks

    async def read_text(image: str) -> str:
        part = load_input(image, (Image,), "image", files)
        return (await tasks.read_text(part)).text()

    async def transcribe(audio: str) -> str:
        part = load_input(audio, (Audio, Video), "audio", files)
        return (await tasks.transcribe(part)).text()

    async def speak(text: str, voice: str | None = None) -> Part:
        parts = (await (tasks.speak(text, voice=voice) if voice else tasks.speak(text))).parts
        return next(p for p in parts if isinstance(p, Audio))

    async def embed(texts: list[str]) -> str:
        parts = (await tasks.embed(list(texts))).parts
        return json.dumps([list(p.values) for p in parts if isinstance(p, Vector)])

    async def ask(prompt: str) -> str:
        return (await tasks.ask(prompt)).text()

    async def frame(video: str, seconds: float = 0.0) -> Part:
        part = load_input(video, (Video,), "video", files)
        assert isinstance(part, Video)
        return await asyncio.to_thread(_frame_at, part, float(seconds))

    def spec(fn: Callable[..., Any], description: str, properties: dict[str, Any],
             required: Sequence[str], timeout: float = 300.0) -> Tool:
        schema = {"type": "object", "properties": properties, "required": list(required),
                  "additionalProperties": False}
        return Tool(fn.__name__, description, schema, fn=fn, timeout=timeout)

    text = {"type": "string"}
    return [
        spec(read_text, "Read the text in an image (OCR), in reading order.", {"image": _media_param("image")},
             ["image"]),
        spec(transcribe, "Transcribe the speech in an audio or video file.", {"audio": _media_param("audio")},
             ["audio"]),
        spec(speak, "Speak text aloud: returns the speech as WAV audio.",
             {"text": {**text, "description": "what to say"},
              "voice": {**text, "description": "a voice name of the speech engine (optional)"}}, ["text"]),
        spec(embed, "Embed texts as vectors (a JSON list, one vector per text, in order).",
             {"texts": {"type": "array", "items": text, "minItems": 1}}, ["texts"]),
        spec(ask, "Ask imagine's default language model; returns its answer.",
             {"prompt": {**text, "description": "the question or instruction"}}, ["prompt"]),
        spec(frame, "Take one frame of a video as a PNG image (the first frame at or after `seconds`).",
             {"video": _media_param("video"),
              "seconds": {"type": "number", "minimum": 0, "default": 0, "description": "when, from the start"}},
             ["video"]),
    ]


def _frame_at(video: Video, seconds: float) -> Image:
    import io

    from ..media.decode import iter_frames

    chosen = None
    for when, picture in iter_frames(video.data, every=0.0, name=video.name or "video"):
        chosen = picture
        if when + 1e-6 >= seconds:
            break
    if chosen is None:
        raise InputError("the video has no frames")
    buffer = io.BytesIO()
    chosen.save(buffer, format="PNG")
    return Image(buffer.getvalue(), mime="image/png")


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


async def run_tool(tool: Tool, arguments: dict[str, Any]) -> Any:
    """Run a tool's function (async or not: a sync one runs on a thread), awaiting what it returns."""
    if tool.fn is None:
        raise InputError(f"tool {tool.name!r} has no function to run")
    if inspect.iscoroutinefunction(tool.fn):
        value = await tool.fn(**arguments)
    else:
        value = await asyncio.to_thread(tool.fn, **arguments)
    if inspect.isawaitable(value):
        value = await value
    return value


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
            value = await asyncio.wait_for(run_tool(tool, arguments), tool.timeout)
            return mt.CallToolResult(content=to_content(value))
        except ImagineError as exc:
            return failed(str(exc))
        except asyncio.TimeoutError:
            return failed(f"tool {tool.name!r} took longer than {tool.timeout:g} s")
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
