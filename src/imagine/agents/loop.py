"""The agent loop: a model that answers by calling tools, and the caller that runs them.

    run = imagine.agent("What does the sign say, and what did she say about it?",
                        tools=["read_text", "transcribe"], attach=["sign.png", "talk.wav"])
    for step in run:            # stream the steps (a model turn, then each tool it asked for)
        print(step)
    print(run.text())           # the answer; run.parts holds it with any media the tools made

Each turn goes down the one request path (`Client.respond`) with the tools, so every model call is logged
like any other, all under one conversation id, which is the run's id (`run.run_id`; `imagine logs -c ID`
lists the steps). The tool calls of one turn run concurrently (the model made them without seeing each
other's results, so they cannot depend on each other); their results, or their errors, go back to the
model as `ToolResult` parts, and a call with invalid arguments is answered with the validation error so
the model can try again. The loop ends at a turn without tool calls (the answer), or after `max_steps`
model calls, which it says (`run.stopped == "max_steps"`) rather than passing off a half answer. An engine
option `tool_choice` (required, or a tool's name) applies until the model first calls a tool; after that the
engine's default (the model chooses) lets it answer.

One lazy `AgentRun` serves both worlds, as `Response` does: iterate it or call `.text()` from sync code,
`async for` / `await` it from async code.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterator, Sequence

from .._bridge import iterate_sync, run_sync
from ..engine import Response, new_id
from ..errors import ImagineError, InputError, SchemaError
from ..events import Restart, ToolCall, Usage
from ..parts import Audio, Image, Message, Modality, Part, Text, ToolResult, ToolUse, Video
from ..tools import Tool, as_tool, check_arguments
from .builtin import DEFAULT_TOOLS, Workspace, jsonable
from .choose import CHOOSERS, Choice, Chooser, closest_tool
from .safety import Confirm, Guard, is_local_only, run_tool

if TYPE_CHECKING:
    from ..client import Client
    from ..router import Policy

__all__ = ["AgentRun", "ModelStep", "ToolStep", "agent"]

# Short on purpose: the bundled 135M model answers from the results with this and wanders with longer ones.
SYSTEM = "Answer the user's question using the tool results. Pass files to tools by the names listed."


@dataclass(frozen=True)
class ModelStep:
    """One model call: what it said, the tools it asked for, and the log row (`response_id`) it made."""

    step: int
    response_id: str
    model: str
    text: str
    calls: tuple[ToolCall, ...]
    seconds: float
    error: str | None = None  # a tool call the checks refused (answered as a tool error)
    chosen: Choice | None = None  # the tool this call was told to use, chosen by meaning (agents/choose.py)

    def __str__(self) -> str:
        asked = ", ".join(c.name for c in self.calls)
        what = f"asked for {asked}" if asked else "answered"
        how = f", {self.chosen.tool} chosen by meaning at {self.chosen.similarity:.2f}" if self.chosen else ""
        return f"step {self.step}: {self.model} {what} ({self.seconds:.2f} s{how})"


@dataclass(frozen=True)
class ToolStep:
    """One tool call and its result (`result.is_error` when it failed or was refused); `parts` are the
    media it made, kept as parts under the handles its result names."""

    step: int
    call_id: str
    name: str
    arguments: dict[str, Any]
    result: ToolResult
    seconds: float
    parts: tuple[Part, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.result.is_error

    def summary(self, width: int = 80) -> str:
        """The result on one short line, for streaming the steps."""
        text = " ".join(self.result.text.split())
        return text if len(text) <= width else text[:width - 1] + "…"

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.arguments.items())
        mark = "failed: " if self.result.is_error else ""
        return f"  {self.name}({args}) -> {mark}{self.summary()} ({self.seconds:.2f} s)"


AgentStep = ModelStep | ToolStep
ToolLike = str | Tool | Any  # a built-in's name, or a function / pydantic class / Tool / tool dict


class AgentRun:
    """One agent run, lazy: nothing runs until it is iterated, awaited or asked for its answer."""

    def __init__(self, prompt: str, tools: Sequence[ToolLike] | None = None, model: str | None = None, *,
                 max_steps: int = 8, attach: Sequence[str | os.PathLike[str] | Part] = (),
                 allow_dirs: Sequence[str | os.PathLike[str]] = (), system: str | None = None,
                 policy: "str | Policy | None" = None, confirm: Confirm = None, models: dict[str, str] | None = None,
                 options: dict[str, Any] | None = None, log: bool | None = None, client: "Client | None" = None,
                 yes_hint: str = "pass confirm=True to allow it", choose: Chooser = "auto") -> None:
        from ..client import default_client

        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError("the agent needs a prompt", hint="say what it should find out or do")
        if choose not in CHOOSERS:
            raise InputError(f"choose must be one of {', '.join(CHOOSERS)}, not {choose!r}",
                             hint="auto: by meaning where the model's own choice is weak (llama.cpp)")
        self.prompt, self.choose = prompt.strip(), choose
        if not isinstance(max_steps, int) or max_steps < 1:
            raise InputError(f"max_steps must be a whole number of at least 1, not {max_steps!r}")
        self.client = client or default_client()
        self.model, self.max_steps, self.policy, self.log = model, max_steps, policy, log
        self.options = dict(options or {})
        self.run_id = new_id()  # also the conversation id of every model call in the run
        local_only = is_local_only(policy, self.client)
        self.workspace = Workspace(self.client, allow_dirs=allow_dirs, attach=attach, models=models,
                                   local_only=local_only)
        self.tools = self._tools(DEFAULT_TOOLS if tools is None else tools)
        self.guard = Guard(self.tools, confirm=confirm, local_only=local_only, yes_hint=yes_hint)
        note = self.workspace.describe()
        self.messages: list[Message] = [Message.system(system or SYSTEM),
                                        Message.user(f"{prompt.strip()}\n\n{note}" if note else prompt.strip())]
        self.steps: list[AgentStep] = []
        self.responses: list[Response] = []
        self.answer: str = ""
        self.stopped: str | None = None  # "answer" or "max_steps" once it has ended
        self._made: list[Part] = []  # media the tools made, in order
        self._state = "new"
        self._error: BaseException | None = None

    def _tools(self, given: Sequence[ToolLike]) -> dict[str, Tool]:
        if isinstance(given, (str, dict)) or not hasattr(given, "__iter__"):
            raise InputError("tools must be a list (names of built-in tools, functions, Tools)")
        out: dict[str, Tool] = {}
        for item in given:
            tool = self.workspace.tool(item) if isinstance(item, str) else as_tool(item)
            if tool.fn is None:  # a schema alone (a dict, a pydantic class): the loop would have nothing to run
                raise InputError(f"tool {tool.name!r} has no function to run",
                                 hint="give the function itself, or a Tool with fn=")
            if tool.name in out:
                raise InputError(f"two tools are named {tool.name!r}", hint="tool names must be unique in a run")
            out[tool.name] = tool
        return out

    # -- running ---------------------------------------------------------------------------------------
    async def _run(self) -> AsyncIterator[AgentStep]:
        specs = [t.spec() for t in self.tools.values()]
        new: list[Message] = list(self.messages)
        options = dict(self.options)
        for step in range(1, self.max_steps + 1):
            t0 = time.perf_counter()

            def respond_with(with_options: dict[str, Any]) -> Response:
                return self.client.respond(tuple(self.messages), self.model, want=Modality.TEXT, new_messages=new,
                                           options=with_options, conversation_id=self.run_id, log=self.log,
                                           policy=self.policy, tools=specs)

            response, chosen = respond_with(options), None
            if step == 1 and (chosen := await self._choose_first(response, options)) is not None:
                response = respond_with({**options, "tool_choice": chosen.tool})  # the unrun first plan is dropped
            bad: tuple[ToolCall, str] | None = None
            try:
                await response
            except SchemaError as exc:  # a tool call that failed the checks: the model gets to fix it
                call = getattr(exc, "tool_call", None)
                if not isinstance(call, ToolCall):
                    raise
                bad = (call, str(exc))
            self.responses.append(response)
            calls = _calls(response)
            text = response.text_so_far()
            engine, model = response.answered_by
            turn = ModelStep(step, response.id, f"{engine.id}:{model}", text,
                             tuple(calls) + ((bad[0],) if bad else ()), time.perf_counter() - t0,
                             bad[1] if bad else None, chosen)
            self.steps.append(turn)
            yield turn
            if not turn.calls:
                self.answer, self.stopped = text.strip(), "answer"
                return
            if step == self.max_steps:
                break  # the limit: no tool runs whose result no model call would read
            # a forced tool_choice (required, a name) holds until the model has called: then the model
            # chooses again, else it could only ever call tools and never answer
            options.pop("tool_choice", None)
            assistant = Message("assistant", [*([Text(text)] if text else []),
                                              *(ToolUse(c.id, c.name, c.arguments) for c in turn.calls)])
            results: dict[str, ToolStep] = {}
            async for done in self._run_calls(step, calls, bad):
                results[done.call_id] = done
                self.steps.append(done)
                yield done
            tool_message = Message("tool", [results[c.id].result for c in turn.calls])
            self.messages += [assistant, tool_message]
            # the log keeps a finished answer's tool calls with it; a refused answer's call goes in here
            new = [Message("assistant", [ToolUse(bad[0].id, bad[0].name, bad[0].arguments)]), tool_message] \
                if bad else [tool_message]
        self.stopped = "max_steps"

    async def _choose_first(self, planned: Response, options: dict[str, Any]) -> Choice | None:
        """The tool the first call must use, chosen by meaning (`agents/choose.py`): with choose="meaning",
        or "auto" when the planned engine's own choice is weak; never over a tool_choice the caller set."""
        engine = planned.engine
        if self.choose == "model" or "tool_choice" in options or not self.tools:
            return None
        if self.choose == "auto" and not engine.weak_tool_choice:
            return None
        if "tool_choice" not in engine.Options.model_fields:
            return None  # no way to tell this engine which tool: its model chooses
        return await closest_tool(self.prompt, list(self.tools.values()), self.client)

    async def _run_calls(self, step: int, calls: list[ToolCall],
                         bad: tuple[ToolCall, str] | None) -> AsyncIterator[ToolStep]:
        """Check every call (asking for confirmation one at a time), then run the allowed ones
        concurrently, yielding each as it finishes."""
        ready: list[tuple[ToolCall, Tool]] = []
        done: list[ToolStep] = []
        for call in calls:
            try:
                tool = self.guard.allowed(call.name)
                check_arguments(tool, call.arguments)
                await self.guard.check(tool, call.arguments, call.id)
            except ImagineError as exc:
                done.append(self._failed(step, call, str(exc), 0.0))
                continue
            ready.append((call, tool))
        if bad is not None:
            done.append(self._failed(step, bad[0], f"{bad[1]}; call the tool again with valid arguments", 0.0))
        for item in done:
            yield item
        tasks = [asyncio.ensure_future(self._call(step, call, tool)) for call, tool in ready]
        try:
            for next_done in asyncio.as_completed(tasks):
                yield await next_done
        finally:
            for task in tasks:
                task.cancel()

    async def _call(self, step: int, call: ToolCall, tool: Tool) -> ToolStep:
        t0 = time.perf_counter()
        try:
            value = await run_tool(tool, dict(call.arguments))
        except Exception as exc:  # any failure of the tool is the model's to read, not the run's end
            message = str(exc) if isinstance(exc, ImagineError) else f"{type(exc).__name__}: {exc}"
            return self._failed(step, call, message, time.perf_counter() - t0)
        made: list[Part] = []

        def keep(part: Part) -> str:
            made.append(part)
            return self.workspace.add(part)

        if isinstance(value, Response):  # a task's lazy response: its text, and its parts as handles
            parts = value.parts
            value = {"text": value.text_so_far(), **({"parts": parts} if parts else {})} if parts \
                else value.text_so_far()
        content = jsonable(value, keep)
        self._made += [p for p in made if isinstance(p, (Image, Audio, Video))]
        return ToolStep(step, call.id, call.name, dict(call.arguments),
                        ToolResult(call.id, content, name=call.name), time.perf_counter() - t0, tuple(made))

    @staticmethod
    def _failed(step: int, call: ToolCall, message: str, seconds: float) -> ToolStep:
        return ToolStep(step, call.id, call.name, dict(call.arguments),
                        ToolResult(call.id, message, name=call.name, is_error=True), seconds)

    # -- sync and async use -------------------------------------------------------------------------------
    async def _steps(self) -> AsyncIterator[AgentStep]:
        if self._state == "done":
            for step in self.steps:
                yield step
            if self._error is not None:
                raise self._error
            return
        if self._state == "running":
            raise RuntimeError("this agent run is already being consumed elsewhere")
        self._state = "running"
        try:
            async for step in self._run():
                yield step
        except BaseException as exc:
            self._error = exc
            raise
        finally:
            self._state = "done"

    def __aiter__(self) -> AsyncIterator[AgentStep]:
        return self._steps()

    def __iter__(self) -> Iterator[AgentStep]:
        return iterate_sync(self._steps())

    async def _complete(self) -> "AgentRun":
        async for _ in self._steps():
            pass
        return self

    def __await__(self) -> Any:
        return self._complete().__await__()

    def complete(self) -> "AgentRun":
        """Run to the end from sync code (no-op when already done)."""
        if self._state != "done":
            run_sync(self._complete())
        elif self._error is not None:
            raise self._error
        return self

    # -- results -------------------------------------------------------------------------------------------
    def text(self) -> str:
        """The answer ("" when the run stopped at the step limit: see `stopped`)."""
        return self.complete().answer

    @property
    def parts(self) -> list[Part]:
        """The answer as parts: its text, then the images, audio and video the tools made."""
        self.complete()
        return [*([Text(self.answer)] if self.answer else []), *self._made]

    @property
    def usage(self) -> Usage:
        self.complete()
        total = Usage()
        for response in self.responses:
            for event in response.events_seen:
                if isinstance(event, Usage):
                    total = total + event
        return total

    @property
    def stop_reason(self) -> str:
        """Why the run ended, in words."""
        self.complete()
        if self.stopped == "answer":
            return "answered"
        last = next((s for s in reversed(self.steps) if isinstance(s, ModelStep)), None)
        pending = ", ".join(c.name for c in last.calls) if last else ""
        return (f"stopped after {self.max_steps} model call{'s' if self.max_steps != 1 else ''} without an answer"
                + (f" (the last one asked for {pending}, not run)" if pending else ""))

    def __repr__(self) -> str:
        return f"<AgentRun {self.run_id} {self._state} tools={list(self.tools)}>"


def _calls(response: Response) -> list[ToolCall]:
    """The tool calls a response made (after any fallback restart), also when it ended in an error."""
    seen = response.events_seen
    start = max((i + 1 for i, e in enumerate(seen) if isinstance(e, Restart)), default=0)
    return [e for e in seen[start:] if isinstance(e, ToolCall)]


def agent(prompt: str, tools: Sequence[ToolLike] | None = None, model: str | None = None, *, max_steps: int = 8,
          attach: Sequence[str | os.PathLike[str] | Part] = (), allow_dirs: Sequence[str | os.PathLike[str]] = (),
          system: str | None = None, policy: "str | Policy | None" = None, confirm: Confirm = None,
          models: dict[str, str] | None = None, options: dict[str, Any] | None = None, log: bool | None = None,
          client: "Client | None" = None, choose: Chooser = "auto", **option_kwargs: Any) -> AgentRun:
    """Run an agent: the model answers `prompt`, calling `tools` as it needs them; returns a lazy AgentRun
    (iterate it for the steps, `.text()` for the answer, `.parts` for the answer with media the tools made).

    `tools`: names of built-in tools (transcribe, read_text, see, watch, frame, speak, draw, embed, search, fetch,
    read_file; default: those that neither change anything nor send data), Python functions, pydantic
    classes or `Tool`s; they are the run's allowlist. `attach`: files the tools may use (named image-1,
    audio-1, ...); `allow_dirs`: folders whose files they may read. Tools with side effects run only with
    `confirm=True` (or a function asked per call); under a `local_only` policy, tools that send data are
    refused. `models` names a model per built-in tool (`{"see": "openai:gpt-4o-mini"}`). `choose`: who picks
    the first tool: "model", "meaning" (the tool closest to the prompt, if close enough: agents/choose.py)
    or "auto" (meaning where the model's own choice is weak, as on llama.cpp). Extra keyword arguments are
    options of the agent's model (temperature=0, max_tokens=256)."""
    return AgentRun(prompt, tools, model, max_steps=max_steps, attach=attach, allow_dirs=allow_dirs, system=system,
                    policy=policy, confirm=confirm, models=models, options={**(options or {}), **option_kwargs},
                    log=log, client=client, choose=choose)

