"""What an agent may run, and how long it may take: the checks between a model's tool call and the tool.

A model only proposes; the caller disposes. Each refusal is a tool error the model reads (so it can answer
without the tool, or say what it would need) and never an exception that ends the run, and never a
silent skip:

- the allowlist: only the tools given to this run, whatever the model asks for;
- side effects (writing a file, spending money, calling a cloud): run only when the caller said yes for
  the whole run (`confirm=True`, `--yes`) or answers yes to this one call (a `confirm` function, the CLI's
  question on a terminal); with neither, refused;
- `local_only`: a tool marked `sends_data` is refused, as the router refuses a cloud engine;
- a timeout per tool (`Tool.timeout`): a tool running past it is reported as failed;
- files: a tool reads only inside the run's allowed folders (`..` and symlinks resolved before the check),
  and never a URL (loading one would fetch it: only the `fetch` tool, marked as sending data, may).
"""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping, Sequence

from ..errors import ImagineError, InputError
from ..tools import Tool

if TYPE_CHECKING:
    from ..client import Client
    from ..router import Policy

__all__ = ["Confirm", "Guard", "ToolRefused", "ToolTimeout", "inside_folders", "is_local_only", "not_a_url",
           "run_tool"]

# True: yes to every side-effecting call of the run; a function: asked per call (True to run it)
Confirm = bool | Callable[[Tool, dict[str, Any]], "bool | Awaitable[bool]"] | None


class ToolRefused(ImagineError):
    """The run's rules did not let this tool call run; the message goes back to the model."""


class ToolTimeout(ImagineError):
    """A tool ran past its timeout."""


def is_local_only(policy: "str | Policy | None", client: "Client") -> bool:
    """Whether the run's policy (else the client's, else the configured one) keeps data on the device."""
    from ..router import Policy

    chosen = policy if policy is not None else client.policy
    if chosen is None:
        chosen = client.settings.policy
    if isinstance(chosen, Policy):
        return chosen.local_only
    return "local_only" in str(chosen).replace(" ", "").split(",")


@dataclass
class Guard:
    """The run's rules: the allowlist (name -> tool), confirmation of side effects, local_only.

    `yes_hint` is how the caller says yes (`--yes` on the command line), named in a refusal."""

    tools: Mapping[str, Tool]
    confirm: Confirm = None
    local_only: bool = False
    yes_hint: str = "pass confirm=True to allow it"
    asked: dict[str, bool] = field(default_factory=dict)  # call id -> the answer, so each call is asked once

    def allowed(self, name: str) -> Tool:
        tool = self.tools.get(name)
        if tool is None:
            offered = ", ".join(sorted(self.tools)) or "none"
            raise ToolRefused(f"refused: {name!r} is not one of this run's tools (allowed: {offered})")
        return tool

    async def check(self, tool: Tool, arguments: dict[str, Any], call_id: str = "") -> None:
        """Raise ToolRefused when the rules forbid this call; may ask the caller (once per call)."""
        if tool.fn is None:
            raise ToolRefused(f"refused: tool {tool.name!r} has no function to run (it was given as a schema only)")
        if self.local_only and tool.sends_data:
            raise ToolRefused(f"refused: tool {tool.name!r} sends data off the device, and this run's policy is "
                              "local_only")
        if not tool.side_effects or self.confirm is True:
            return
        if callable(self.confirm):
            if call_id not in self.asked:
                ask = self.confirm
                # a plain function may block on a terminal: ask it from a worker thread, not the loop
                answer = ask(tool, arguments) if inspect.iscoroutinefunction(ask) else \
                    await asyncio.to_thread(ask, tool, arguments)
                if inspect.isawaitable(answer):
                    answer = await answer
                self.asked[call_id] = bool(answer)
            if self.asked[call_id]:
                return
            raise ToolRefused(f"refused: running {tool.name!r} was declined")
        raise ToolRefused(f"refused: tool {tool.name!r} has side effects (it writes files, spends money or calls a "
                          f"cloud) and nobody confirmed it; {self.yes_hint}")


async def run_tool(tool: Tool, arguments: dict[str, Any]) -> Any:
    """Call the tool's function within its timeout: a coroutine function on this loop, a plain function in a
    worker thread (a thread cannot be stopped: past the timeout its result is dropped, not waited for). A
    result that is itself awaitable (a lazy `Response`) is awaited inside the same timeout."""
    assert tool.fn is not None
    fn = tool.fn

    async def call() -> Any:
        if inspect.iscoroutinefunction(fn):
            value = await fn(**arguments)
        else:
            value = await asyncio.to_thread(fn, **arguments)
        if inspect.isawaitable(value):
            value = await value
        return value

    try:
        return await asyncio.wait_for(call(), tool.timeout)
    except asyncio.TimeoutError:
        raise ToolTimeout(f"tool {tool.name!r} took longer than {tool.timeout:g} s and was stopped") from None


def not_a_url(ref: str, what: str) -> str:
    """`ref`, unless it is an http(s) URL: loading one would send a request, which only `fetch` may do."""
    if ref[:8].lower().startswith(("http://", "https://")):
        raise InputError(f"{what}: {ref} is a URL; tools take files and handles",
                         hint="fetch it first with the fetch tool, if it is allowed")
    return ref


def inside_folders(raw: str, folders: Sequence[Path],
                   hint: str = "allow one with --allow-dir DIR (allow_dirs=[...] in Python)") -> Path:
    """`raw` as a real path inside one of `folders` (already resolved); a relative path is taken in the first.
    `..` and symlinks are resolved before the check, so neither leads out; a missing file is refused too.
    `hint` says how the caller's user allows a folder (a flag of the agent, of the MCP server)."""
    if not folders:
        raise InputError(f"{raw!r}: no folder is allowed for this run", hint=hint)
    given = Path(raw).expanduser()
    candidate = given if given.is_absolute() else folders[0] / given
    try:
        real = candidate.resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a symlink loop
        raise InputError(f"{raw!r} does not exist in the allowed folders") from None
    if not any(real == folder or real.is_relative_to(folder) for folder in folders):
        raise InputError(f"{raw!r} is outside the allowed folders (" + ", ".join(str(f) for f in folders) + ")",
                         hint=hint)
    return real
