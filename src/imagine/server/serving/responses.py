"""The Responses API over the one request path: a ResponsesRequest -> `Client.respond` -> a Response
object (`output` items, `usage`, `status`), or the typed event stream the official SDK parses
(`response.created` ... `response.completed`, each with its `sequence_number`).

Options, tools and the policy go through chat completions' own code (`chat._options`, `Caller.policy`),
so a field means the same on both endpoints; only the wire names differ. A response's id is its log row's
(`resp_` + log id), which is what makes `previous_response_id` cheap: the conversation is rebuilt from the
log, as `imagine ask -c` does, and continues under the same conversation id."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any, AsyncIterator, Iterator

from ...engine import Response
from ...errors import ImagineError, SchemaError
from ...events import TextDelta, ToolCall, Usage
from ...parts import Message, Modality, Text
from ..deps import Caller
from ..errors import ApiError, status_of
from ..protocol.chat import ChatRequest
from ..protocol.responses import ResponsesRequest
from ..settings import ServerSettings
from . import bridge
from .chat import _options as chat_options, _usage, cached_tokens
from .response_input import History, arguments_json, history, to_input

__all__ = ["ResponsesPlan", "complete_response", "first_event", "plan_response", "stream_response"]


class ResponsesPlan:
    """One validated request: the lazy imagine Response and what the wire answer repeats back."""

    def __init__(self, request: ResponsesRequest, response: Response, caller: Caller,
                 tools: list[dict[str, Any]], tool_choice: Any) -> None:
        self.request, self.response, self.caller = request, response, caller
        self.tools, self.tool_choice = tools, tool_choice
        self.id = "resp_" + response.id
        self.created = int(time.time())

    def model(self) -> str:
        try:
            return self.response.answered_ref
        except Exception:  # no decision yet: the name as asked
            return self.request.model

    def charge(self) -> None:
        if self.caller.key is not None and self.response.done:
            self.caller.keys.add_spend(self.caller.key, _usage(self.response).cost)

    def body(self, status: str, output: list[dict[str, Any]], *, error: dict[str, Any] | None = None) -> dict[str, Any]:
        """The Response object as OpenAI sends it (the SDK derives `output_text` from `output`)."""
        request, done = self.request, status in ("completed", "incomplete")
        fmt = request.text.format if request.text and request.text.format else None
        return {
            "id": self.id, "object": "response", "created_at": self.created, "status": status,
            "model": self.model(), "output": output,
            "error": error, "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "instructions": request.instructions, "previous_response_id": request.previous_response_id,
            "max_output_tokens": request.max_output_tokens, "temperature": request.temperature,
            "top_p": request.top_p, "tools": self.tools, "tool_choice": self.tool_choice,
            "parallel_tool_calls": True if request.parallel_tool_calls is None else request.parallel_tool_calls,
            "text": {"format": fmt.model_dump(by_alias=True, exclude_none=True) if fmt else {"type": "text"}},
            "metadata": request.metadata or {}, "store": True, "truncation": "disabled", "user": request.user,
            "usage": _usage_wire(_usage(self.response)) if done else None,
        }


def _usage_wire(usage: Usage) -> dict[str, Any]:
    into, out = usage.input_tokens or 0, usage.output_tokens or 0
    return {"input_tokens": into, "input_tokens_details": {"cached_tokens": cached_tokens(usage)}, "output_tokens": out,
            "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": into + out}


def _tools(request: ResponsesRequest) -> list[dict[str, Any]]:
    """Function tools only: the hosted ones (web_search, file_search, ...) are OpenAI's own services."""
    for i, tool in enumerate(request.tools or []):
        if tool.get("type", "function") != "function":
            raise ApiError(400, f"tools[{i}].type is {tool.get('type')!r}: this server runs function tools only",
                           param=f"tools[{i}].type", code="unsupported_value")
    return list(request.tools or [])


def _tool_choice(choice: Any) -> Any:
    """Responses' `{"type": "function", "name": N}` in chat's shape, which chat._options reads."""
    if choice is None or isinstance(choice, str):
        return choice
    if choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise ApiError(400, f"tool_choice {choice!r} is not supported here (auto, none, required or "
                        '{"type": "function", "name": ...})', param="tool_choice", code="unsupported_value")


def _schema(request: ResponsesRequest) -> dict[str, Any] | None:
    fmt = request.text.format if request.text else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return {"type": "object"}
    if fmt.schema_ is None:
        raise ApiError(400, "text.format.schema is required for type json_schema", param="text.format.schema",
                       code="invalid_value")
    return fmt.schema_


async def plan_response(request: ResponsesRequest, caller: Caller, settings: ServerSettings) -> ResponsesPlan:
    """Validate the request and start nothing (planning errors raise here, each naming its field)."""
    if request.max_output_tokens is not None and request.max_output_tokens > settings.max_tokens:
        raise ApiError(400, f"max_output_tokens is {request.max_output_tokens}; this server allows at most "
                            f"{settings.max_tokens}", param="max_output_tokens", code="invalid_value")
    if isinstance(request.input, list) and len(request.input) > settings.max_messages:
        raise ApiError(400, f"{len(request.input)} input items; this server takes at most {settings.max_messages}",
                       param="input", code="invalid_value")
    client = caller.client
    past: History | None = None
    if request.previous_response_id:
        past = history(client.store, request.previous_response_id, settings.max_messages,
                       caller.key.id if caller.key is not None else None)
    new = await to_input(request.input, client.settings.part_limits(), client.settings.allow_private_urls,
                         past.calls if past else None)
    system = [Message("system", [Text(request.instructions)])] if request.instructions else []
    messages = system + (past.messages if past else []) + new  # instructions are not carried to the next turn
    tools, choice = _tools(request), _tool_choice(request.tool_choice)
    as_chat = ChatRequest.model_construct(  # chat's option rules: only what the named engine takes
        model=request.model, messages=[], max_tokens=request.max_output_tokens, max_completion_tokens=None,
        temperature=request.temperature, top_p=request.top_p, seed=None, stop=None, tools=tools,
        tool_choice=choice, options=request.options)
    options = chat_options(as_chat, caller, settings)
    words = request.policy or ""
    if past is not None and past.local_only:
        words = ",".join(w for w in (words, "local_only") if w)  # a local_only conversation stays local
    policy = caller.policy(words or None, request.max_cost)
    response = client.respond(messages, request.model, want=Modality.TEXT, new_messages=new,
                              schema=_schema(request), options=options, policy=policy,
                              tools=tools if choice != "none" else (),
                              conversation_id=past.conversation_id if past else None)
    return ResponsesPlan(request, response, caller, tools, request.tool_choice or "auto")


def _message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    content = [_text_part(text)] if status == "completed" else []
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": content}


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _call_item(call: ToolCall, status: str = "completed") -> dict[str, Any]:
    return {"type": "function_call", "id": "fc_" + call.id, "call_id": call.id, "name": call.name,
            "arguments": arguments_json(call.arguments), "status": status}


def _status(response: Response) -> str:
    return "incomplete" if response.finish_reason == "length" else "completed"


async def complete_response(plan: ResponsesPlan) -> dict[str, Any]:
    """Run to the end; the Response object."""
    response = plan.response
    try:
        await bridge.complete(response)
    except SchemaError:
        pass  # OpenAI returns what the model wrote (e.g. JSON cut off at max_output_tokens); so do we
    finally:
        plan.charge()
    calls = [e for e in response._current() if isinstance(e, ToolCall)]
    text = response.text_so_far()
    output = ([_message_item("msg_" + response.id, text)] if text or not calls else []) + [_call_item(c) for c in calls]
    return plan.body(_status(response), output)


async def first_event(plan: ResponsesPlan) -> tuple[AsyncIterator[Any], Any]:
    """Start and wait for the first event, so an engine that fails at once still answers with a status."""
    stream = bridge.events(plan.response)
    try:
        first = await stream.__anext__()
    except StopAsyncIteration:
        first = None
    return stream, first


class _Events:
    """Numbers and frames the stream's events; keeps the output items made so far, in order."""

    def __init__(self, plan: ResponsesPlan) -> None:
        self.plan, self.numbers = plan, itertools.count()
        self.output: list[dict[str, Any]] = []
        self.open: int | None = None  # index of the message item being written
        self.messages = 0

    def event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": next(self.numbers), **fields}
        return (f"event: {kind}\ndata: ".encode() + json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
                .encode() + b"\n\n")

    def open_message(self) -> Iterator[bytes]:
        item_id = "msg_" + self.plan.response.id + (f"_{self.messages}" if self.messages else "")
        self.messages += 1
        self.open = len(self.output)
        self.output.append(_message_item(item_id, "", status="in_progress"))
        yield self.event("response.output_item.added", output_index=self.open, item=self.output[self.open])
        yield self.event("response.content_part.added", item_id=item_id, output_index=self.open, content_index=0,
                         part=_text_part(""))
        self.output[self.open] = {**self.output[self.open], "text": ""}

    def delta(self, text: str) -> Iterator[bytes]:
        if self.open is None:
            yield from self.open_message()
        assert self.open is not None
        item = self.output[self.open]
        item["text"] += text
        yield self.event("response.output_text.delta", item_id=item["id"], output_index=self.open, content_index=0,
                         delta=text, logprobs=[])

    def close_message(self) -> Iterator[bytes]:
        if self.open is None:
            return
        index, item = self.open, self.output[self.open]
        text = item.pop("text")
        done = _message_item(item["id"], text)
        self.output[index], self.open = done, None
        yield self.event("response.output_text.done", item_id=done["id"], output_index=index, content_index=0,
                         text=text, logprobs=[])
        yield self.event("response.content_part.done", item_id=done["id"], output_index=index, content_index=0,
                         part=_text_part(text))
        yield self.event("response.output_item.done", output_index=index, item=done)

    def call(self, call: ToolCall) -> Iterator[bytes]:
        yield from self.close_message()
        index, done = len(self.output), _call_item(call)
        self.output.append(done)
        yield self.event("response.output_item.added", output_index=index, item={**done, "arguments": "",
                                                                                  "status": "in_progress"})
        yield self.event("response.function_call_arguments.delta", item_id=done["id"], output_index=index,
                         delta=done["arguments"])
        yield self.event("response.function_call_arguments.done", item_id=done["id"], output_index=index,
                         name=done["name"], arguments=done["arguments"])
        yield self.event("response.output_item.done", output_index=index, item=done)


async def stream_response(plan: ResponsesPlan, stream: AsyncIterator[Any], first: Any) -> AsyncIterator[bytes]:
    """The typed events: created, in_progress, per item added/deltas/done, then completed. An error
    mid-stream is an `error` event and `response.failed` (the SDK surfaces both), and ends the stream."""
    out = _Events(plan)
    yield out.event("response.created", response=plan.body("in_progress", []))
    yield out.event("response.in_progress", response=plan.body("in_progress", []))
    try:
        pending = [first] if first is not None else []
        async for event in _chain(pending, stream):
            if isinstance(event, TextDelta) and event.text:
                for frame in out.delta(event.text):
                    yield frame
            elif isinstance(event, ToolCall):
                for frame in out.call(event):
                    yield frame
    except SchemaError:
        pass
    except ImagineError as exc:
        _, kind, code = status_of(exc)
        yield out.event("error", code=code or kind, message=str(exc), param=None)
        yield out.event("response.failed", response=plan.body("failed", out.output, error={
            "code": code or kind, "message": str(exc)}))
        return
    finally:
        await stream.aclose()  # type: ignore[attr-defined]  # a client that left stops the generation now
        plan.charge()
    if not out.output:  # an empty answer is still one (empty) message, as OpenAI sends it
        for frame in out.open_message():
            yield frame
    for frame in out.close_message():
        yield frame
    yield out.event("response.completed", response=plan.body(_status(plan.response), out.output))


async def _chain(pending: list[Any], stream: AsyncIterator[Any]) -> AsyncIterator[Any]:
    for item in pending:
        yield item
    async for item in stream:
        yield item
