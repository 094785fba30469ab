"""`imagine mcp serve`, driven by the official MCP SDK's own client (never imagine's): over stdio, launched
as `python -m imagine mcp serve`, and over streamable HTTP on a loopback port. Tools run on the bundled
models (rapidocr, Piper/espeak); images and audio must come back as MCP image/audio content."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
import time
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import pytest

pytest.importorskip("mcp")

from mcp import ClientSession, StdioServerParameters, stdio_client  # noqa: E402
from mcp import types as mt  # noqa: E402

from tests.helpers.corpus import picture  # noqa: E402
from tests.helpers.fake_http import unused_port  # noqa: E402
from tests.helpers.media import make_video, slide  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(240)


def _env(home: Path) -> dict[str, str]:
    return {"IMAGINE_HOME": str(home), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}


@asynccontextmanager
async def sdk_stdio(home: Path, *args: str) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(command=sys.executable, args=["-m", "imagine", "mcp", "serve", *args],
                                   env=_env(home), cwd=str(home.parent))
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


def only(result: Any, kind: type) -> Any:
    assert not result.is_error, result.content
    blocks = [b for b in result.content if isinstance(b, kind)]
    assert len(blocks) == 1, result.content
    return blocks[0]


async def test_sdk_client_lists_and_calls_tools_over_stdio(imagine_home: Path, tmp_path: Path) -> None:
    png = tmp_path / "sign.png"
    png.write_bytes(picture([("INVOICE 4711", (40, 60)), ("Total due: 93 EUR", (40, 160))]))
    video = tmp_path / "clip.mp4"
    video.write_bytes(make_video([(1.0, slide("ONE", (200, 30, 30))), (1.0, slide("TWO", (30, 30, 200)))]))
    async with sdk_stdio(imagine_home) as session:
        listed = (await session.list_tools()).tools
        names = {t.name for t in listed}
        assert {"read_text", "transcribe", "speak", "embed", "ask", "frame", "see", "watch", "search"} <= names
        assert "fetch" not in names  # the server never makes requests for whoever connects
        read_spec = next(t for t in listed if t.name == "read_text")
        assert read_spec.input_schema["required"] == ["image"]
        assert read_spec.annotations is not None and read_spec.annotations.read_only_hint is True

        text = only(await session.call_tool("read_text", {"image": str(png)}), mt.TextContent).text
        assert "INVOICE 4711" in text and "93" in text

        data_url = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()
        assert "INVOICE" in only(await session.call_tool("read_text", {"image": data_url}), mt.TextContent).text

        audio = only(await session.call_tool("speak", {"text": "Hello from imagine."}), mt.AudioContent)
        assert audio.mime_type in ("audio/wav", "audio/x-wav")
        wav = base64.b64decode(audio.data)
        assert wav[:4] == b"RIFF" and len(wav) > 8000  # a real utterance, not an empty header

        # the spoken WAV goes back in through transcribe: speech -> text round trip over MCP
        spoken = "data:audio/wav;base64," + audio.data
        heard = only(await session.call_tool("transcribe", {"audio": spoken}), mt.TextContent).text.lower()
        assert "hello" in heard

        image = only(await session.call_tool("frame", {"video": str(video), "seconds": 1.5}), mt.ImageContent)
        assert image.mime_type == "image/png"
        from PIL import Image as PILImage

        still = PILImage.open(io.BytesIO(base64.b64decode(image.data))).convert("RGB")
        assert still.size == (640, 360)
        r, g, b = still.getpixel((5, 5))
        assert b > 150 and r < 80  # the second (blue) slide, not the first (red)

        import json

        embedded = json.loads(only(await session.call_tool("embed", {"text": "a cat", "compare": ["a kitten",
                                                                                              "tax law"]}),
                                   mt.TextContent).text)
        assert len(embedded["vector"]) == embedded["dimensions"] == 384
        assert embedded["similarity"]["a kitten"] > embedded["similarity"]["tax law"]


async def test_errors_come_back_as_error_results(imagine_home: Path, tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    outside = tmp_path / "outside.png"
    outside.write_bytes(picture([("SECRET", (40, 60))]))
    async with sdk_stdio(imagine_home, "--files", str(allowed)) as session:
        refused = await session.call_tool("read_text", {"image": str(outside)})
        assert refused.is_error and "outside the allowed folders" in refused.content[0].text
        assert "--files FOLDER" in refused.content[0].text
        wrong = await session.call_tool("read_text", {"picture": "x.png"})  # schema: `image` is required
        assert wrong.is_error and "image" in wrong.content[0].text
        unknown = await session.call_tool("paint", {})
        assert unknown.is_error and "no tool named 'paint'" in unknown.content[0].text
        # the session survives its errors
        assert "read_text" in {t.name for t in (await session.list_tools()).tools}


@contextmanager
def http_server(home: Path, folder: Path) -> Iterator[str]:
    """`imagine mcp serve --http` on a free loopback port, as a subprocess; yields its URL."""
    port = unused_port()
    proc = subprocess.Popen([sys.executable, "-m", "imagine", "mcp", "serve", "--http", "--port", str(port),
                             "--files", str(folder)],
                            env={**os.environ, **_env(home)}, cwd=str(folder),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


async def test_streamable_http_on_loopback(imagine_home: Path, tmp_path: Path) -> None:
    from mcp.client.streamable_http import streamable_http_client

    png = tmp_path / "note.png"
    png.write_bytes(picture([("MEETING AT NOON", (40, 60))]))
    with http_server(imagine_home, tmp_path) as url:
        async with streamable_http_client(url) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            assert "read_text" in {t.name for t in (await session.list_tools()).tools}
            text = only(await session.call_tool("read_text", {"image": str(png)}), mt.TextContent).text
            assert "MEETING" in text and "NOON" in text


async def test_http_needs_a_key_once_keys_exist(imagine_home: Path, tmp_path: Path) -> None:
    import json

    import httpx
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    from imagine.agents.mcp_client import mcp_tools

    made = subprocess.run([sys.executable, "-m", "imagine", "keys", "create", "--json"], capture_output=True,
                          text=True, env={**os.environ, **_env(imagine_home)}, timeout=60, check=True)
    key = json.loads(made.stdout)["key"]
    hello = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
             "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                        "clientInfo": {"name": "t", "version": "0"}}}
    with http_server(imagine_home, tmp_path) as url:
        accept = {"Accept": "application/json, text/event-stream"}
        assert httpx.post(url, json=hello, headers=accept).status_code == 401
        assert httpx.post(url, json=hello, headers={**accept, "Authorization": "Bearer imk-wrong"}).status_code == 401
        headers = {"Authorization": f"Bearer {key}"}
        async with create_mcp_http_client(headers=headers) as http, \
                streamable_http_client(url, http_client=http) as (read, write), \
                ClientSession(read, write) as session:
            await session.initialize()
            assert "speak" in {t.name for t in (await session.list_tools()).tools}
        async with mcp_tools(url, headers=headers) as tools:  # imagine's client passes the key too
            assert not any(t.sends_data for t in tools)  # loopback: data stays on the device
            assert "read_text" in {t.name for t in tools}


def _wait_for_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    import socket

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError("the MCP HTTP server did not start listening")


def test_public_bind_refused_without_keys(imagine_home: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "imagine", "mcp", "serve", "--http", "--host", "0.0.0.0",
                           "--port", str(unused_port())], env={**os.environ, **_env(imagine_home)},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "refusing to serve on 0.0.0.0 without API keys" in lines[0]
