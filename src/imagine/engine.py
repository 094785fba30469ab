"""Engine contract, Request, and Response: the one request -> response path.

An engine is a class with capability flags, generic over its pydantic options model
(`class FooEngine(Engine[FooOptions])` with `Options = FooOptions`); it implements one method,
`async def stream(request: Request[FooOptions]) -> AsyncIterator[Event]`. A `Response` drives that stream
lazily: iterate it (sync or async) to stream text, or ask for `.text()` / `.parsed` to run it to the end.
When it ends — normally, on error, or cancelled — it calls its `on_finish` hook once (the log), so nothing
computed is lost.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import importlib.util
import json
import math
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, ClassVar, Generic, Iterator, Literal, TypeVar, cast

from pydantic import BaseModel, ConfigDict, ValidationError

from . import errors
from ._bridge import iterate_sync, run_sync
from .errors import ImagineError, InputError, OptionsError, SchemaError, UpstreamError
from .events import Done, Error, Event, PartDelta, PartOut, Restart, TextDelta, ToolCall, Usage
from .parts import DEFAULT_LIMITS, Limits, Message, Modality, Part, Text, ToolUse

if TYPE_CHECKING:
    from .config import EndpointSettings, ModelSpec

__all__ = ["Engine", "Locality", "NoOptions", "OptionsT", "Request", "Response", "check_finite", "installed",
           "new_id", "normalize_tools"]

Locality = Literal["local", "cloud"]
# An engine's options model: `Engine[OptionsT]` validates into it, `Request[OptionsT]` carries it.
OptionsT = TypeVar("OptionsT", bound=BaseModel)


# Called with a Response whose log could not be written (its `log_error` says why): the CLI registers
# one that prints a single `warning: not logged: ...` line for every command.
LOG_FAILURE_HOOKS: list[Callable[["Response"], None]] = []


_INSTALLED: set[str] = set()


def installed(module: str) -> bool:
    """Whether `module` can be imported. Availability is checked on every request (the registry hands out
    engines through it), and `find_spec` stats the file system each time: a module found once stays found
    (a package does not vanish from a running process); one not found is looked for again next time."""
    if module in _INSTALLED or sys.modules.get(module) is not None:
        return True
    if importlib.util.find_spec(module) is None:
        return False
    _INSTALLED.add(module)
    return True


def new_id() -> str:
    """Time-sortable unique id: 12 hex digits of milliseconds + 12 random hex digits."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(6)}"


class NoOptions(BaseModel):
    """The options of an engine that takes none (the default `Engine.Options`): any option is an error."""

    model_config = ConfigDict(extra="forbid")


def check_finite(options: dict[str, Any] | None, path: str = "") -> None:
    """Engine options are never nan or infinite (NaN compares false and slips past every bound): the raw
    options a caller gave, and every engine's options once parsed (`"nan"` as text parses to a float nan)."""
    if not isinstance(options, dict):
        return
    for key, value in options.items():
        name = f"{path}{key}"
        if isinstance(value, float) and not math.isfinite(value):
            raise OptionsError(f"option {name!r} must be a finite number, not {value!r}")
        if isinstance(value, dict):
            check_finite(value, f"{name}.")
        if isinstance(value, (list, tuple)):
            check_finite({str(i): v for i, v in enumerate(value)}, f"{name}.")



@functools.lru_cache(maxsize=None)
def _package_version(name: str) -> str:
    """'name X.Y.Z', read once per process: the log asks on every response, and reading package metadata
    parses files (it was the largest single cost of a logged request in bench/server_overhead.py)."""
    try:
        return f"{name} {importlib.metadata.version(name)}"
    except importlib.metadata.PackageNotFoundError:
        return name

class Engine(Generic[OptionsT]):
    """Base class of every backend. Subclasses name their options model as the type parameter and as
    `Options` (`class FooEngine(Engine[FooOptions])`, `Options = FooOptions`), set the class attributes
    and implement `stream`."""

    id: ClassVar[str]
    locality: ClassVar[Locality] = "local"
    inputs: ClassVar[frozenset[Modality]] = frozenset({Modality.TEXT})
    outputs: ClassVar[frozenset[Modality]] = frozenset({Modality.TEXT})
    features: ClassVar[frozenset[str]] = frozenset()  # "stream", "json_schema", "tools", "seed", "stop"
    # A request must carry at least one of these (e.g. speech engines take text only as a hint beside audio).
    needs_one_of: ClassVar[frozenset[Modality]] = frozenset()
    default_model: ClassVar[str] = ""
    model_hint: ClassVar[str | None] = None     # how to name a model, shown when none is given and no default
    auto_select: ClassVar[bool] = True  # may `auto`/`local`/`cloud` pick it (False: only when named)
    locality_reason: ClassVar[str] = ""  # why it counts as local or cloud, where that is not obvious
    kind: ClassVar[str | None] = None  # wire protocol of an API engine bound to endpoints ("openai", ...)
    # Runs the model inside this process (its CPU/GPU), so a server queues its requests; False for an engine
    # that calls a server (even a local vLLM or llama.cpp server batches and queues on its own).
    in_process: ClassVar[bool] = True
    # Its models' own choice between calling a tool and answering is unreliable (a small local model): an
    # agent then lets the request's closeness in meaning to each tool decide the first call (agents/choose.py).
    weak_tool_choice: ClassVar[bool] = False
    description: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()  # importable modules the engine needs
    extra: ClassVar[str | None] = None  # the pip extra that installs them
    package: ClassVar[str | None] = None  # distribution whose version identifies the backend
    # The options model, the same class as the type parameter (a ClassVar cannot name a TypeVar): what
    # `parse_options` validates into and what `imagine models ENGINE` lists.
    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        self.settings = dict(settings or {})
        # where the engine may keep small files between runs (a provider's model list): the registry sets
        # its home/cache here, so two clients with different homes keep theirs apart
        self.cache_dir: Path | None = None

    def settings_as(self, model: type[BaseModel]) -> Any:
        """This engine's [engines.ID] table from config.toml validated by `model`; a bad key or value is
        a ConfigError naming the table and field."""
        from .errors import ConfigError

        try:
            return model(**self.settings)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise ConfigError(f"[engines.{self.id}] {'.'.join(map(str, err['loc']))}: {err['msg']}",
                              hint="fix config.toml") from None

    # -- capabilities ---------------------------------------------------------------------------
    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None when the engine can run here, else a sentence saying how to make it available."""
        missing = [m for m in cls.requires if not installed(m)]
        if missing:
            extra = f"pip install 'imagine[{cls.extra}]'" if cls.extra else f"pip install {' '.join(missing)}"
            return f"needs {', '.join(missing)}: {extra}"
        return None

    @classmethod
    def version(cls) -> str:
        return _package_version(cls.package or "imagine")

    # -- endpoints (API engines: one engine per configured endpoint) ----------------------------
    @classmethod
    def default_endpoint(cls) -> "EndpointSettings | None":
        """The endpoint a built-in API engine binds to without config (None: not an API engine)."""
        return None

    @classmethod
    def for_endpoint(cls, name: str, endpoint: "EndpointSettings") -> "type[Engine]":
        """A subclass of this API engine bound to `endpoint` under the id `name`."""
        raise TypeError(f"engine {cls.id} does not bind to endpoints")

    def spec(self, model: str) -> "ModelSpec | None":
        """What one model takes, gives and costs, where the engine knows (API engines); None otherwise."""
        return None

    def models(self) -> list[str]:
        """Models this engine knows by name (the default first); others may still be accepted."""
        return [self.default_model] if self.default_model else []

    def check_model(self, model: str) -> None:
        """Fail fast, before streaming, when `model` cannot be used (missing file, wrong format)."""

    def capabilities(self, model: str) -> tuple[frozenset[Modality], frozenset[Modality], frozenset[str]]:
        """(inputs, outputs, features) of one model; engines whose models differ override this."""
        return self.inputs, self.outputs, self.features

    def explain_misfit(self, model: str, needed: frozenset[Modality], want: Modality) -> None:
        """Raise an InputError that says why `model` cannot take a request of this shape, where the engine
        knows better than "does not produce audio" (the router asks before refusing a named model)."""

    def estimate_cost(self, model: str, input_tokens: int, output_tokens: int, images: int = 0,
                      audio_seconds: float = 0.0) -> float | None:
        """US dollars for a call of this size, None when unknown; local engines cost nothing."""
        return 0.0 if self.locality == "local" else None

    def context_window(self, model: str, options: Any) -> int | None:
        """The model's context window in tokens with these (parsed) options, None when unknown; the router
        refuses a prompt that cannot fit it before anything runs."""
        spec = self.spec(model)
        return spec.context if spec is not None else None

    # -- options --------------------------------------------------------------------------------
    @classmethod
    def parse_options(cls, raw: dict[str, Any] | BaseModel | None) -> OptionsT:
        """Validate options against `Options`; the error names the field and what it accepts."""
        if isinstance(raw, cls.Options):
            return cast(OptionsT, raw)  # `Options` is the class OptionsT stands for
        if isinstance(raw, BaseModel):
            raw = raw.model_dump(exclude_unset=True)
        try:
            parsed = cls.Options(**(raw or {}))
        except ValidationError as exc:
            err = exc.errors()[0]
            name = ".".join(str(p) for p in err["loc"]) or "options"
            known = ", ".join(cls.Options.model_fields) or "none"
            if err["type"] == "extra_forbidden":
                raise OptionsError(f"unknown option {name!r} for engine {cls.id}",
                                   hint=f"options it accepts: {known}") from None
            raise OptionsError(f"option {name!r} for engine {cls.id}: {err['msg']} "
                               f"(got {err.get('input')!r})") from None
        check_finite(parsed.model_dump())
        return cast(OptionsT, parsed)

    # -- the one method -------------------------------------------------------------------------
    async def stream(self, request: "Request[OptionsT]") -> AsyncIterator[Event]:
        raise NotImplementedError
        yield  # pragma: no cover  (makes this an async generator for type checkers)

    async def aclose(self) -> None:
        """Release what the engine keeps between requests (connection pools); it may still be used after.
        Called on imagine's background loop, where such resources live."""


@dataclass(frozen=True)
class Request(Generic[OptionsT]):
    """Everything an engine needs for one call. `options` is already validated by the engine: an
    `Engine[FooOptions]` streams a `Request[FooOptions]` (a bare `Request` holds any options model)."""

    messages: tuple[Message, ...]
    model: str
    options: OptionsT
    schema: dict[str, Any] | None = None
    want: Modality = Modality.TEXT
    tools: tuple[dict[str, Any], ...] = ()  # {"name", "description", "parameters": JSON schema}
    limits: Limits = DEFAULT_LIMITS  # decoded-media caps from the caller's settings (engines read these, not globals)

    def __post_init__(self) -> None:
        if self.tools:  # engines see one shape, whatever format the caller used
            object.__setattr__(self, "tools", normalize_tools(self.tools))

    @property
    def input_modalities(self) -> set[Modality]:
        return {m for msg in self.messages for m in msg.modalities}


def normalize_tools(tools: Any) -> tuple[dict[str, Any], ...]:
    """Tool definitions as `{"name", "description", "parameters"}`, the one shape engines read.

    Accepted: that shape itself, OpenAI's `{"type": "function", "function": {...}}`, Anthropic's
    `{"name", "description", "input_schema"}`, and (see tools.py) Python functions, pydantic model classes
    and `Tool`s. A malformed definition is an InputError naming the field
    (e.g. `tools[1].function.name is missing`), raised before any engine is called."""
    if isinstance(tools, (str, bytes, dict)) or not hasattr(tools, "__iter__"):
        raise InputError(f"tools must be a list of tool definitions, not {type(tools).__name__}",
                         hint='each one {"name", "description", "parameters"} or OpenAI\'s {"type": "function", '
                              '"function": {...}}')
    out = []
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        if not isinstance(tool, dict):  # a function, a pydantic class or a Tool: its spec
            from .tools import spec_of

            tool = spec_of(tool)
        if not isinstance(tool, dict):
            raise InputError(f"{where} must be a dict, not {type(tool).__name__}")
        kind = tool.get("type", "function")
        if kind != "function":
            raise InputError(f"{where}.type is {kind!r}: only function tools are supported")
        spec: Any = tool
        if "function" in tool or ("type" in tool and "name" not in tool):  # OpenAI's {"type", "function": {...}}
            spec, where = tool.get("function"), f"{where}.function"
            if not isinstance(spec, dict):
                raise InputError(f"{where} is missing" if spec is None
                                 else f"{where} must be a dict, not {type(spec).__name__}")
        name = spec.get("name")
        if name is None:
            raise InputError(f"{where}.name is missing")
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"{where}.name must be a non-empty string, not {name!r}")
        description = spec.get("description")
        if description is not None and not isinstance(description, str):
            raise InputError(f"{where}.description must be a string, not {type(description).__name__}")
        key = "parameters" if "parameters" in spec or "input_schema" not in spec else "input_schema"
        parameters = spec.get(key)
        if parameters is not None and not isinstance(parameters, dict):
            raise InputError(f"{where}.{key} must be a JSON schema (a dict), not {type(parameters).__name__}")
        out.append({"name": name, "description": description or "",
                    "parameters": parameters or {"type": "object", "properties": {}}})
    return tuple(out)


def _exception_for(event: Error) -> ImagineError:
    cls = getattr(errors, event.kind, None)
    if not (isinstance(cls, type) and issubclass(cls, ImagineError)):
        cls = UpstreamError
    return cls(event.message, hint=event.hint)


@dataclass(eq=False)
class Response:
    """A lazy result over an engine's events. Sync and async use share this one class:

    `for delta in r` / `async for delta in r` stream text; `r.text()` or `await r` run it to the end.
    """

    engine: Engine  # the plan's first engine; `answered_by` names the one that answered after a fallback
    request: Request
    schema_model: type[BaseModel] | None = None
    on_finish: Callable[["Response"], None] | None = None
    conversation_id: str | None = None
    id: str = field(default_factory=new_id)
    model_ref: str = ""
    decision: Any = None  # the router's Decision: candidates, attempts, the one that answered
    source: Engine | None = None  # what streams the events (the plan's executor); the engine itself if None

    events_seen: list[Event] = field(default_factory=list, init=False)
    error: ImagineError | None = field(default=None, init=False)
    finish_reason: str | None = field(default=None, init=False)
    started_at: float | None = field(default=None, init=False)  # wall clock (time.time)
    latency_s: float | None = field(default=None, init=False)
    ttft_s: float | None = field(default=None, init=False)
    _log_error: str | None = field(default=None, init=False)
    _log_error_read: bool = field(default=False, init=False)
    _parsed: Any = field(default=None, init=False)
    _state: str = field(default="new", init=False)  # new -> running -> done

    # -- driving the engine -------------------------------------------------------------------
    async def aevents(self) -> AsyncIterator[Event]:
        """All events, streamed the first time and replayed afterwards."""
        if self._state == "done":
            for event in self.events_seen:
                yield event
            if self.error:
                raise self.error
            return
        if self._state == "running":
            raise RuntimeError("this response is already being consumed elsewhere")
        self._state = "running"
        self.started_at = time.time()
        t0 = time.perf_counter()
        stream = (self.source or self.engine).stream(self.request)
        try:
            async for event in stream:
                if self.ttft_s is None and isinstance(event, (TextDelta, PartDelta, PartOut)):
                    self.ttft_s = time.perf_counter() - t0
                if isinstance(event, ToolCall):
                    self._check_tool_call(event)
                self.events_seen.append(event)
                if isinstance(event, Error):
                    self.error = _exception_for(event)
                    break
                if isinstance(event, Done):
                    self.finish_reason = event.finish_reason
                yield event
        except ImagineError as exc:
            self.error = exc
        except (asyncio.CancelledError, GeneratorExit, KeyboardInterrupt):
            self.finish_reason = "cancelled"
            self._finish(time.perf_counter() - t0)
            raise
        except Exception as exc:  # an engine bug or library failure: report it, keep what we have
            self.error = UpstreamError(f"engine {self.engine.id} failed: {type(exc).__name__}: {exc}")
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        self._finish(time.perf_counter() - t0)
        if self.error:
            raise self.error

    def _finish(self, elapsed: float) -> None:
        if self._state == "done":
            return
        self._state = "done"
        self.latency_s = elapsed
        if self.finish_reason is None:
            self.finish_reason = "error" if self.error else "stop"
        if self.error is None and self.request.schema is not None and self.finish_reason != "cancelled":
            try:
                self._parsed = self._validate_schema()
            except SchemaError as exc:
                self.error = exc
        if self.on_finish is not None:
            try:
                self.on_finish(self)
            except Exception as exc:  # a failing log (full disk, bad database) must not lose the answer
                self.log_error = str(exc) if isinstance(exc, ImagineError) else f"{type(exc).__name__}: {exc}"
                for hook in LOG_FAILURE_HOOKS:
                    hook(self)

    @property
    def log_error(self) -> str | None:
        """Why this response could not be logged (None when it was, or logging is off). Reading it counts
        as reporting it: the CLI warns about the log failures no command has read."""
        self._log_error_read = True
        return self._log_error

    @log_error.setter
    def log_error(self, value: str | None) -> None:
        self._log_error = value

    def _check_tool_call(self, call: ToolCall) -> None:
        """Every engine's tool calls are checked here, once: the tool must be one the request offered and its
        arguments must fit that tool's schema, else a SchemaError naming the tool and the field (an agent
        can hand it back to the model). A grammar makes this hold by construction on llama.cpp; API models
        and prompted local ones can get it wrong."""
        if not self.request.tools:
            return
        from .tools import as_tool, check_arguments

        spec = next((t for t in self.request.tools if t["name"] == call.name), None)
        error: SchemaError | None = None
        if spec is None:
            offered = ", ".join(t["name"] for t in self.request.tools)
            error = SchemaError(f"the model called tool {call.name!r}, which it was not given",
                                hint=f"tools offered: {offered}")
        else:
            try:
                check_arguments(as_tool(spec), call.arguments)
            except InputError as exc:
                error = SchemaError(f"the model called a tool with invalid arguments: {exc}",
                                    hint="use a stronger model, or describe the parameters more plainly")
        if error is not None:
            error.tool_call = call  # type: ignore[attr-defined]  # the agent answers this call with the error
            raise error

    def _validate_schema(self) -> Any:
        import jsonschema

        text = self.text_so_far()
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SchemaError(f"model output is not valid JSON ({exc.msg} at char {exc.pos})",
                              hint="raise max_tokens if it was cut off, or use a stronger model") from None
        assert self.request.schema is not None
        try:
            jsonschema.validate(value, self.request.schema)
        except jsonschema.ValidationError as exc:
            where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
            raise SchemaError(f"model output does not match the schema at {where}: {exc.message}",
                              hint="use a stronger model or simplify the schema") from None
        if self.schema_model is not None:
            try:
                return self.schema_model.model_validate(value)
            except ValidationError as exc:
                raise SchemaError(f"model output does not validate as {self.schema_model.__name__}: "
                                  f"{exc.errors()[0]['msg']}") from None
        return value

    # -- streaming interfaces -----------------------------------------------------------------
    async def _atext_deltas(self) -> AsyncIterator[str]:
        events = self.aevents()
        try:
            async for event in events:
                if isinstance(event, TextDelta):
                    yield event.text
        finally:  # leaving early must close the engine stream now, not whenever GC runs
            await events.aclose()  # type: ignore[attr-defined]

    def __aiter__(self) -> AsyncIterator[str]:
        return self._atext_deltas()

    def __iter__(self) -> Iterator[str]:
        return iterate_sync(self._atext_deltas())

    def events(self) -> Iterator[Event]:
        """All events, from sync code."""
        return iterate_sync(self.aevents())

    async def _complete(self) -> "Response":
        async for _ in self.aevents():
            pass
        return self

    def __await__(self) -> Any:
        return self._complete().__await__()

    def complete(self) -> "Response":
        """Run to the end from sync code (no-op when already done); raises the engine's error."""
        if self._state != "done":
            run_sync(self._complete())
        elif self.error:
            raise self.error
        return self

    # -- results (sync; they finish the response first) ---------------------------------------
    def _current(self) -> list[Event]:
        """Events since the last restart (a router fallback starts the answer over)."""
        start = 0
        for i, event in enumerate(self.events_seen):
            if isinstance(event, Restart):
                start = i + 1
        return self.events_seen[start:]

    def text_so_far(self) -> str:
        return "".join(e.text for e in self._current() if isinstance(e, TextDelta))

    def text(self) -> str:
        return self.complete().text_so_far()

    @property
    def done(self) -> bool:
        return self._state == "done"

    @property
    def parts(self) -> list[Part]:
        self.complete()
        return [e.part for e in self._current() if isinstance(e, PartOut)]

    @property
    def tool_calls(self) -> list[ToolCall]:
        """The tools the model asked to run (empty when it answered outright)."""
        self.complete()
        return [e for e in self._current() if isinstance(e, ToolCall)]

    def as_message(self) -> Message:
        """The answer as the assistant turn of a conversation: its text, then one `ToolUse` per tool call,
        so an agent loop can go on with `history += [resp.as_message(), Message.tool_result(...)]`."""
        text = self.text()
        parts: list[Part] = [Text(text)] if text else []
        parts += [ToolUse(call.id, call.name, call.arguments) for call in self.tool_calls]
        return Message("assistant", parts)

    @property
    def usage(self) -> Usage:
        if self._state != "done":
            self.complete()
        total = Usage()
        for event in self.events_seen:
            if isinstance(event, Usage):
                total = total + event
        return total

    def json(self) -> Any:
        """The output parsed as JSON (validated against the schema when one was given)."""
        self.complete()
        if self.request.schema is not None:
            return self._parsed.model_dump() if isinstance(self._parsed, BaseModel) else self._parsed
        try:
            return json.loads(self.text_so_far())
        except json.JSONDecodeError as exc:
            raise SchemaError(f"response is not JSON: {exc.msg}", hint="pass schema= to constrain output") from None

    @property
    def parsed(self) -> Any:
        """The validated object: a pydantic instance when a model class was the schema, else the JSON value."""
        self.complete()
        if self.request.schema is None:
            raise SchemaError("no schema was requested", hint="call ask(..., schema=Model)")
        return self._parsed

    @property
    def answered_by(self) -> tuple[Engine, str]:
        """(engine, model) that produced the answer: the candidate of the plan that succeeded (or was
        tried last), which is the first one unless the router fell back or escalated."""
        decision = self.decision
        chosen = decision.chosen or (decision.attempts[-1].ref if decision.attempts else None) if decision else None
        if chosen and self.source is not None and hasattr(self.source, "router"):
            engine_id, _, model = chosen.partition(":")
            return self.source.router.registry.engine(engine_id), model
        return self.engine, self.request.model

    @property
    def answered_ref(self) -> str:
        """`ENGINE:MODEL` of the answer (what the log and --json name)."""
        engine, model = self.answered_by
        return f"{engine.id}:{model}"

    @property
    def routing(self) -> dict[str, Any] | None:
        return self.decision.record() if self.decision is not None else None

    @property
    def provenance(self) -> dict[str, Any]:
        """Who answered and how: the record the log keeps beside the output."""
        engine, model = self.answered_by
        return {
            "engine": engine.id,
            "engine_version": engine.version(),
            "model": model,
            "model_ref": self.model_ref,
            "locality": engine.locality,
            "options": self.request.options.model_dump(exclude_none=True),
        }

    def __repr__(self) -> str:
        return f"<Response {self.id} {self.engine.id}:{self.request.model} {self._state}>"
