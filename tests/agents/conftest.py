"""The mock engine as an agent's model: it takes tools, so scripted `ToolCall`s reach the loop."""

from __future__ import annotations

import pytest


@pytest.fixture
def model(mock_engine, monkeypatch):
    """The registry's MockEngine with the tools feature: `.enqueue([ToolCall(...), Done("tool_calls")])`."""
    monkeypatch.setattr(type(mock_engine), "features", type(mock_engine).features | {"tools"})
    return mock_engine
