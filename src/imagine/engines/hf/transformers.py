"""`transformers`: any Hugging Face chat model or vision-language model, run locally with torch.

Model names: a hub id, `-m transformers:OWNER/NAME` (downloaded once into the hub cache by
from_pretrained), or a folder written by save_pretrained, `-m transformers:./my-model`. There is no
default: pick the model you want. A folder is checked before anything heavy is imported: not a model,
a diffusers pipeline (the `diffusers` engine's), or pickle-only weights (refused unless
`-o allow_pickle=true`) fail at once, saying what to do.

Text models load as AutoTokenizer + AutoModelForCausalLM; the conversation goes through the tokenizer's
chat template, or, for a tokenizer without one (a base model), plain `role: text` lines ending in
`assistant:`. Vision-language models (_vision.py beside this file) take Image parts in message order.

generate() runs in a worker thread and hands text to the event loop through a TextIteratorStreamer.
Stop strings end generation at the token that completes them and are cut from the text. transformers
samples from torch's global RNG, so sampling generations take one process-wide lock, and a seeded one
seeds that RNG inside it (restoring it afterwards): a seed gives the same text even with other requests
running, at the price of running sampling generations one at a time.

A schema cannot constrain generation here: it goes into the system prompt, the answer is checked as JSON
against it, and a failing answer gets exactly one repair turn showing the validation error; if that
fails too, a SchemaError says so. Only the final, validated JSON is streamed.

Tools (`tools=`) go to the chat template (`apply_chat_template(tools=...)`) when it reads them (Qwen, Hermes,
Llama 3 and most recent templates mention `tools`); otherwise they are described in the system turn
(_support/tool_calls.py). Either way the model answers in the Hermes `<tool_call>{...}</tool_call>`
convention, which is parsed into ToolCall events; the call syntax is never streamed as text. There is no
grammar here, so a call may be malformed: the arguments are validated above the engine.
"""

from __future__ import annotations

import asyncio
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator, Sequence

from pydantic import Field

from ...engine import Engine, Request
from ...errors import ImagineError, InputError, SchemaError, UpstreamError
from ...events import Done, Event, TextDelta, ToolCall, Usage
from ...parts import Image, Modality, Text
from .._support.cache import model_cache
from .._support.options import StopStrings
from .._support.structured import REPAIR_NOTE, check_json, schema_note
from .._support.threads import Finished, stream_from_thread
from .._support.tool_calls import CallHolder, openai_tools, parse_tool_calls, tool_system_note, with_tool_turns
from .._support.tool_text import with_tools_as_text
from . import _hf
from ._vision import VLM_EXAMPLES, Turn, config_is_vision, fold_system, load_vision, looks_vision, vision_inputs

__all__ = ["Generated", "Loaded", "StopCutter", "TransformersEngine", "TransformersOptions", "run_generation"]

MODEL_HINT = ("name a model: -m transformers:OWNER/NAME (a hub id, e.g. HuggingFaceTB/SmolLM2-135M-Instruct) "
              "or -m transformers:./folder (made by save_pretrained)")
OTHER_KINDS = "for speech use hf-speech, for image generation diffusers, for embeddings clip"


@dataclass
class Loaded:
    """A loaded model with what decodes its tokens; `processor` is set for vision-language models."""
    model: Any
    tokenizer: Any
    processor: Any | None
    device: str
    dtype: Any

    @property
    def vision(self) -> bool:
        return self.processor is not None

    def parameters(self) -> Iterator[Any]:  # lets the model cache measure it
        return iter(self.model.parameters())


@dataclass(frozen=True)
class Generated:
    text: str            # what was streamed: stop strings and what followed them cut off
    input_tokens: int
    output_tokens: int   # every token generate() produced, the end-of-text one included
    finish: str          # "stop", "length" or "cancelled"


class StopCutter:
    """Cuts a text stream at the first stop string, holding back any tail that may start one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.buffer = ""
        self.hit = False

    def feed(self, text: str) -> str:
        if self.hit:
            return ""
        self.buffer += text
        found = [i for i in (self.buffer.find(s) for s in self.stops) if i >= 0]
        if found:
            self.hit = True
            out, self.buffer = self.buffer[:min(found)], ""
            return out
        hold = max((n for s in self.stops for n in range(1, len(s)) if self.buffer.endswith(s[:n])), default=0)
        out, self.buffer = self.buffer[:len(self.buffer) - hold], self.buffer[len(self.buffer) - hold:]
        return out

    def flush(self) -> str:
        out, self.buffer = ("" if self.hit else self.buffer), ""
        return out


# -- prompts -------------------------------------------------------------------------------------------

def _plain_prompt(chat: list[dict[str, str]]) -> str:
    """A base model without a chat template: `role: text` lines, then `assistant:` to answer after."""
    return "\n".join(f"{m['role']}: {m['content']}" for m in chat) + "\nassistant:"


def template_takes_tools(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template renders a `tools` list (one that does not ignores it silently)."""
    template = getattr(tokenizer, "chat_template", None)
    return isinstance(template, str) and "tools" in template


def render_text_prompt(tokenizer: Any, turns: Sequence[Turn], tools: list[dict[str, Any]] | None = None) -> str:
    def chat(turns: Sequence[Turn]) -> list[dict[str, str]]:
        return [{"role": role, "content": "\n".join(p for p in parts if isinstance(p, str))} for role, parts in turns]

    if not getattr(tokenizer, "chat_template", None):
        return _plain_prompt(chat(turns))
    from jinja2 import TemplateError

    try:
        return str(tokenizer.apply_chat_template(chat(turns), add_generation_prompt=True, tokenize=False,
                                                 **({"tools": tools} if tools else {})))
    except TemplateError:
        if not turns or turns[0][0] != "system":
            raise
        # some templates (Gemma's) refuse a system turn: fold it into the first user turn instead
        return str(tokenizer.apply_chat_template(chat(fold_system(turns)), add_generation_prompt=True, tokenize=False,
                                                 **({"tools": tools} if tools else {})))


def encode(loaded: Loaded, turns: Sequence[Turn], tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Model inputs (input_ids, attention_mask, pixels for a VLM) on the model's device."""
    from jinja2 import TemplateError

    try:
        if loaded.vision:
            return vision_inputs(loaded.processor, turns, loaded.device, loaded.dtype)
        prompt = render_text_prompt(loaded.tokenizer, turns, tools)
    except TemplateError as exc:  # e.g. "roles must alternate user/assistant"
        raise InputError(f"the model's chat template refused this conversation: {exc}",
                         hint="check the order of system, user and assistant turns") from None
    bos = getattr(loaded.tokenizer, "bos_token", None)
    # a chat template usually writes the BOS itself; adding another would put two in front
    batch = loaded.tokenizer(prompt, return_tensors="pt", add_special_tokens=not (bos and prompt.startswith(bos)))
    return {k: v.to(loaded.device) for k, v in batch.items()}


# -- generation (sync, torch-bound: runs in a worker thread) ----------------------------------------------

@contextmanager
def _rng(seed: int | None, sampling: bool, device: str) -> Iterator[None]:
    """Greedy decoding touches no RNG; sampling takes torch's global RNG (seeded when asked), one run at a
    time across every engine that samples from it."""
    if not sampling:
        yield
        return
    with _hf.global_torch_rng(seed, device):
        yield


def _eos_ids(loaded: Loaded) -> set[int]:
    ids = getattr(loaded.model.generation_config, "eos_token_id", None) or loaded.tokenizer.eos_token_id
    return set(ids if isinstance(ids, (list, tuple)) else [] if ids is None else [ids])


def run_generation(loaded: Loaded, turns: Sequence[Turn], opts: TransformersOptions, *,
                   on_text: Callable[[str], None], cancel: threading.Event,
                   tools: list[dict[str, Any]] | None = None) -> Generated:
    """Generate one answer to `turns`, passing each piece of (stop-cut) text to `on_text` as it comes."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

    inputs = encode(loaded, turns, tools)
    prompt_len = int(inputs["input_ids"].shape[1])
    tokenizer = loaded.tokenizer
    stops = [s for s in (opts.stop or []) if s]
    window = 4 * max((len(s) for s in stops), default=0) + 8  # tokens enough to hold the longest stop
    stop_hit = threading.Event()

    class Halt(StoppingCriteria):
        """Ends generation when the caller leaves, or at the token that completes a stop string."""

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            done = cancel.is_set() or stop_hit.is_set()
            if not done and stops:
                tail = tokenizer.decode(input_ids[0, prompt_len:][-window:], skip_special_tokens=True)
                if any(s in tail for s in stops):
                    stop_hit.set()
                    done = True
            return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

    sampling = opts.temperature > 0
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    kwargs: dict[str, Any] = dict(inputs, max_new_tokens=opts.max_tokens, do_sample=sampling, streamer=streamer,
                                  stopping_criteria=StoppingCriteriaList([Halt()]))
    if sampling:
        kwargs["temperature"] = opts.temperature
        kwargs.update({k: v for k, v in (("top_p", opts.top_p), ("top_k", opts.top_k)) if v is not None})
    if opts.repetition_penalty is not None:
        kwargs["repetition_penalty"] = opts.repetition_penalty
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
        kwargs["pad_token_id"] = tokenizer.eos_token_id
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            with torch.inference_mode(), _rng(opts.seed, sampling, loaded.device):
                result["out"] = loaded.model.generate(**kwargs)
        except BaseException as exc:  # re-raised on the streaming side
            result["error"] = exc
            streamer.end()  # unblock the reader below

    thread = threading.Thread(target=work, name="imagine-transformers-generate", daemon=True)
    thread.start()
    cutter, pieces = StopCutter(stops), []
    for piece in streamer:
        out = cutter.feed(piece)
        if out:
            pieces.append(out)
            on_text(out)
    thread.join()
    if "error" in result:
        raise result["error"]
    tail = cutter.flush()
    if tail:
        pieces.append(tail)
        on_text(tail)
    out = result["out"]
    sequences = getattr(out, "sequences", out)
    new = sequences[0, prompt_len:]
    produced = int(new.shape[0])
    if cancel.is_set():
        finish = "cancelled"
    elif stop_hit.is_set() or cutter.hit:
        finish = "stop"
    elif produced >= opts.max_tokens and int(new[-1]) not in _eos_ids(loaded):
        finish = "length"
    else:
        finish = "stop"
    return Generated("".join(pieces), prompt_len, produced, finish)


# -- structured output -------------------------------------------------------------------------------------

def with_schema(turns: list[Turn], schema: dict[str, Any]) -> list[Turn]:
    """The conversation with the schema instruction added to (or as) the system turn."""
    note = schema_note(schema)
    if turns and turns[0][0] == "system":
        return [("system", [*turns[0][1], "\n\n" + note]), *turns[1:]]
    return [("system", [note]), *turns]


def with_tools_note(turns: list[Turn], tools: Sequence[dict[str, Any]]) -> list[Turn]:
    """For a template that does not take tools: the tools and the call syntax in the system turn."""
    note = tool_system_note(tools)
    if turns and turns[0][0] == "system":
        return [("system", [*turns[0][1], "\n\n" + note]), *turns[1:]]
    return [("system", [note]), *turns]


# -- the engine ------------------------------------------------------------------------------------------

class TransformersOptions(_hf.HFOptions):
    max_tokens: int = Field(default=256, gt=0, le=100_000, description="most tokens to generate")
    temperature: float = Field(default=0.7, ge=0, le=5, description="0 = greedy")
    top_p: float | None = Field(default=None, gt=0, le=1, description="nucleus sampling; null = the model's default")
    top_k: int | None = Field(default=None, ge=0, description="keep the k likeliest tokens; null = the model's default")
    seed: int | None = Field(default=None, ge=0, description="same seed, same text")
    stop: StopStrings = Field(default=None, description="strings that end the answer (not included)")
    repetition_penalty: float | None = Field(default=None, gt=0, description="1.0 = off")
    trust_remote_code: bool = Field(default=False, description="run the model repo's own Python code")


class TransformersEngine(Engine[TransformersOptions]):
    id = "transformers"
    locality = "local"
    inputs = frozenset({Modality.TEXT, Modality.IMAGE})
    outputs = frozenset({Modality.TEXT})
    features = frozenset({"stream", "seed", "stop", "json_schema", "system", "tools"})
    default_model = ""
    model_hint = MODEL_HINT
    description = "Any Hugging Face chat or vision-language model via transformers (-m transformers:OWNER/NAME)"
    requires = ("torch", "transformers")
    extra = "hf"
    package = "transformers"
    auto_select = False  # no default model: used when named

    Options = TransformersOptions

    # -- models ---------------------------------------------------------------------------------------
    def _source(self, model: str, allow_pickle: bool) -> _hf.ModelSource:
        source = _hf.inspect_model(model, allow_pickle=allow_pickle)
        if source.kind == "pipeline":
            raise InputError(f"{model} is a diffusers pipeline ({source.model_type or 'model_index.json'}), "
                             "which makes images; the transformers engine runs chat and vision-language models",
                             hint=f"use -m diffusers:{model} (e.g. `imagine draw`)")
        return source

    def check_model(self, model: str) -> None:
        self._source(model, allow_pickle=True)  # the pickle check needs the request's options: done in stream

    def explain_misfit(self, model: str, needed: frozenset[Modality], want: Modality) -> None:
        if Modality.IMAGE in needed and Modality.IMAGE not in self.capabilities(model)[0]:
            raise self._no_vision(model)

    def capabilities(self, model: str) -> tuple[frozenset[Modality], frozenset[Modality], frozenset[str]]:
        """A local text-only model takes no images (read from its config.json, nothing loaded)."""
        try:
            source = _hf.inspect_model(model, allow_pickle=True)
        except ImagineError:
            return self.inputs, self.outputs, self.features
        if source.local and config_is_vision(source.config) is False:
            return frozenset({Modality.TEXT}), self.outputs, self.features
        return self.inputs, self.outputs, self.features

    def load(self, source: _hf.ModelSource, opts: TransformersOptions) -> Loaded:
        """The model for `source`, loaded once per process through the shared HF model cache."""
        device = _hf.pick_device(opts.device)
        dtype = _hf.pick_dtype(opts.dtype, device)
        stamp = (Path(source.ref) / "config.json").stat().st_mtime_ns if source.local else 0
        key = ("transformers", source.ref, stamp, device, str(dtype), opts.allow_pickle, opts.trust_remote_code)
        loaded: Loaded = model_cache().get(key, lambda: self._load(source, device, dtype, opts))
        return loaded

    def _load(self, source: _hf.ModelSource, device: str, dtype: Any, opts: TransformersOptions) -> Loaded:
        import transformers

        common = {"trust_remote_code": opts.trust_remote_code}
        weights = _hf.hub_kwargs(source, opts.allow_pickle)
        try:
            config = transformers.AutoConfig.from_pretrained(source.ref, **common)
            if looks_vision(source.ref, config, common):
                model, processor = load_vision(source.ref, dtype=dtype, device=device, common=common, weights=weights)
                return Loaded(model, processor.tokenizer, processor, device, dtype)
            try:
                tokenizer = transformers.AutoTokenizer.from_pretrained(source.ref, **common)
            except (OSError, ValueError) as exc:
                raise InputError(f"{source.ref} has no usable tokenizer ({str(exc).strip().splitlines()[0][:120]})",
                                 hint="save it beside the model: tokenizer.save_pretrained(FOLDER)") from None
            causal: Any = transformers.AutoModelForCausalLM.from_pretrained(source.ref, **{_hf.transformers_dtype_kwarg(): dtype}, **weights,
                                                                             **common)
        except ImagineError:
            raise
        except (OSError, ValueError, KeyError, ImportError, TypeError) as exc:
            raise self._load_error(source, exc) from None
        return Loaded(causal.to(device).eval(), tokenizer, None, device, dtype)

    @staticmethod
    def _load_error(source: _hf.ModelSource, exc: Exception) -> ImagineError:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        if isinstance(exc, ValueError) and "Unrecognized configuration class" in str(exc):
            return InputError(f"{source.ref} ({source.model_type or 'this model'}) is not a text-generation or "
                              "vision-language model", hint=f"the transformers engine runs those; {OTHER_KINDS}")
        if isinstance(exc, ImportError):
            return InputError(f"loading {source.ref} needs another package: {first}", hint="pip install it and retry")
        return _hf.hub_load_error(source, "transformers", exc)

    # -- requests -------------------------------------------------------------------------------------
    @staticmethod
    def turns(request: Request) -> list[Turn]:
        """The conversation as (role, ordered text and image parts); other roles read as user turns."""
        out: list[Turn] = []
        # with tools, earlier calls and results in the syntax the model is asked to write; else as plain text
        messages = with_tool_turns(request.messages, ()) if request.tools else with_tools_as_text(request.messages)
        for msg in messages:
            parts: list[str | Image] = []
            for part in msg.parts:
                if isinstance(part, Text):
                    parts.append(part.text)
                elif isinstance(part, Image):
                    parts.append(part)
                else:
                    raise InputError(f"the transformers engine takes text and images, not {part.modality.value}",
                                     hint=OTHER_KINDS)
            role = msg.role if msg.role in ("system", "user", "assistant") else "user"
            out.append((role, parts))
        return out

    @staticmethod
    def _no_vision(model: str) -> InputError:
        return InputError(f"{model} is a text-only model: it has no vision tower to look at images",
                          hint=f"use a vision-language model, e.g. -m transformers:{VLM_EXAMPLES.split(' or ')[0]}")

    async def stream(self, request: Request[TransformersOptions]) -> AsyncIterator[Event]:
        opts = request.options
        source = self._source(request.model, opts.allow_pickle)
        turns = self.turns(request)
        has_images = any(isinstance(p, Image) for _, parts in turns for p in parts)
        if has_images and source.local and config_is_vision(source.config) is False:
            raise self._no_vision(request.model)  # before loading anything
        loaded = await asyncio.to_thread(self.load, source, opts)
        if has_images and not loaded.vision:
            raise self._no_vision(request.model)
        if request.schema is None and request.tools:
            async for event in self._with_tools(loaded, turns, opts, list(request.tools)):
                yield event
            return
        if request.schema is None:
            async for item in self._generate(loaded, turns, opts, stream=True):
                if isinstance(item, str):
                    yield TextDelta(item)
                else:
                    yield Usage(input_tokens=item.input_tokens, output_tokens=item.output_tokens, cost=0.0)
                    yield Done(item.finish)
            return
        async for event in self._structured(loaded, turns, opts, request.schema):
            yield event

    async def _with_tools(self, loaded: Loaded, turns: list[Turn], opts: TransformersOptions,
                          tools: list[dict[str, Any]]) -> AsyncIterator[Event]:
        """Stream the answer's text up to its first `<tool_call>`, then turn the calls into ToolCall events.
        A block that does not parse is passed on as the text the model wrote, not dropped."""
        native = not loaded.vision and template_takes_tools(loaded.tokenizer)
        if not native:
            turns = with_tools_note(turns, tools)
        holder = CallHolder()
        template_tools = openai_tools(tools) if native else None
        async for item in self._generate(loaded, turns, opts, stream=True, tools=template_tools):
            if isinstance(item, str):
                text = holder.feed(item)
                if text:
                    yield TextDelta(text)
                continue
            calls: list[ToolCall] = []
            if holder.calling:
                _, calls, _problems = parse_tool_calls(holder.held)
                if not calls:
                    yield TextDelta(holder.held)
            tail = holder.flush()
            if tail:
                yield TextDelta(tail)
            for call in calls:
                yield call
            yield Usage(input_tokens=item.input_tokens, output_tokens=item.output_tokens, cost=0.0)
            yield Done("tool_calls" if calls and item.finish == "stop" else item.finish)

    async def _structured(self, loaded: Loaded, turns: list[Turn], opts: TransformersOptions,
                          schema: dict[str, Any]) -> AsyncIterator[Event]:
        """Generate, check against the schema, and on failure repair once; stream only valid JSON."""
        turns = with_schema(turns, schema)
        usage = Usage(cost=0.0)
        problem: str | None = None
        for _ in range(2):
            last = [r async for r in self._generate(loaded, turns, opts, stream=False)][-1]
            assert isinstance(last, Generated)
            result = last
            usage = usage + Usage(input_tokens=result.input_tokens, output_tokens=result.output_tokens, cost=0.0)
            if result.finish == "cancelled":
                yield usage
                yield Done("cancelled")
                return
            body, problem = check_json(result.text, schema)
            if problem is None:
                yield TextDelta(body)
                yield usage
                yield Done(result.finish)
                return
            turns = [*turns, ("assistant", [result.text]), ("user", [REPAIR_NOTE.format(problem=problem)])]
        yield usage  # the tokens were spent even though the answer is unusable
        excerpt = result.text.strip().replace("\n", " ")[:80]
        raise SchemaError(f"the model's answer failed the schema even after one repair attempt: {problem} "
                          f"(answer began {excerpt!r})",
                          hint="use a stronger (instruction-tuned) model, simplify the schema, or raise max_tokens")

    async def _generate(self, loaded: Loaded, turns: list[Turn], opts: TransformersOptions, *,
                        stream: bool, tools: list[dict[str, Any]] | None = None) -> AsyncIterator[str | Generated]:
        """Pieces of text as they come (when `stream`), then the Generated summary."""

        def produce(emit: Callable[[str], None], cancel: threading.Event) -> Generated:
            extra = {"tools": tools} if tools else {}  # the plain call stays the seam tests replace
            return run_generation(loaded, turns, opts, on_text=emit if stream else (lambda _text: None),
                                  cancel=cancel, **extra)

        try:
            async for item in stream_from_thread(produce):
                yield item.value if isinstance(item, Finished) else item
        except ImagineError:
            raise
        except Exception as exc:  # transformers' own errors, raised in the worker
            raise UpstreamError(f"transformers generation failed: {type(exc).__name__}: {exc}") from None
