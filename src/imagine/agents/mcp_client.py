"""Tools from any MCP server, as imagine `Tool`s an agent can run.

A server is named the way people write it: a command line (`python my_server.py`, launched and spoken to
over stdio) or an http(s) URL (streamable HTTP). `McpClient` connects, lists the server's tools and turns
each into a `Tool` whose `fn` calls it on the live session; what comes back becomes imagine parts (text as
str, images as `Image`, audio as `Audio`), so media a tool makes stays media. A result the server marks
`isError` raises `McpToolError`, whose message the agent loop hands back to the model.

The session lives in one task of its own (the SDK's anyio scopes must be entered and left by the same
task), so a client may be opened and closed from different tasks, and a tool may be called from any event
loop: calls from another loop are sent over to the session's. `mcp_tools(spec)` is the one-line form for
the agent loop; `connect_sync(spec)` the form for sync code (the session then lives on imagine's
background loop).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import json
import shlex
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterator, Sequence
from urllib.parse import urlsplit

from ..errors import EngineUnavailable, ImagineError, InputError, UpstreamError
from ..parts import Audio, Image, Part, Text
from ..tools import Tool

if TYPE_CHECKING:
    from mcp import ClientSession
    from mcp import types as mcp_types

__all__ = ["INSTALL_HINT", "McpClient", "McpToolError", "ServerSpec", "connect_sync", "content_parts", "describe",
           "is_loopback_host", "mcp_tools", "result_value", "value_json"]

INSTALL_HINT = "pip install 'imagine[agents]'"


class McpToolError(UpstreamError):
    """An MCP tool answered with an error (`isError`): the message is the server's own words."""


def _require_mcp() -> None:
    try:
        import mcp  # noqa: F401
    except ImportError:
        raise EngineUnavailable("MCP needs the official `mcp` SDK", hint=INSTALL_HINT) from None


def is_loopback_host(host: str) -> bool:
    """True for localhost and loopback addresses: data sent there stays on this machine."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerSpec:
    """Where an MCP server is: a URL (streamable HTTP) or a command line (stdio)."""

    url: str | None = None
    command: tuple[str, ...] = ()

    @classmethod
    def parse(cls, spec: "str | Sequence[str] | ServerSpec") -> "ServerSpec":
        if isinstance(spec, ServerSpec):
            return spec
        if isinstance(spec, str):
            text = spec.strip()
            if text.lower().startswith(("http://", "https://")):
                if not urlsplit(text).hostname:
                    raise InputError(f"MCP server URL {text!r} has no host")
                return cls(url=text)
            words = tuple(shlex.split(text))
        else:
            words = tuple(str(w) for w in spec)
        if not words or not words[0]:
            raise InputError("an MCP server is a command line (`python server.py`) or an http(s) URL",
                             hint="got nothing")
        return cls(command=words)

    @property
    def remote(self) -> bool:
        """A URL off this machine: calling its tools sends data off the device."""
        return self.url is not None and not is_loopback_host(urlsplit(self.url).hostname or "")

    def __str__(self) -> str:
        return self.url or shlex.join(self.command)


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside anyio's exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _media(cls: type[Image] | type[Audio], data: str, mime: str, tool: str) -> Part:
    try:
        return cls(base64.b64decode(data, validate=True), mime=mime)
    except (binascii.Error, ValueError, ImagineError) as exc:
        raise UpstreamError(f"MCP tool {tool!r} sent {cls.__name__.lower()} content imagine cannot read: "
                            f"{exc}") from None


def content_parts(blocks: Sequence[Any], tool: str = "tool") -> list[str | Part]:
    """MCP content blocks as imagine values: text as str, images and audio as parts."""
    out: list[str | Part] = []
    for block in blocks:
        kind = getattr(block, "type", None)
        if kind == "text":
            out.append(block.text)
        elif kind == "image":
            out.append(_media(Image, block.data, block.mime_type, tool))
        elif kind == "audio":
            out.append(_media(Audio, block.data, block.mime_type, tool))
        elif kind == "resource":
            res = block.resource
            mime = getattr(res, "mime_type", None) or ""
            if getattr(res, "text", None) is not None:
                out.append(res.text)
            elif mime.startswith(("image/", "audio/")):
                out.append(_media(Image if mime.startswith("image/") else Audio, res.blob, mime, tool))
            else:
                out.append(f"[resource {res.uri} ({mime or 'binary'}), not shown]")
        elif kind == "resource_link":
            out.append(f"[resource link {block.name}: {block.uri}]")
        else:
            out.append(f"[{kind or 'unknown'} content, not shown]")
    return out


def result_value(result: "mcp_types.CallToolResult", tool: str = "tool") -> Any:
    """A tool result as the value an imagine tool returns: one str when it is all text, one part when it
    is one image or sound, else a list of parts (text as `Text`). An error result raises McpToolError."""
    items = content_parts(result.content, tool)
    if result.is_error:
        message = " ".join(i for i in items if isinstance(i, str)).strip() or "the tool failed"
        raise McpToolError(f"MCP tool {tool!r} failed: {message}")
    if not items:
        return result.structured_content if result.structured_content is not None else ""
    if all(isinstance(i, str) for i in items):
        return "\n".join(i for i in items if isinstance(i, str))
    if len(items) == 1:
        return items[0]
    return [Text(i) if isinstance(i, str) else i for i in items]


class McpClient:
    """One live session with an MCP server; `tools` is what it offers, as imagine Tools.

    `side_effects`: None takes each tool's own `readOnlyHint` (a tool not marked read-only may change
    things, the MCP default, so an agent asks first); True or False overrides it for every tool.
    `prefix` is put before every tool name (two servers may both have a `search`)."""

    def __init__(self, spec: "str | Sequence[str] | ServerSpec", *, env: dict[str, str] | None = None,
                 cwd: str | None = None, timeout: float = 120.0, connect_timeout: float = 60.0,
                 side_effects: bool | None = None, prefix: str = "", headers: dict[str, str] | None = None) -> None:
        self.spec = ServerSpec.parse(spec)
        self.env, self.cwd, self.timeout, self.connect_timeout = env, cwd, timeout, connect_timeout
        self.headers = dict(headers or {})  # HTTP only: e.g. {"Authorization": "Bearer KEY"}
        self.side_effects, self.prefix = side_effects, prefix
        self.tools: list[Tool] = []
        self.server_name = ""
        self._session: ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing: asyncio.Event | None = None

    # -- lifetime ---------------------------------------------------------------------------------
    async def __aenter__(self) -> "McpClient":
        _require_mcp()
        if self._task is not None:
            raise InputError(f"the MCP client for {self.spec} is already open")
        self._loop = asyncio.get_running_loop()
        self._closing = asyncio.Event()
        ready: asyncio.Future[None] = self._loop.create_future()
        self._task = asyncio.create_task(self._hold(ready), name=f"mcp {self.spec}")
        try:
            await asyncio.wait_for(asyncio.shield(ready), self.connect_timeout)
        except BaseException as exc:
            await self._stop()
            if isinstance(exc, asyncio.TimeoutError):
                raise UpstreamError(f"MCP server {self.spec} did not answer within "
                                    f"{self.connect_timeout:g} s") from None
            raise
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._stop()

    async def _stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        assert self._closing is not None
        self._closing.set()
        with suppress(Exception, asyncio.CancelledError):  # a server that already died has nothing to say
            await asyncio.wait_for(task, 10)

    async def _transport(self, stack: AsyncExitStack) -> Any:
        """The (read, write) streams to the server, their closing pushed onto `stack`."""
        if self.spec.url is not None:
            from mcp.client.streamable_http import streamable_http_client
            from mcp.shared._httpx_utils import create_mcp_http_client

            http = await stack.enter_async_context(create_mcp_http_client(headers=self.headers))
            return await stack.enter_async_context(streamable_http_client(self.spec.url, http_client=http))
        from mcp import StdioServerParameters, stdio_client

        command, *args = self.spec.command
        params = StdioServerParameters(command=command, args=args, env=self.env, cwd=self.cwd)
        return await stack.enter_async_context(stdio_client(params))

    async def _hold(self, ready: "asyncio.Future[None]") -> None:
        """Open, list, wait until closed, close: all in this one task."""
        from mcp import ClientSession
        from mcp import types as mcp_types

        try:
            async with AsyncExitStack() as stack:
                read, write = await self._transport(stack)
                session = await stack.enter_async_context(ClientSession(read, write))
                init = await session.initialize()
                self.server_name = init.server_info.name
                listed: list[mcp_types.Tool] = []
                cursor: str | None = None
                while True:
                    page = await session.list_tools(params=mcp_types.PaginatedRequestParams(cursor=cursor)
                                                    if cursor else None)
                    listed += page.tools
                    cursor = page.next_cursor
                    if not cursor:
                        break
                self.tools = [self._tool(t) for t in listed]
                self._session = session
                ready.set_result(None)
                assert self._closing is not None
                await self._closing.wait()
        except asyncio.CancelledError:
            if not ready.done():
                ready.cancel()
            raise
        except BaseException as exc:
            if ready.done():
                raise
            leaf = _leaf(exc)
            if isinstance(leaf, ImagineError):
                ready.set_exception(leaf)
            else:
                ready.set_exception(UpstreamError(f"could not connect to MCP server {self.spec}: "
                                                  f"{type(leaf).__name__}: {leaf}"))
        finally:
            self._session = None

    # -- tools ------------------------------------------------------------------------------------
    def _tool(self, spec: "mcp_types.Tool") -> Tool:
        hints = spec.annotations
        side_effects = self.side_effects
        if side_effects is None:
            side_effects = not (hints is not None and hints.read_only_hint is True)
        open_world = hints is not None and hints.open_world_hint is True
        schema = dict(spec.input_schema or {})
        schema.setdefault("type", "object")
        schema.setdefault("properties", {})
        name = spec.name

        async def call(**arguments: Any) -> Any:
            return await self.call(name, arguments)

        call.__name__ = self.prefix + name
        description = (spec.description or spec.title or name).strip()
        return Tool(self.prefix + name, description, schema, fn=call, side_effects=side_effects,
                    sends_data=self.spec.remote or open_world, timeout=self.timeout)

    async def call(self, name: str, arguments: dict[str, Any] | None = None) -> Any:
        """Call tool `name` (its server-side name) and return its value (see `result_value`)."""
        if self._session is None or self._loop is None:
            raise UpstreamError(f"the MCP server {self.spec} is not connected",
                                hint="open the client with `async with` first")
        if asyncio.get_running_loop() is not self._loop:  # the session's streams belong to its own loop
            future = asyncio.run_coroutine_threadsafe(self._call(name, arguments), self._loop)
            return await asyncio.wrap_future(future)
        return await self._call(name, arguments)

    async def _call(self, name: str, arguments: dict[str, Any] | None) -> Any:
        from mcp import types as mcp_types

        session = self._session
        if session is None:
            raise UpstreamError(f"the MCP server {self.spec} has closed")
        try:
            result = await session.call_tool(name, arguments or {}, read_timeout_seconds=self.timeout)
        except ImagineError:
            raise
        except Exception as exc:  # the SDK's protocol errors (unknown tool, bad arguments, lost server)
            leaf = _leaf(exc)
            raise McpToolError(f"MCP tool {name!r} failed: {getattr(leaf, 'message', None) or leaf}") from None
        if not isinstance(result, mcp_types.CallToolResult):
            raise McpToolError(f"MCP tool {name!r} asked for input imagine cannot give "
                               f"({type(result).__name__})")
        return result_value(result, name)

    def call_sync(self, name: str, arguments: dict[str, Any] | None = None) -> Any:
        """`call` from sync code on another thread than the session's loop (see `connect_sync`)."""
        if self._loop is None or self._session is None:
            raise UpstreamError(f"the MCP server {self.spec} is not connected")
        return asyncio.run_coroutine_threadsafe(self._call(name, arguments), self._loop).result()


@asynccontextmanager
async def mcp_tools(spec: "str | Sequence[str] | ServerSpec", **options: Any) -> AsyncIterator[list[Tool]]:
    """The tools of the MCP server `spec`, callable while the block runs (options: see McpClient)."""
    async with McpClient(spec, **options) as client:
        yield client.tools


@contextmanager
def connect_sync(spec: "str | Sequence[str] | ServerSpec", **options: Any) -> Iterator[McpClient]:
    """An open McpClient for sync code: the session lives on imagine's background loop."""
    from .._bridge import run_sync

    client = McpClient(spec, **options)
    run_sync(client.__aenter__())
    try:
        yield client
    finally:
        run_sync(client.__aexit__(None, None, None))


def describe(tool: Tool) -> dict[str, Any]:
    """A tool as `imagine mcp tools --json` prints it."""
    return {**tool.spec(), "side_effects": tool.side_effects, "sends_data": tool.sends_data}


def value_json(value: Any) -> Any:
    """A tool's value as JSON (media as a short record of what it is)."""
    if isinstance(value, Part):
        return value.text if isinstance(value, Text) else value.to_record()
    if isinstance(value, list):
        return [value_json(v) for v in value]
    try:
        json.dumps(value)
    except TypeError:
        return repr(value)
    return value
