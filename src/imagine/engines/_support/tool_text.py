"""Tool calls and results for engines without tool support: the same exchange, written as text.

A conversation may hold `ToolUse` parts (the assistant asked for a tool) and "tool" messages of
`ToolResult` parts. The API engines send them in their own wire format; a local chat model has no such
slot, so it reads them as text: the call as `[called tool NAME with {...}]` in the assistant's turn, the
result as a user turn `[tool NAME returned] ...` (or `[tool NAME failed] ...`). Written once here so
every text engine says it the same way.
"""

from __future__ import annotations

import json
from typing import Sequence

from ...parts import Message, Part, Text, ToolResult, ToolUse

__all__ = ["tool_names", "tool_text", "with_tools_as_text"]


def tool_names(messages: Sequence[Message]) -> dict[str, str]:
    """Call id -> tool name, from the `ToolUse` parts of a conversation (a result may not name its tool)."""
    return {p.id: p.name for m in messages for p in m.parts if isinstance(p, ToolUse)}


def tool_text(part: ToolUse | ToolResult, names: dict[str, str] | None = None) -> str:
    """One tool call or result as text."""
    if isinstance(part, ToolUse):
        return f"[called tool {part.name} with {json.dumps(part.arguments)}]"
    name = part.name or (names or {}).get(part.call_id) or part.call_id
    return f"[tool {name} {'failed' if part.is_error else 'returned'}] {part.text}"


def with_tools_as_text(messages: Sequence[Message]) -> tuple[Message, ...]:
    """The conversation with every tool call and result turned into text, and "tool" messages into
    user messages; messages without them are passed through unchanged."""
    names = tool_names(messages)
    out: list[Message] = []
    for msg in messages:
        if msg.role != "tool" and not any(isinstance(p, (ToolUse, ToolResult)) for p in msg.parts):
            out.append(msg)
            continue
        parts: list[Part] = [Text(tool_text(p, names)) if isinstance(p, (ToolUse, ToolResult)) else p
                             for p in msg.parts]
        out.append(Message("user" if msg.role == "tool" else msg.role, parts))
    return tuple(out)
