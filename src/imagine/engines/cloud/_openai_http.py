"""The openai engine's one HTTP exchange: POST a streamed chat completion, yield each SSE event's JSON.

It goes through the SDK client's own headers, base URL, timeout and error classes, so failures raise
exactly what `chat.completions.create` would (status errors, timeouts, connection errors, an `error`
event) and the engine maps them the same way. The stream is read here, each event parsed once with the
stdlib json, instead of the SDK building pydantic objects for every chunk.

Plain-http endpoints (the local serving box a gateway relays to) go over the lean client in _http.py,
which costs a fraction of httpx's CPU per request; https, proxies, cookies, event hooks and redirects
keep the SDK's httpx2 stack.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, NamedTuple

from ._http import HttpFailure, HttpTimeout, Pool, Reply

if TYPE_CHECKING:
    import openai

__all__ = ["chunks", "close_client"]

_REDIRECTS = {301, 302, 303, 307, 308}


class _Prepared(NamedTuple):
    """A chat completion request's URL, merged headers and timeout extension, worked out once per client
    and timeout; with `pool` and `head` (the request line and headers, up to Content-Length) where the
    lean client may carry it."""

    url: Any
    headers: Any
    timeout: dict[str, Any]
    pool: Pool | None
    head: bytes


def _headers(client: openai.AsyncOpenAI) -> dict[str, str]:
    """The headers the SDK would send (key, user agent, organization...), worked out once per client."""
    headers: dict[str, str] | None = getattr(client, "_imagine_headers", None)
    if headers is None:
        import openai

        headers = {name: value for name, value in {**client.auth_headers, **client.default_headers}.items()
                   if not isinstance(value, openai.Omit)}
        headers["X-Stainless-Retry-Count"] = "0"
        client._imagine_headers = headers  # type: ignore[attr-defined]
    return headers


def _plain_http_pool(client: openai.AsyncOpenAI, http: Any, url: Any) -> Pool | None:
    """The lean client's pool for this client's plain-http endpoint, or None where httpx2 must carry the
    request: https, a proxy or other mounted transport, custom connection settings, event hooks, auth."""
    import httpx2

    transport = http._transport
    pool = getattr(transport, "_pool", None)
    if (url.scheme != "http" or http._mounts or type(transport) is not httpx2.AsyncHTTPTransport or pool is None
            or getattr(pool, "_proxy", None) is not None or getattr(pool, "_uds", None) is not None
            or getattr(pool, "_local_address", None) is not None or getattr(pool, "_socket_options", None)
            or any(http._event_hooks.values()) or http.auth is not None):
        return None
    pools: dict[tuple[str, int], Pool] = client.__dict__.setdefault("_imagine_pools", {})
    key = (url.host, url.port or 80)
    if key not in pools:
        pools[key] = Pool(url.host, url.port or 80, keepalive_expiry=getattr(pool, "_keepalive_expiry", None) or 5.0)
    return pools[key]


def _prepared(client: openai.AsyncOpenAI, http: Any, timeout: float) -> _Prepared | None:
    """What `build_request` would merge on every request, worked out once per client and timeout. None
    where the client has cookies or query params to merge: `build_request` does that."""
    if http.cookies or http.params:
        return None
    base = str(client.base_url)
    cache: dict[tuple[str, float], _Prepared] = client.__dict__.setdefault("_imagine_prepared", {})
    found = cache.get((base, timeout))
    if found is None:
        import httpx2

        if len(cache) >= 64:
            cache.clear()
        headers = httpx2.Headers(http._merge_headers({**_headers(client), "X-Stainless-Read-Timeout": f"{timeout:g}"}))
        url = http._merge_url(base + "chat/completions")
        pool = _plain_http_pool(client, http, url)
        lines = [b"POST " + url.raw_path + b" HTTP/1.1", b"Host: " + url.netloc]
        lines += [name + b": " + value for name, value in headers.raw
                  if name.lower() not in (b"host", b"content-length", b"transfer-encoding")]
        head = b"\r\n".join(lines) + b"\r\nContent-Length: "
        found = cache[(base, timeout)] = _Prepared(url, headers, httpx2.Timeout(timeout).as_dict(), pool, head)
    return found


async def chunks(client: openai.AsyncOpenAI, body: dict[str, Any], timeout: float) -> AsyncIterator[dict[str, Any]]:
    """POST a streamed chat completion and yield each SSE event's JSON, raising the SDK's exceptions."""
    import httpx2
    import openai
    from openai._httpx2 import request_exceptions, timeout_exceptions

    http = client._client
    content = json.dumps(body).encode()
    prepared = _prepared(client, http, timeout)
    if prepared is not None and prepared.pool is not None:
        reply = await _lean_send(client, prepared, content, timeout)
        if reply is not None:
            async for event in _lean_events(client, prepared, content, reply):
                yield event
            return
    if prepared is None:
        request = http.build_request("POST", str(client.base_url) + "chat/completions",
                                     headers={**_headers(client), "X-Stainless-Read-Timeout": f"{timeout:g}"},
                                     content=content, timeout=httpx2.Timeout(timeout))
    else:
        request = httpx2.Request("POST", prepared.url, headers=prepared.headers, content=content,
                                 extensions={"timeout": prepared.timeout})
    try:
        response = await http.send(request, stream=True)
    except timeout_exceptions() as exc:
        raise openai.APITimeoutError(request=request) from exc
    except request_exceptions() as exc:
        raise openai.APIConnectionError(request=request) from exc
    try:
        if response.status_code >= 400:
            try:
                await response.aread()
            except request_exceptions():
                pass
            raise client._make_status_error_from_response(response)
        try:
            async for event in _sse(response.aiter_bytes(), lambda: request):
                yield event
        except timeout_exceptions() as exc:
            raise openai.APITimeoutError(request=request) from exc
        except request_exceptions() as exc:
            raise openai.APIConnectionError(request=request) from exc
    finally:
        await response.aclose()


def _request(prepared: _Prepared, content: bytes) -> Any:
    """The httpx2 request the SDK's exceptions carry (made only when one is raised)."""
    import httpx2

    return httpx2.Request("POST", prepared.url, headers=prepared.headers, content=content,
                          extensions={"timeout": prepared.timeout})


async def _lean_send(client: openai.AsyncOpenAI, prepared: _Prepared, content: bytes, timeout: float) -> Reply | None:
    """Send over the lean client; None for a redirect (httpx2 follows it, as the SDK's client does)."""
    import openai

    assert prepared.pool is not None
    try:
        reply = await prepared.pool.send(prepared.head + str(len(content)).encode() + b"\r\n\r\n", content, timeout)
    except HttpTimeout:
        raise openai.APITimeoutError(request=_request(prepared, content)) from None
    except HttpFailure:
        raise openai.APIConnectionError(request=_request(prepared, content)) from None
    if reply.status in _REDIRECTS and reply.header("location"):
        await reply.aclose()
        return None
    return reply


async def _lean_events(client: openai.AsyncOpenAI, prepared: _Prepared, content: bytes,
                       reply: Reply) -> AsyncIterator[dict[str, Any]]:
    import httpx2
    import openai

    try:
        if reply.status >= 400:
            try:
                data = await reply.read()
            except HttpFailure:
                data = b""
            request = _request(prepared, content)
            raise client._make_status_error_from_response(
                httpx2.Response(reply.status, headers=reply.headers, content=data, request=request))
        try:
            async for event in _sse(reply.iter_bytes(), lambda: _request(prepared, content)):
                yield event
        except HttpTimeout:
            raise openai.APITimeoutError(request=_request(prepared, content)) from None
        except HttpFailure:
            raise openai.APIConnectionError(request=_request(prepared, content)) from None
    finally:
        await reply.aclose()


async def _sse(pieces: AsyncIterator[bytes], request: Callable[[], Any]) -> AsyncIterator[dict[str, Any]]:
    """Each SSE event's JSON until [DONE]; the rest of the body is still read, so the connection can be
    reused. An `error` event raises the SDK's APIError."""
    import openai

    data: list[bytes] = []
    pending = b""
    done = False
    async for piece in pieces:
        if done:
            continue  # the rest after [DONE]
        lines = (pending + piece).split(b"\n")
        pending = lines.pop()
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if line.startswith(b"data:"):
                data.append(line[6:] if line[5:6] == b" " else line[5:])
                continue
            if line or not data:
                continue  # event:, id:, retry:, comments; or a blank line with nothing before it
            text, data = b"\n".join(data), []
            if text.startswith(b"[DONE]"):
                done = True
                break
            event = json.loads(text)
            if isinstance(event, dict) and event.get("error"):
                error = event["error"]
                message = error.get("message") if isinstance(error, dict) else None
                raise openai.APIError(message if isinstance(message, str) and message
                                      else "An error occurred during streaming", request(), body=error)
            yield event


async def close_client(client: openai.AsyncOpenAI) -> None:
    """Close the SDK client and the lean client's connections."""
    for pool in client.__dict__.get("_imagine_pools", {}).values():
        pool.close()
    await client.close()
