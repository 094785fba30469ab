"""Agents: a model that answers by calling tools (`imagine.agent`), imagine's tasks as its built-in tools,
the rules that say what a run may do, and MCP both ways.

`loop.py` runs the turns; `builtin.py` holds the built-in tools and the run's workspace (media by handle,
the folders a run may read); `safety.py` the allowlist, confirmation, local_only and timeouts.
Submodules load on use, so importing this package costs nothing.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["AgentRun", "ModelStep", "ToolStep", "agent"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(import_module(".loop", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
