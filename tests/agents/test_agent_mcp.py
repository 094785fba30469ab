"""imagine's agent calls the tools of an MCP server written with the SDK alone (stdio, a subprocess)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import imagine
from imagine import Done, Image, ToolCall, Usage
from imagine.agents.loop import ToolStep

pytest.importorskip("mcp", reason="needs the agents extra: pip install -e '.[agents]'")

from imagine.agents.mcp_client import connect_sync  # noqa: E402

SERVER = [sys.executable, str(Path(__file__).parents[1] / "helpers" / "mcp_sdk_server.py")]


def test_the_agent_runs_an_mcp_tool_and_the_model_gets_its_result(model):
    with connect_sync(SERVER) as server:
        model.enqueue([ToolCall("c1", "add", {"a": 1234, "b": 4321}), ToolCall("c2", "square", {"colour": "blue"}),
                       Usage(5, 1), Done("tool_calls")])
        model.enqueue("1234 + 4321 = 5555, and here is a blue square.")
        run = imagine.agent("Add 1234 and 4321, and draw me a blue square.", tools=server.tools, model="mock")
        steps = [s for s in run if isinstance(s, ToolStep)]
    assert {s.name: s.ok for s in steps} == {"add": True, "square": True}
    results = model.requests[1].messages[-1].tool_results
    assert results[0].content == "5555"  # computed by the SDK server, relayed by imagine
    squares = [p for p in run.parts if isinstance(p, Image)]
    assert len(squares) == 1 and squares[0].pil().getpixel((3, 3)) == (0, 0, 255)
    assert run.text().startswith("1234 + 4321 = 5555")


def test_an_mcp_tool_error_goes_back_to_the_model(model):
    with connect_sync(SERVER) as server:
        model.enqueue([ToolCall("c1", "explode", {"reason": "the fuse blew"}), Usage(5, 1), Done("tool_calls")])
        model.enqueue("The tool failed.")
        # explode is not marked read-only by its server, so it counts as side-effecting: confirmed here
        run = imagine.agent("Try the failing tool.", tools=server.tools, model="mock", confirm=True)
        steps = [s for s in run if isinstance(s, ToolStep)]
    assert len(steps) == 1 and not steps[0].ok
    result = model.requests[1].messages[-1].tool_results[0]
    assert result.is_error and "the fuse blew" in result.text
