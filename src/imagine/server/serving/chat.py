"""Chat completions over the one request path: a ChatRequest -> `Client.respond` (n times) -> an OpenAI
chat.completion, or a stream of chat.completion.chunk events ending in `data: [DONE]`.

Options go to the engine only where it takes them (engines validate their options strictly): for a named
engine the request's sampling fields are kept to that engine's options; for `auto`/`local`/`cloud` the
router drops candidates that refuse them. `options` (extra body) goes as it is, so a wrong one is a 400."""

from __future__ import annotations

import json
import time
from typing import Any, AsyncIterator, Awaitable, Callable

from ...engine import Response
from ...errors import ImagineError, SchemaError
from ...events import Done, TextDelta, ToolCall, Usage
from ...parts import Modality
from ...registry import BUILTIN_ALIASES
from ..deps import Caller
from ..errors import ApiError, error_body, status_of
from ..protocol.chat import ChatRequest
from ..settings import ServerSettings
from . import bridge, chat_audio
from .messages import to_messages

__all__ = ["ChatPlan", "plan_chat", "complete_chat", "stream_chat"]

_SAMPLING = ("temperature", "top_p", "seed", "stop", "max_tokens")

Turn = Callable[[], Awaitable[None]]  # waits for the next choice's turn in a local model's lane (Gate.next_turn)


class ChatPlan:
    """One validated chat request: the n lazy Responses and what the wire answer needs."""

    def __init__(self, request: ChatRequest, responses: list[Response], caller: Caller) -> None:
        self.request, self.responses, self.caller = request, responses, caller
        self.id = "chatcmpl-" + responses[0].id
        self.created = int(time.time())
        self.voice = chat_audio.audio_request(request)  # set: the answer is spoken too (chat_audio.py)

    @property
    def log_ids(self) -> str:
        return ",".join(r.id for r in self.responses)

    def model(self, response: Response) -> str:
        try:
            return response.answered_ref
        except Exception:  # no decision yet: the name as asked
            return self.request.model

    def charge(self, response: Response) -> None:
        if self.caller.key is not None and response.done:
            self.caller.keys.add_spend(self.caller.key, _usage(response).cost)


def _usage(response: Response) -> Usage:
    total = Usage()
    for event in response.events_seen:
        if isinstance(event, Usage):
            total = total + event
    return total


def cached_tokens(usage: Usage) -> int:
    """Prompt tokens the engine did not have to read again (llama.cpp's kept KV prefix, a cloud API's
    prompt cache): what a client watches to see its conversation's prefix reused."""
    value = usage.extra.get("cached_tokens")
    return value if isinstance(value, int) and value > 0 else 0


def _usage_wire(usages: list[Usage]) -> dict[str, Any]:
    prompt = sum(u.input_tokens or 0 for u in usages[:1])  # the prompt is read once per choice; OpenAI counts it once
    completion = sum(u.output_tokens or 0 for u in usages)
    cached = sum(cached_tokens(u) for u in usages[:1])
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached}}


def _schema(request: ChatRequest) -> dict[str, Any] | None:
    fmt = request.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return {"type": "object"}
    if fmt.json_schema is None or fmt.json_schema.schema_ is None:
        raise ApiError(400, "response_format.json_schema.schema is required for type json_schema",
                       param="response_format.json_schema.schema", code="invalid_value")
    return fmt.json_schema.schema_


def _options(request: ChatRequest, caller: Caller, settings: ServerSettings) -> dict[str, Any]:
    max_tokens = request.max_completion_tokens or request.max_tokens
    if max_tokens is not None and max_tokens > settings.max_tokens:
        field = "max_completion_tokens" if request.max_completion_tokens else "max_tokens"
        raise ApiError(400, f"{field} is {max_tokens}; this server allows at most {settings.max_tokens}",
                       param=field, code="invalid_value")
    wanted = {"temperature": request.temperature, "top_p": request.top_p, "seed": request.seed,
              "stop": request.stop, "max_tokens": max_tokens}
    wanted = {k: v for k, v in wanted.items() if v is not None}
    ref = caller.client.registry.expand(request.model.strip() or "auto", configured=False)
    local_key = caller.key is not None and caller.key.local_only
    if local_key and ref == "cloud":
        raise _local_only(request.model)
    if ref not in BUILTIN_ALIASES:  # a named engine: only what it takes (EngineNotFound -> 404 here)
        engine_id = ref.partition(":")[0]
        engine_cls = caller.client.registry.engine_class(engine_id)
        if local_key and engine_cls.locality != "local":  # the router refuses it too; this says why
            raise _local_only(request.model)
        fields = engine_cls.Options.model_fields
        wanted = {k: v for k, v in wanted.items() if k in fields}
        if request.tools and request.tool_choice not in (None, "auto", "none"):
            choice = request.tool_choice
            name = choice.get("function", {}).get("name") if isinstance(choice, dict) else choice
            if "tool_choice" not in fields:
                raise ApiError(400, f"engine {engine_id} cannot be made to call a tool (tool_choice {name!r})",
                               param="tool_choice", code="unsupported_value")
            wanted["tool_choice"] = name
    return {**wanted, **(request.options or {})}


def _local_only(model: str) -> ApiError:
    return ApiError(403, f"this API key is local_only: model {model!r} would leave the device",
                    type="permission_error", param="model", code="local_only")


async def plan_chat(request: ChatRequest, caller: Caller, settings: ServerSettings) -> ChatPlan:
    """Validate the request and start nothing: the n Responses are lazy (planning errors raise here)."""
    if request.n > settings.max_n:
        raise ApiError(400, f"n is {request.n}; this server allows at most {settings.max_n}", param="n",
                       code="invalid_value")
    if len(request.messages) > settings.max_messages:
        raise ApiError(400, f"{len(request.messages)} messages; this server takes at most {settings.max_messages}",
                       param="messages", code="invalid_value")
    chat_audio.audio_request(request)  # a spoken answer it cannot make is refused before anything runs
    client = caller.client
    messages = await to_messages(request.messages, client.settings.part_limits(),
                                 allow_private=client.settings.allow_private_urls)
    tools = request.tools if request.tools and request.tool_choice != "none" else ()
    options = _options(request, caller, settings)
    policy = caller.policy(request.policy, request.max_cost)
    schema = _schema(request)
    responses = [client.respond(messages, request.model, want=Modality.TEXT, schema=schema, options=options,
                                policy=policy, tools=tools) for _ in range(request.n)]
    return ChatPlan(request, responses, caller)


def _tool_calls(calls: list[ToolCall]) -> list[dict[str, Any]]:
    return [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
            for c in calls]


def _finish(response: Response, calls: list[Any]) -> str:
    if calls:
        return "tool_calls"
    return "length" if response.finish_reason == "length" else "stop"


async def complete_chat(plan: ChatPlan, turn: Turn | None = None) -> dict[str, Any]:
    """Run every choice to its end, each in its own turn (`turn`); the chat.completion body."""
    choices = []
    for index, response in enumerate(plan.responses):
        if index > 0 and turn is not None:
            await turn()
        try:
            await bridge.complete(response)
        except SchemaError:
            pass  # OpenAI returns what the model wrote (e.g. JSON cut off at max_tokens); so do we
        finally:
            plan.charge(response)
        calls = [e for e in response._current() if isinstance(e, ToolCall)]
        text = response.text_so_far()
        message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
        if calls:
            message["tool_calls"] = _tool_calls(calls)
        if plan.voice is not None:  # OpenAI's shape: the words are the audio's transcript, content is null
            spoken = await chat_audio.speak_answer(plan.caller, plan.voice, text, response.id)
            message.update(content=None, audio=spoken.message_audio())
        choices.append({"index": index, "message": message, "finish_reason": _finish(response, calls),
                        "logprobs": None})
    return {"id": plan.id, "object": "chat.completion", "created": plan.created,
            "model": plan.model(plan.responses[0]), "choices": choices,
            "usage": _usage_wire([_usage(r) for r in plan.responses])}


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


async def first_event(plan: ChatPlan) -> tuple[AsyncIterator[Any], Any]:
    """Start the first choice and wait for its first event, so that an engine that fails at once (model
    missing, upstream down) still answers with a proper status instead of a broken stream."""
    stream = bridge.events(plan.responses[0])
    try:
        first = await stream.__anext__()
    except StopAsyncIteration:
        first = None
    return stream, first


async def stream_chat(plan: ChatPlan, stream: AsyncIterator[Any], first: Any,
                      turn: Turn | None = None) -> AsyncIterator[bytes]:
    """chat.completion.chunk events: a role chunk, content and tool-call deltas, a finish chunk per choice,
    the usage chunk when `stream_options.include_usage`, then [DONE]. An error mid-stream is sent as an
    OpenAI error event (the SDK raises it) and ends the stream."""
    include_usage = bool(plan.request.stream_options and plan.request.stream_options.include_usage)
    head = {"id": plan.id, "object": "chat.completion.chunk", "created": plan.created}
    extra = {"usage": None} if include_usage else {}
    usages: list[Usage] = []
    for index, response in enumerate(plan.responses):
        model = plan.model(response)
        if index > 0:
            if turn is not None:
                await turn()
            stream, first = bridge.events(response), None
        yield _sse({**head, "model": model, "choices": [
            {"index": index, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}], **extra})
        calls = 0
        try:
            pending = [first] if first is not None else []
            async for event in _chain(pending, stream):
                if isinstance(event, TextDelta):
                    if event.text:
                        delta = {"content": event.text} if plan.voice is None else {"audio": {"transcript": event.text}}
                        yield _sse({**head, "model": model, "choices": [
                            {"index": index, "delta": delta, "finish_reason": None}], **extra})
                elif isinstance(event, ToolCall):
                    call = _tool_calls([event])[0]
                    yield _sse({**head, "model": model, "choices": [{"index": index, "delta": {
                        "tool_calls": [{"index": calls, **call}]}, "finish_reason": None}], **extra})
                    calls += 1
                elif isinstance(event, Done):
                    pass
        except SchemaError:
            pass
        except ImagineError as exc:
            status, kind, code = status_of(exc)
            yield _sse(error_body(str(exc), kind, None, code))
            return
        finally:
            await stream.aclose()  # type: ignore[attr-defined]  # a client that left stops the generation now
            plan.charge(response)
        if plan.voice is not None:  # then the sound of what was just written
            try:
                spoken = await chat_audio.speak_answer(plan.caller, plan.voice, response.text_so_far(), response.id)
            except ImagineError as exc:
                status, kind, code = status_of(exc)
                yield _sse(error_body(str(exc), kind, None, code))
                return
            for piece in chat_audio.stream_chunks(spoken):
                yield _sse({**head, "model": model, "choices": [
                    {"index": index, "delta": {"audio": piece}, "finish_reason": None}], **extra})
        finish = "tool_calls" if calls else ("length" if response.finish_reason == "length" else "stop")
        yield _sse({**head, "model": model, "choices": [{"index": index, "delta": {}, "finish_reason": finish}],
                    **extra})
        usages.append(_usage(response))
    if include_usage:
        yield _sse({**head, "model": plan.model(plan.responses[0]), "choices": [], "usage": _usage_wire(usages)})
    yield b"data: [DONE]\n\n"


async def _chain(pending: list[Any], stream: AsyncIterator[Any]) -> AsyncIterator[Any]:
    for item in pending:
        yield item
    async for item in stream:
        yield item
