"""Tool calls for local chat models, in the Hermes convention (Qwen, SmolLM2, Hermes and most open models).

A local model has no API slot for tools, so the exchange is written into the conversation the way these
models were trained to read it: the tools as JSON schemas between `<tools>` tags in the system turn, a call
as `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` in the assistant turn, and a result as
`<tool_response>...</tool_response>` in the following turn. The llama.cpp engine constrains generation to
that call syntax with a grammar; the transformers engine gives the tools to the chat template when it takes
them and parses the same tags out of the answer. Written once here so both say and read it the same way.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any, Sequence

from ...errors import InputError
from ...events import ToolCall
from ...parts import Message, Part, Text, ToolResult, ToolUse
from .tool_text import tool_names

__all__ = ["CALL_CLOSE", "CALL_OPEN", "CallHolder", "ToolChoice", "call_id", "call_text", "only_repeats",
           "openai_tools", "parse_tool_calls", "resolve_tool_choice", "results_as_context", "tool_system_note",
           "with_tool_turns"]

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)

TOOLS_NOTE = ("You can call these tools, described by JSON schemas:\n<tools>\n{tools}\n</tools>\n"
              "To call a tool, reply with only:\n<tool_call>\n{{\"name\": \"TOOL_NAME\", \"arguments\": "
              "{{ARGUMENTS}}}}\n</tool_call>\nA tool's answer comes back between <tool_response> tags. "
              "When no tool is needed, answer in plain text.")


@dataclass(frozen=True)
class ToolChoice:
    """What the model may do with the tools: `mode` "auto" (call one or answer), "required" (must call),
    "none" (must answer); `name` restricts a required call to that tool."""

    mode: str = "auto"
    name: str | None = None

    @property
    def names(self) -> tuple[str, ...] | None:
        return (self.name,) if self.name else None


def resolve_tool_choice(choice: str | None, tools: Sequence[dict[str, Any]]) -> ToolChoice:
    """`-o tool_choice=` as OpenAI spells it (auto, none, required, or a tool's name), checked against the
    tools given, so a typo is the caller's error rather than a silently ignored option."""
    names = [t["name"] for t in tools]
    if choice is None or choice == "auto":
        return ToolChoice("auto" if names else "none")
    if not names:
        raise InputError("option tool_choice needs tools", hint="pass tools=[...] too, or drop tool_choice")
    if choice in ("none", "required"):
        return ToolChoice(choice)
    if choice not in names:
        raise InputError(f"option tool_choice names no tool given: {choice!r}",
                         hint=f"auto, none, required, or one of {', '.join(names)}")
    return ToolChoice("required", choice)


def tool_system_note(tools: Sequence[dict[str, Any]]) -> str:
    """The instruction that lists the tools and the call syntax (one compact JSON schema a line)."""
    listed = "\n".join(json.dumps({"name": t["name"], "description": t.get("description", ""),
                                   "parameters": t.get("parameters") or {"type": "object", "properties": {}}},
                                  separators=(",", ":")) for t in tools)
    return TOOLS_NOTE.format(tools=listed)


def openai_tools(tools: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tools as chat templates take them (`apply_chat_template(tools=...)`): OpenAI's function shape."""
    return [{"type": "function", "function": {"name": t["name"], "description": t.get("description", ""),
                                              "parameters": t.get("parameters") or {"type": "object",
                                                                                    "properties": {}}}}
            for t in tools]


def call_text(name: str, arguments: dict[str, Any]) -> str:
    """One call in the syntax the model is asked to write (and reads back in its own earlier turns)."""
    return f"{CALL_OPEN}\n{json.dumps({'name': name, 'arguments': arguments})}\n{CALL_CLOSE}"


def with_tool_turns(messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> tuple[Message, ...]:
    """The conversation as a model without a tool slot reads it: the tools note added to (or as) the system
    turn, earlier calls as `<tool_call>` blocks in their assistant turns, and results as `<tool_response>`
    blocks in a user turn (roles alternate in most templates; a "tool" role is unknown to many)."""
    names = tool_names(messages)
    out: list[Message] = []
    for msg in messages:
        parts: list[Part] = []
        for part in msg.parts:
            if isinstance(part, ToolUse):
                parts.append(Text(call_text(part.name, part.arguments)))
            elif isinstance(part, ToolResult):
                name = part.name or names.get(part.call_id) or part.call_id
                body = json.dumps({"name": name, "content": part.text, **({"error": True} if part.is_error else {})})
                parts.append(Text(f"<tool_response>\n{body}\n</tool_response>"))
            else:
                parts.append(part)
        role = "user" if msg.role == "tool" else msg.role
        if out and role == "user" and msg.role == "tool" and out[-1].role == "user":
            out[-1] = Message("user", [*out[-1].parts, *parts])  # several results answer one turn
        else:
            out.append(Message(role, parts))
    if tools:
        note = tool_system_note(tools)
        if out and out[0].role == "system":
            out[0] = Message("system", [*out[0].parts, Text("\n\n" + note)])
        else:
            out.insert(0, Message("system", [Text(note)]))
    return tuple(out)


def results_as_context(messages: Sequence[Message]) -> tuple[Message, ...]:
    """The conversation for answering from tool results with a small model: the calls and results taken
    out of the turns and given as facts in the system turn, so the last turn is the person's question.
    Written as turns, a 135M model copies the call syntax or the last result verbatim instead of answering."""
    names = tool_names(messages)
    facts = [f"- {part.name or names.get(part.call_id) or 'a tool'}"
             f"{' (failed)' if part.is_error else ''}: {part.text}"
             for msg in messages for part in msg.parts if isinstance(part, ToolResult)]
    kept = [Message(m.role, [p for p in m.parts if not isinstance(p, (ToolUse, ToolResult))]) for m in messages
            if m.role != "tool"]
    kept = [m for m in kept if m.parts]
    note = Text("Results of the tools you called:\n" + "\n".join(facts) + "\nAnswer the question from them.")
    if kept and kept[0].role == "system":
        return (Message("system", [*kept[0].parts, Text("\n\n"), note]), *kept[1:])
    return (Message("system", [note]), *kept)


def call_id() -> str:
    """An id for a call the model made (local models do not number their calls)."""
    return f"call_{secrets.token_hex(8)}"


def parse_tool_calls(text: str) -> tuple[str, list[ToolCall], list[str]]:
    """(the text before the first call, the calls, a problem for each block that is not a call).

    A block is `{"name": str, "arguments": object}`; "parameters" is read as "arguments" (some models write
    that), arguments given as a JSON string are decoded, and an unclosed last block (the answer hit
    max_tokens) is still read if its JSON is whole. Identical calls in one answer count once: small models
    repeat themselves."""
    start = text.find(CALL_OPEN)
    if start < 0:
        return text, [], []
    calls: list[ToolCall] = []
    problems: list[str] = []
    seen: set[str] = set()
    for body in _CALL.findall(text[start:]):
        try:
            value = json.loads(body)
        except json.JSONDecodeError as exc:
            problems.append(f"a tool call is not valid JSON ({exc.msg} at char {exc.pos}): {body[:80]!r}")
            continue
        for item in value if isinstance(value, list) else [value]:
            name = item.get("name") if isinstance(item, dict) else None
            if not isinstance(name, str) or not name:
                problems.append(f"a tool call names no tool: {json.dumps(item)[:80]}")
                continue
            args = item.get("arguments", item.get("parameters", {}))
            if isinstance(args, str):
                try:
                    args = json.loads(args) if args.strip() else {}
                except json.JSONDecodeError:
                    pass
            if not isinstance(args, dict):
                problems.append(f"tool call {name!r} has arguments that are not a JSON object: {str(args)[:80]}")
                continue
            key = json.dumps([name, args], sort_keys=True)
            if key not in seen:
                seen.add(key)
                calls.append(ToolCall(call_id(), name, args))
    return text[:start], calls, problems


def only_repeats(text: str, messages: Sequence[Message]) -> bool:
    """Whether every call in `text` is one the conversation already made and got a result for (same tool,
    same arguments): calling again would only repeat that result."""
    answered = {p.call_id for m in messages for p in m.parts if isinstance(p, ToolResult)}
    done = {json.dumps([p.name, p.arguments], sort_keys=True) for m in messages for p in m.parts
            if isinstance(p, ToolUse) and p.id in answered}
    _, calls, _ = parse_tool_calls(text)
    return bool(calls) and all(json.dumps([c.name, c.arguments], sort_keys=True) in done for c in calls)


class CallHolder:
    """Streams an answer's text while holding back everything from the first `<tool_call>` on (and any tail
    that may be the start of one), so call syntax never reaches the caller as text."""

    def __init__(self) -> None:
        self.buffer = ""
        self.held = ""  # from the first call on
        self.calling = False

    def feed(self, text: str) -> str:
        if self.calling:
            self.held += text
            return ""
        self.buffer += text
        at = self.buffer.find(CALL_OPEN)
        if at >= 0:
            self.calling = True
            out, self.held, self.buffer = self.buffer[:at], self.buffer[at:], ""
            return out
        hold = max((n for n in range(1, len(CALL_OPEN)) if self.buffer.endswith(CALL_OPEN[:n])), default=0)
        out, self.buffer = self.buffer[:len(self.buffer) - hold], self.buffer[len(self.buffer) - hold:]
        return out

    def flush(self) -> str:
        out, self.buffer = self.buffer, ""
        return out
