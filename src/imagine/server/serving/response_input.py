"""Responses API input -> imagine Messages: the prompt string or the input items (messages with
`input_text`/`input_image`/`output_text` parts, `function_call` and `function_call_output` items), and the
history a `previous_response_id` points at, rebuilt from imagine's own log.

The pieces that chat completions also need (data URLs, the SSRF-safe fetch of a remote image, tool
arguments) come from messages.py, so both endpoints refuse the same things the same way; only the field
names differ (`input[2].content[1].image_url` here)."""

from __future__ import annotations

import json
from typing import Any, Literal

from ...errors import InputError
from ...parts import Limits, Message, Part, Text, ToolUse
from ...store import Store
from ..errors import ApiError
from .messages import bad, image, tool_arguments

__all__ = ["History", "history", "to_input"]

Role = Literal["system", "user", "assistant"]
_ROLES: dict[str, Role] = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}
_SKIPPED = {"reasoning"}  # a model's hidden reasoning sent back: nothing an imagine engine reads


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise bad(field, "must be a string")
    return value


async def _part(item: Any, role: Role, field: str, limits: Limits, allow_private: bool) -> Part | None:
    if not isinstance(item, dict):
        raise bad(field, "a content part must be an object")
    kind = item.get("type")
    if kind in ("input_text", "output_text", "text"):
        return Text(_text(item.get("text"), f"{field}.text"))
    if kind == "refusal":
        return Text(_text(item.get("refusal", ""), f"{field}.refusal"))
    if kind == "input_image":
        if role != "user":
            raise bad(f"{field}.type", f"a {role} message cannot carry an image")
        url = item.get("image_url")
        if url is None:
            where = f"{field}.file_id" if item.get("file_id") else f"{field}.image_url"
            raise bad(where, "send the image as image_url (a data: URL or an http(s) URL); "
                             "this server has no file store")
        return await image(_text(url, f"{field}.image_url"), f"{field}.image_url", limits, allow_private)
    raise bad(f"{field}.type", f"content parts of type {kind!r} are not supported "
                               "(input_text, input_image, output_text are)")


async def _message(item: dict[str, Any], field: str, limits: Limits, allow_private: bool) -> Message:
    role = _ROLES.get(str(item.get("role")))
    if role is None:
        raise bad(f"{field}.role", f"must be user, system, developer or assistant, not {item.get('role')!r}")
    content = item.get("content")
    if isinstance(content, str):
        parts: list[Part] = [Text(content)] if content else []
    elif isinstance(content, list):
        found = [await _part(p, role, f"{field}.content[{j}]", limits, allow_private) for j, p in enumerate(content)]
        parts = [p for p in found if p is not None]
    else:
        raise bad(f"{field}.content", "must be a string or a list of content parts")
    if role == "user" and not parts:
        raise bad(f"{field}.content", "a user message needs some content")
    return Message(role, parts)


def _output_text(value: Any, field: str) -> str:
    """A function_call_output's output: a string, or a list of input_text parts (newer SDKs)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(_text(p.get("text"), f"{field}[{j}].text") if isinstance(p, dict) else _text(p, f"{field}[{j}]")
                         for j, p in enumerate(value))
    raise bad(field, "must be a string")


async def to_input(value: str | list[dict[str, Any]], limits: Limits, allow_private: bool = False,
                   known_calls: dict[str, str] | None = None) -> list[Message]:
    """The request's input as Messages. Consecutive assistant text and function calls become one
    assistant message (what engines expect); a function_call_output becomes a tool result, named after its
    call when the call is in this input or in `known_calls` (call_id -> name, from the history)."""
    if isinstance(value, str):
        if not value:
            raise bad("input", "must not be empty")
        return [Message("user", [Text(value)])]
    if not value:
        raise bad("input", "must not be empty")
    names = dict(known_calls or {})
    out: list[Message] = []
    for i, item in enumerate(value):
        field = f"input[{i}]"
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            message = await _message(item, field, limits, allow_private)
            if message.role == "assistant" and out and out[-1].role == "assistant":
                out[-1] = Message("assistant", [*out[-1].parts, *message.parts])
            else:
                out.append(message)
        elif kind == "function_call":
            call_id = _text(item.get("call_id"), f"{field}.call_id")
            name = _text(item.get("name"), f"{field}.name")
            use = ToolUse(call_id, name, tool_arguments(item.get("arguments"), f"{field}.arguments"))
            names[call_id] = name
            if out and out[-1].role == "assistant":
                out[-1] = Message("assistant", [*out[-1].parts, use])
            else:
                out.append(Message("assistant", [use]))
        elif kind == "function_call_output":
            call_id = _text(item.get("call_id"), f"{field}.call_id")
            text = _output_text(item.get("output"), f"{field}.output")
            out.append(Message.tool_result(call_id, text, name=names.get(call_id)))
        elif kind in _SKIPPED:
            continue
        else:
            raise bad(f"{field}.type", f"input items of type {kind!r} are not supported (message, function_call, "
                                       "function_call_output are)")
    return out


class History:
    """The turns a previous response continues: its messages, its conversation id, the tool calls it made
    (call_id -> name) and whether the conversation was routed local_only (privacy stays per conversation)."""

    def __init__(self, messages: list[Message], conversation_id: str, local_only: bool) -> None:
        self.messages, self.conversation_id, self.local_only = messages, conversation_id, local_only
        self.calls = {p.id: p.name for m in messages for p in m.parts if isinstance(p, ToolUse)}


def _not_found(response_id: str) -> ApiError:
    return ApiError(404, f"previous response {response_id!r} not found (this server knows the responses it "
                         "logged; with logging off there are none)",
                    param="previous_response_id", code="previous_response_not_found")


def history(store: Store, response_id: str, max_turns: int, key_id: str | None = None) -> History:
    """The logged conversation up to and including `response_id` (branching from an older turn works:
    later turns of the same conversation are left out). Exact ids only; a prefix is not found. With API
    keys in use (`key_id`), only a response made for that key is found: another key's is a 404, the same
    answer as an id never seen, so ids reveal nothing across keys."""
    log_id = response_id.removeprefix("resp_")
    try:
        row = store.get(log_id)
    except InputError:
        raise _not_found(response_id) from None
    if row["id"] != log_id or not row.get("conversation_id") or (key_id is not None and row.get("api_key") != key_id):
        raise _not_found(response_id)
    conversation_id = str(row["conversation_id"])
    rows = [r for r in store.recent(limit=max_turns, conversation_id=conversation_id)
            if (r["created"], r["id"]) <= (row["created"], row["id"])
            and (key_id is None or r.get("api_key") == key_id)]
    messages: list[Message] = []
    for turn in reversed(rows):  # oldest first
        try:
            for record in turn["input"]:
                messages.append(Message(record["role"], [store.part_from_record(p) for p in record["parts"]]))
            calls = [store.part_from_record(p) for p in turn["output_parts"]
                     if isinstance(p, dict) and p.get("type") == "tool_use"]
        except (ValueError, TypeError, KeyError, AttributeError):
            raise ApiError(400, f"the logged turn {turn['id']} of that conversation is damaged; start a new one",
                           param="previous_response_id", code="previous_response_damaged") from None
        text = turn.get("output_text") or ""
        if text or calls:
            messages.append(Message("assistant", [*([Text(text)] if text else []), *calls]))
    return History(messages, conversation_id, store.conversation_is_local_only(conversation_id))


def arguments_json(arguments: dict[str, Any]) -> str:
    return json.dumps(arguments, ensure_ascii=False)
