"""`openai`: OpenAI's chat-completions API, and every server that speaks it.

vLLM, Ollama, LM Studio, the llama.cpp server, Groq and Together all answer the same wire protocol, so
one engine class covers them: the built-in `openai` engine reads OPENAI_API_KEY (and OPENAI_BASE_URL),
and each `[endpoints.NAME]` table with kind = "openai" in config.toml becomes one more engine `NAME`.

Requests always stream. The official SDK does the HTTP; this module only maps imagine's parts, options
and errors onto it. The SDK's own retries are off: the router decides when to retry or fall back.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import wave
from typing import TYPE_CHECKING, Any, AsyncIterator, cast

from pydantic import Field

from ..config import EndpointSettings, ModelSpec
from ..engine import Request
from ..errors import EngineUnavailable, ImagineError, InputError, RateLimited, Refused, SchemaError, UpstreamError
from ..errors import UpstreamTimeout
from ..events import Done, Event, PartOut, TextDelta, ToolCall, Usage
from ..parts import Audio, Data, Image, Modality, Part, Text, Video
from ._cloud import CloudEngine, CloudOptions, PerLoop, data_url, display_url, retry_after_seconds, scrub

if TYPE_CHECKING:
    import openai

__all__ = ["OpenAIOptions", "OpenAICompatEngine"]

DEFAULT_URL = "https://api.openai.com/v1"
_FEATURES = ["stream", "json_schema", "tools", "seed", "stop", "logprobs"]
_REASONING_MODEL = re.compile(r"^(o\d|gpt-5)")  # these take max_completion_tokens, not max_tokens
_AUDIO_OUT_RATE = 24000  # streamed audio answers are 16-bit PCM, mono, 24 kHz


def _spec(inputs: list[str], price_input: float | None, price_output: float | None,
          outputs: tuple[str, ...] = ("text", "data")) -> ModelSpec:
    return ModelSpec(inputs=inputs, outputs=list(outputs), features=_FEATURES,
                     price_input=price_input, price_output=price_output)


class OpenAIOptions(CloudOptions):
    """CloudOptions plus what the chat-completions API adds."""

    logprobs: bool = Field(default=False, description="return token log-probabilities (their mean is a confidence)")
    top_logprobs: int | None = Field(default=None, ge=0, le=20, description="alternatives per token (implies logprobs)")
    reasoning_effort: str | None = Field(default=None, description="reasoning models: minimal, low, medium, high")
    voice: str | None = Field(default=None, description="voice of audio answers (audio models; default alloy)")


class OpenAICompatEngine(CloudEngine):
    id = "openai"
    kind = "openai"
    sdk = "openai"
    extra = "openai"
    package = "openai"
    default_model = "gpt-4o-mini"
    description = "OpenAI chat completions, and any server speaking the same API (vLLM, Ollama, Groq...)"
    inputs = frozenset({Modality.TEXT, Modality.IMAGE, Modality.AUDIO})
    outputs = frozenset({Modality.TEXT, Modality.AUDIO, Modality.DATA})
    features = frozenset(_FEATURES)
    # List prices in US dollars per million tokens at the time of writing; they change, so override them
    # (or add models) with an [endpoints.openai.models.NAME] table in config.toml.
    known_models = {
        "gpt-4o-mini": _spec(["text", "image"], 0.15, 0.60),
        "gpt-4o": _spec(["text", "image"], 2.50, 10.00),
        "gpt-4.1-mini": _spec(["text", "image"], 0.40, 1.60),
        "gpt-4.1-nano": _spec(["text", "image"], 0.10, 0.40),
        # audio tokens are priced apart from text tokens, so its cost is left unknown rather than wrong
        "gpt-4o-audio-preview": _spec(["text", "audio"], None, None, outputs=("text", "audio")),
    }
    Options = OpenAIOptions

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        super().__init__(settings)
        # one client per event loop: an async HTTP pool must not be shared between loops
        self._clients: PerLoop[openai.AsyncOpenAI] = PerLoop(self._make_client, lambda client: client.close())

    @classmethod
    def default_endpoint(cls) -> EndpointSettings:
        return EndpointSettings(kind="openai", key_env="OPENAI_API_KEY", base_url=os.environ.get("OPENAI_BASE_URL"))

    def _make_client(self) -> openai.AsyncOpenAI:
        """The SDK client, made on first use (so a missing key fails only when used). No SDK retries:
        the router decides when to retry or fall back."""
        import openai

        return openai.AsyncOpenAI(api_key=self.require_key(), base_url=self.endpoint.base_url or DEFAULT_URL,
                                  max_retries=0, timeout=self.endpoint.timeout)

    @property
    def url(self) -> str:
        return display_url(self.endpoint.base_url or DEFAULT_URL)

    # -- request --------------------------------------------------------------------------------
    def _content(self, part: Part) -> dict[str, Any]:
        if isinstance(part, Text):
            return {"type": "text", "text": part.text}
        if isinstance(part, Image):
            return {"type": "image_url", "image_url": {"url": data_url(part)}}
        if isinstance(part, Audio):
            fmt = {"audio/wav": "wav", "audio/x-wav": "wav", "audio/wave": "wav", "audio/mpeg": "mp3",
                   "audio/mp3": "mp3"}.get(part.mime)
            data = part.data
            if fmt is None:  # the API takes only WAV and MP3: decode anything else to WAV
                from ..media import encode_wav

                data, fmt = encode_wav(*part.samples(rate=None)), "wav"
            return {"type": "input_audio", "input_audio": {"data": base64.b64encode(data).decode("ascii"),
                                                           "format": fmt}}
        if isinstance(part, Data):
            return {"type": "text", "text": json.dumps(part.value)}
        if isinstance(part, Video):
            from ..registry import get_registry

            others = get_registry().capable({Modality.VIDEO}, Modality.TEXT)
            raise InputError(f"engine {self.id} does not take video",
                             hint=(f"engines that do: {', '.join(others)}" if others else "no installed engine does")
                             + "; or send frames (Video.frames) as images and the sound track (Video.audio)")
        raise InputError(f"engine {self.id} cannot send a {part.modality.value} part")

    def messages(self, request: Request) -> list[dict[str, Any]]:
        """Chat messages; text-only ones as plain strings, which every compatible server accepts."""
        out: list[dict[str, Any]] = []
        for msg in request.messages:
            role = msg.role if msg.role in ("system", "user", "assistant") else "user"
            if all(isinstance(p, Text) for p in msg.parts):
                out.append({"role": role, "content": msg.text})
            elif role != "user":
                raise InputError(f"engine {self.id} takes only text in {role} messages")
            else:
                out.append({"role": role, "content": [self._content(p) for p in msg.parts]})
        return out

    def body(self, request: Request) -> dict[str, Any]:
        """Keyword arguments of `chat.completions.create`: only what was set, so servers see their defaults."""
        opts = cast(OpenAIOptions, request.options)
        body: dict[str, Any] = {"model": request.model, "messages": self.messages(request), "stream": True,
                                "stream_options": {"include_usage": True}}
        for name in ("temperature", "top_p", "seed", "stop", "reasoning_effort"):
            if getattr(opts, name) is not None:
                body[name] = getattr(opts, name)
        if opts.max_tokens is not None:
            body["max_completion_tokens" if _REASONING_MODEL.match(request.model) else "max_tokens"] = opts.max_tokens
        if opts.logprobs or opts.top_logprobs is not None:
            body["logprobs"] = True
            if opts.top_logprobs is not None:
                body["top_logprobs"] = opts.top_logprobs
        if request.schema is not None:
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "output", "schema": request.schema, "strict": False}}
        if request.tools:
            body["tools"] = [{"type": "function", "function": {
                "name": t["name"], "parameters": t.get("parameters") or {"type": "object", "properties": {}},
                **({"description": t["description"]} if t.get("description") else {})}} for t in request.tools]
        if request.want == Modality.AUDIO:
            body["modalities"] = ["text", "audio"]
            body["audio"] = {"voice": opts.voice or "alloy", "format": "pcm16"}  # streaming needs pcm16
        return body

    # -- response -------------------------------------------------------------------------------
    async def stream(self, request: Request) -> AsyncIterator[Event]:
        import openai

        body = self.body(request)
        text: list[str] = []
        refusal: list[str] = []
        audio: list[bytes] = []
        calls: dict[int, dict[str, str]] = {}
        logprobs: list[float] = []
        usage: Any = None
        finish: str | None = None
        async with self._clients.use() as client:
            try:
                chunks = await client.chat.completions.create(**body, timeout=self.timeout(request.options))
                try:
                    async for chunk in chunks:
                        usage = chunk.usage or usage
                        for choice in chunk.choices[:1]:
                            delta = choice.delta
                            if delta.content:
                                text.append(delta.content)
                                yield TextDelta(delta.content)
                            if delta.refusal:
                                refusal.append(delta.refusal)
                            if delta.audio is not None:
                                if delta.audio.transcript:
                                    yield TextDelta(delta.audio.transcript)
                                if delta.audio.data:
                                    audio.append(base64.b64decode(delta.audio.data))
                            for call in delta.tool_calls or []:
                                slot = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                                slot["id"] = slot["id"] or call.id or ""
                                if call.function is not None:
                                    slot["name"] = slot["name"] or call.function.name or ""
                                    slot["arguments"] += call.function.arguments or ""
                            if choice.logprobs is not None and choice.logprobs.content:
                                logprobs.extend(t.logprob for t in choice.logprobs.content)
                            finish = choice.finish_reason or finish
                finally:
                    await chunks.close()
            except openai.OpenAIError as exc:
                raise self.error(exc, request) from None
        if finish is None:  # the SDK ends quietly when the connection closes mid-answer
            raise UpstreamError(f"stream from {self.id} ended before the answer was complete",
                                hint="the connection was cut; try again")
        if finish == "content_filter" or (refusal and not text):
            reason = "".join(refusal) or "the content filter stopped the answer"
            raise Refused(f"{self.id}:{request.model} refused: {reason}")
        for index in sorted(calls):
            yield self._tool_call(calls[index])
        if audio:
            yield PartOut(Audio(_pcm16_wav(b"".join(audio)), mime="audio/wav", name="answer.wav"))
        if request.want == Modality.DATA:
            try:
                yield PartOut(Data(json.loads("".join(text))))
            except json.JSONDecodeError as exc:
                raise SchemaError(f"{self.id} did not answer with JSON ({exc.msg})") from None
        usage_event = self._usage(request, usage, logprobs)
        if usage_event is not None:
            yield usage_event
        yield Done(finish)

    def _tool_call(self, slot: dict[str, str]) -> ToolCall:
        try:
            arguments = json.loads(slot["arguments"] or "{}")
        except json.JSONDecodeError as exc:
            raise UpstreamError(f"{self.id} asked for tool {slot['name']!r} with invalid JSON arguments ({exc.msg})",
                                hint="retry, or use a model that is better at tool calls") from None
        if not isinstance(arguments, dict):
            raise UpstreamError(f"{self.id} gave tool {slot['name']!r} arguments that are not a JSON object")
        return ToolCall(id=slot["id"], name=slot["name"], arguments=arguments)

    def _usage(self, request: Request, usage: Any, logprobs: list[float]) -> Usage | None:
        """Tokens and cost from the final usage chunk; the mean log-probability serves as a confidence."""
        extra: dict[str, Any] = {}
        if logprobs:
            extra["mean_logprob"] = sum(logprobs) / len(logprobs)
        if usage is None:  # a server that ignores stream_options reports nothing to count
            return Usage(extra=extra) if extra else None
        details = getattr(usage, "completion_tokens_details", None)
        if details is not None and getattr(details, "reasoning_tokens", None):
            extra["reasoning_tokens"] = details.reasoning_tokens
        prompt, completion = usage.prompt_tokens or 0, usage.completion_tokens or 0
        spec = self.spec(request.model)
        images, seconds = 0, 0.0
        if spec is not None and (spec.price_image or spec.price_audio_minute):  # decoding audio is not free
            images, seconds = self.media_counts([p for m in request.messages for p in m.parts])
        cost = self.estimate_cost(request.model, prompt, completion, images, seconds)
        return Usage(input_tokens=prompt, output_tokens=completion, cost=cost, extra=extra)

    # -- errors ---------------------------------------------------------------------------------
    def error(self, exc: openai.OpenAIError, request: Request) -> ImagineError:
        """The imagine error for an SDK failure. The key is never echoed, even if the server did."""
        import openai

        body = getattr(exc, "body", None)
        said = body.get("message") if isinstance(body, dict) else body
        message = scrub(str(said or getattr(exc, "message", "") or exc), self.api_key())
        code = str(body.get("code") or "") if isinstance(body, dict) else ""
        where = f"{self.id} ({self.url})"
        if isinstance(exc, openai.APITimeoutError):
            return UpstreamTimeout(f"{where} did not answer within {self.timeout(request.options):g} s",
                                   hint=f"raise the timeout option, or timeout in [endpoints.{self.id}]")
        if isinstance(exc, openai.APIConnectionError):
            return UpstreamError(f"cannot reach {self.url} for engine {self.id}: the endpoint is unreachable",
                                 hint="check that the server is running and the base URL is right")
        if isinstance(exc, openai.AuthenticationError):
            source = self.endpoint.key_env if not self.endpoint.api_key else f"api_key in [endpoints.{self.id}]"
            return EngineUnavailable(f"engine {self.id}: API key rejected by {self.url}",
                                     hint=f"check {source or 'the key'}")
        if isinstance(exc, openai.RateLimitError):
            quota = code == "insufficient_quota"
            return RateLimited(f"{where} is rate limiting: {message}", retry_after=retry_after_seconds(
                exc.response.headers), hint="check the plan and billing" if quota else "retry later")
        if isinstance(exc, openai.PermissionDeniedError):
            return EngineUnavailable(f"{where} refused access: {message}", hint="check the key's permissions")
        if isinstance(exc, openai.NotFoundError):
            if code == "model_not_found" or "model" in message.lower():
                return InputError(f"{where} has no model {request.model!r}: {message}",
                                  hint=f"known models: {', '.join(self.models())}")
            return UpstreamError(f"{where} answered 404 for chat completions: {message}",
                                 hint="check the base URL; compatible servers usually serve under /v1")
        if isinstance(exc, (openai.BadRequestError, openai.UnprocessableEntityError)):
            if code == "content_filter":
                return Refused(f"{where} refused the request: {message}")
            hint = "shorten the input or lower max_tokens" if code == "context_length_exceeded" else None
            return InputError(f"{where} rejected the request: {message}", hint=hint)
        if isinstance(exc, openai.APIStatusError):
            return UpstreamError(f"{where} failed with HTTP {exc.status_code}: {message}")
        return UpstreamError(f"{where} failed: {message}")


def _pcm16_wav(pcm: bytes) -> bytes:
    """WAV bytes around the raw 16-bit mono PCM that streamed audio answers carry."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(_AUDIO_OUT_RATE)
        wav.writeframes(pcm[: len(pcm) // 2 * 2])
    return buf.getvalue()
