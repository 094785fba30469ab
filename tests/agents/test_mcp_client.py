"""imagine's MCP client against a server written with the official SDK alone (tests/helpers/mcp_sdk_server.py,
launched over stdio as a subprocess): its tools become imagine Tools, images and audio come back as parts,
an error result becomes an error the agent can hand to the model."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mcp")

from mcp import types as mt  # noqa: E402

from imagine.agents.mcp_client import McpClient, McpToolError, ServerSpec, connect_sync, mcp_tools  # noqa: E402
from imagine.errors import InputError, UpstreamError  # noqa: E402
from imagine.parts import Audio, Image  # noqa: E402
from imagine.tools import check_arguments  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SDK_SERVER = [sys.executable, str(ROOT / "tests" / "helpers" / "mcp_sdk_server.py")]
pytestmark = pytest.mark.timeout(120)


async def test_sdk_server_tools_become_imagine_tools() -> None:
    async with mcp_tools(SDK_SERVER) as tools:
        by_name = {t.name: t for t in tools}
        assert set(by_name) == {"add", "square", "beep", "explode"}
        add = by_name["add"]
        assert add.description == "Add two whole numbers."
        assert add.parameters["required"] == ["a", "b"]
        # marks: read-only tools run without asking; the rest may change things; stdio stays on the device
        assert not add.side_effects and not by_name["square"].side_effects
        assert by_name["beep"].side_effects and by_name["explode"].side_effects
        assert not any(t.sends_data for t in tools)

        assert await add.fn(**check_arguments(add, {"a": 2, "b": 40})) == "42"
        with pytest.raises(InputError, match="b"):
            check_arguments(add, {"a": 2})  # the schema the server gave is enforced before any call

        square = await by_name["square"].fn(colour="blue", size=24)
        assert isinstance(square, Image) and square.mime == "image/png"
        assert square.size == (24, 24) and square.pil().convert("RGB").getpixel((3, 3)) == (0, 0, 255)

        beep = await by_name["beep"].fn(seconds=0.25)
        assert isinstance(beep, Audio) and beep.mime in ("audio/wav", "audio/x-wav")
        assert beep.duration == pytest.approx(0.25, abs=0.02)

        with pytest.raises(McpToolError, match="exploded: on purpose"):
            await by_name["explode"].fn(reason="on purpose")
        # the session survives a failed call
        assert await add.fn(a=1, b=1) == "2"


async def test_prefix_and_overridden_marks() -> None:
    async with McpClient(SDK_SERVER, prefix="sdk_", side_effects=False) as client:
        names = {t.name for t in client.tools}
        assert names == {"sdk_add", "sdk_square", "sdk_beep", "sdk_explode"}
        assert not any(t.side_effects for t in client.tools)
        add = next(t for t in client.tools if t.name == "sdk_add")
        assert await add.fn(a=3, b=4) == "7"  # the server is still asked for `add`


def test_sync_client_and_calls_from_another_loop() -> None:
    with connect_sync(SDK_SERVER) as client:
        assert client.server_name == "sdk-test-server"
        assert client.call_sync("add", {"a": 5, "b": 6}) == "11"
        add = next(t for t in client.tools if t.name == "add")
        # the session lives on imagine's background loop; a tool called from a fresh loop still works
        assert asyncio.run(add.fn(a=20, b=22)) == "42"
    with pytest.raises(UpstreamError, match="not connected"):
        client.call_sync("add", {"a": 1, "b": 2})


async def test_a_server_that_is_not_there_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UpstreamError, match="could not connect to MCP server"):
        async with mcp_tools([sys.executable, "-c", "import sys; sys.exit(3)"], connect_timeout=30):
            pass
    with pytest.raises(UpstreamError, match="could not connect"):
        async with mcp_tools(str(tmp_path / "no-such-server")):
            pass


def test_spec_parsing_and_what_counts_as_off_device() -> None:
    assert ServerSpec.parse("python my_server.py --flag 'a b'").command == ("python", "my_server.py", "--flag",
                                                                             "a b")
    assert ServerSpec.parse("https://tools.example.com/mcp").remote
    for local in ("http://127.0.0.1:8765/mcp", "http://localhost:1/mcp", "http://[::1]:9/mcp"):
        assert not ServerSpec.parse(local).remote, local
    assert not ServerSpec.parse("python server.py").remote
    with pytest.raises(InputError):
        ServerSpec.parse("   ")

    listed = mt.Tool(name="lookup", description="Look a word up.", input_schema={"type": "object"},
                     annotations=mt.ToolAnnotations(read_only_hint=True))
    assert McpClient("https://tools.example.com/mcp")._tool(listed).sends_data  # local_only refuses it
    assert not McpClient("http://127.0.0.1:8765/mcp")._tool(listed).sends_data
    open_world = listed.model_copy(update={"annotations": mt.ToolAnnotations(open_world_hint=True)})
    tool = McpClient("python server.py")._tool(open_world)
    assert tool.sends_data and tool.side_effects  # says it reaches the world; not read-only


def _imagine(*args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, "IMAGINE_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "imagine", "mcp", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=90)


def test_cli_lists_and_calls_tools(tmp_path: Path, imagine_home: Path) -> None:
    server = " ".join(SDK_SERVER)
    listed = _imagine("tools", server, cwd=tmp_path, home=imagine_home)
    assert listed.returncode == 0, listed.stderr
    assert "add(a b)" in listed.stdout and "beep([seconds])  [side effects]" in listed.stdout
    as_json = json.loads(_imagine("tools", server, "--json", cwd=tmp_path, home=imagine_home).stdout)
    assert {t["name"] for t in as_json} == {"add", "square", "beep", "explode"}

    added = _imagine("call", server, "add", "--args", '{"a": 2, "b": 3}', cwd=tmp_path, home=imagine_home)
    assert added.returncode == 0 and added.stdout.strip() == "5"

    drawn = _imagine("call", server, "square", "--args", '{"colour": "red"}', "-O", "out/red.png", cwd=tmp_path,
                     home=imagine_home)
    assert drawn.returncode == 0, drawn.stderr
    from PIL import Image as PILImage

    assert PILImage.open(io.BytesIO((tmp_path / "out" / "red.png").read_bytes())).getpixel((1, 1))[:3] == (255, 0, 0)

    failed = _imagine("call", server, "explode", "--args", '{"reason": "nope"}', cwd=tmp_path, home=imagine_home)
    assert failed.returncode == 4
    last = failed.stderr.splitlines()[-1]
    assert last.startswith("error: MCP tool 'explode' failed:") and last.endswith("exploded: nope")
    missing = _imagine("call", server, "paint", cwd=tmp_path, home=imagine_home)
    assert missing.returncode == 2 and "no tool named 'paint'" in missing.stderr


@pytest.mark.llm
async def test_bundled_model_calls_a_tool_of_an_sdk_server() -> None:
    """The bundled SmolLM2 is offered an MCP tool like any other; its call runs on the SDK server and the
    result goes back to it as a tool turn. (The agent loop does this for every step.)"""
    pytest.importorskip("llama_cpp", reason="needs the llama extra: pip install -e '.[llama]'")
    import imagine
    from imagine import Message

    greedy = dict(temperature=0, seed=42, max_tokens=120)
    async with mcp_tools(SDK_SERVER) as tools:
        add = next(t for t in tools if t.name == "add")
        prompt = "What is 1234 plus 4321? Use the add tool."
        first = await imagine.aask(prompt, tools=[add], tool_choice="add", **greedy)
        (call,) = first.tool_calls
        args = check_arguments(add, call.arguments)
        assert sorted([args["a"], args["b"]]) == [1234, 4321]
        result = await add.fn(**args)
        assert result == "5555"
        history = [Message.user(prompt), first.as_message(), Message.tool_result(call.id, result, name="add")]
        answer = await imagine.aask(history, tools=[add], **greedy)
        # the engine takes the MCP result as the tool turn and answers in text (a 135M model's answer is not
        # reliably the sum: seen "1234 + 4321"), without calling the tool again
        assert answer.tool_calls == [] and answer.text().strip()
