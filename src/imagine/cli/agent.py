"""`imagine agent`: a model that answers by calling imagine's own tasks as tools, its steps streamed.

Steps go to stderr as they happen (each model call; each tool with its arguments, a short result and the
time it took), the answer to stdout, so `imagine agent ... > answer.txt` keeps only the answer. Media the
tools made (a spoken clip, a drawn image) are written to -O (default: the current folder). Side-effecting
tools ask on a terminal; without one they are refused unless --yes was given.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ._common import OPTIONS, OutPath, parse_options, prompt_text, read_stdin_if_piped

__all__ = ["agent", "mcp_tools_for_run", "run_agent"]

_EXT = {"image/png": ".png", "image/jpeg": ".jpg", "audio/wav": ".wav", "audio/x-wav": ".wav", "audio/mpeg": ".mp3"}


def _tool_models(pairs: tuple[str, ...]) -> dict[str, str]:
    from ..errors import InputError

    out: dict[str, str] = {}
    for pair in pairs:
        name, eq, model = pair.partition("=")
        if not eq or not name.strip() or not model.strip():
            raise InputError(f"--tool-model {pair!r}: write TOOL=MODEL, e.g. see=openai:gpt-4o-mini")
        out[name.strip()] = model.strip()
    return out


def _short(value: Any, width: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else text[:width - 1] + "…"


def _ask_on_terminal(tool: Any, arguments: dict[str, Any]) -> bool:
    """The per-call question for a side-effecting tool (only asked when stdin is a terminal)."""
    shown = ", ".join(f"{k}={_short(v)}" for k, v in arguments.items())
    return click.confirm(f"run {tool.name}({shown})? it has side effects", default=False, err=True)


def _say(step: Any) -> None:
    from ..agents.loop import ModelStep

    if isinstance(step, ModelStep):
        if step.calls:
            what = "asks for " + ", ".join(c.name for c in step.calls)
        else:
            what = "answers"
        how = f"; {step.chosen.tool} chosen by meaning, {step.chosen.similarity:.2f}" if step.chosen else ""
        click.echo(f"[{step.step}] {step.model} {what} ({step.seconds:.2f} s{how})", err=True)
        return
    args = ", ".join(f"{k}={_short(v)}" for k, v in step.arguments.items())
    mark = "x" if step.result.is_error else "->"
    click.echo(f"    {step.name}({args}) {mark} {step.summary(100)} ({step.seconds:.2f} s)", err=True)


def _write_media(run: Any, out: str | None) -> list[Path]:
    """Each image, clip or video the tools made, as a file named by the run and its handle."""
    import mimetypes

    from ..agents.loop import ToolStep
    from ..parts import MediaPart

    folder = Path(out or ".").expanduser()
    written: list[Path] = []
    handles = {id(p): h for h, p in run.workspace.media.items()}
    for step in run.steps:
        if not isinstance(step, ToolStep):
            continue
        for part in step.parts:
            if not isinstance(part, MediaPart) or id(part) not in handles:
                continue
            ext = _EXT.get(part.mime) or mimetypes.guess_extension(part.mime) or ".bin"
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / f"agent-{run.run_id[-8:]}-{handles[id(part)]}{ext}"
            target.write_bytes(part.content_bytes())
            written.append(target)
    return written


@click.command()
@click.argument("prompt", nargs=-1)
@click.option("-t", "--tool", "tools", multiple=True, metavar="NAME",
              help="A built-in tool the agent may call, repeatable: transcribe, read_text, see, watch, frame, speak, draw, "
                   "embed, search, fetch, read_file (default: those that neither change anything nor send data).")
@click.option("--max-steps", default=8, show_default=True, type=click.IntRange(1, 100),
              help="Most model calls before the agent stops without an answer.")
@click.option("-m", "--model", help="The model that drives the agent: ENGINE:MODEL or alias.")
@OPTIONS
@click.option("-a", "--attach", multiple=True, type=click.Path(), help="A file the tools may use (image-1, audio-1, ...).")
@click.option("--allow-dir", "allow_dirs", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="A folder whose files the tools may read, repeatable (nothing outside it).")
@click.option("-y", "--yes", is_flag=True, help="Run side-effecting tools (speak, draw, cloud-bound ones) without asking.")
@click.option("--tool-model", "tool_models", multiple=True, metavar="TOOL=MODEL",
              help="The model a built-in tool uses, e.g. see=openai:gpt-4o-mini (a cloud model needs --yes).")
@click.option("-s", "--system", help="System prompt (replaces the agent's own).")
@click.option("-p", "--policy", help="Routing policy; local_only also refuses tools that send data off the device.")
@click.option("-O", "--out", type=OutPath(), help="Folder for the images and audio the tools make (default: here).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: the answer, every step, the files.")
@click.option("--no-log", is_flag=True, help="Do not log the model calls.")
@click.option("--mcp", "mcp_servers", multiple=True, metavar="CMD|URL",
              help="Also give the agent the tools of this MCP server: a command line (stdio) or an http(s) URL; "
                   "repeatable. Tools not marked read-only by their server need --yes.")
@click.option("--choose", type=click.Choice(["auto", "meaning", "model"]), default="auto", show_default=True,
              help="Who picks the first tool: the model, or its closeness in meaning to the prompt (auto: by "
                   "meaning on llama.cpp, whose small models rarely choose a tool themselves).")
def agent(prompt: tuple[str, ...], tools: tuple[str, ...], max_steps: int, model: str | None,
          options: tuple[str, ...], attach: tuple[str, ...], allow_dirs: tuple[str, ...], yes: bool,
          tool_models: tuple[str, ...], system: str | None, policy: str | None, out: str | None, as_json: bool,
          no_log: bool, mcp_servers: tuple[str, ...], choose: str) -> None:
    """Let a model answer PROMPT by calling imagine's tasks as tools (read_text, transcribe, see, ...), its
    steps shown as they run.

    \b
    imagine agent "what does the slide say, and what did the speaker add?" -a slide.png -a talk.wav"""
    from contextlib import ExitStack

    text = prompt_text(prompt, read_stdin_if_piped())
    with ExitStack() as servers:
        given: list[Any] = list(tools) if tools or mcp_servers else []
        if mcp_servers:
            from ..agents.builtin import DEFAULT_TOOLS

            given = (given or list(DEFAULT_TOOLS)) + mcp_tools_for_run(servers, mcp_servers)
        run_agent(text, given or None, max_steps, model, options, attach, allow_dirs, yes, tool_models, system,
                  policy, out, as_json, no_log, choose=choose)


def mcp_tools_for_run(servers: Any, specs: tuple[str, ...]) -> list[Any]:
    """The tools of each MCP server in `specs` (a command line or a URL), each server kept connected until
    the `servers` ExitStack closes (after the run)."""
    from ..agents.mcp_client import connect_sync

    return [tool for spec in specs for tool in servers.enter_context(connect_sync(spec)).tools]


def run_agent(text: str, tools: list[Any] | None, max_steps: int, model: str | None, options: tuple[str, ...],
              attach: tuple[str, ...], allow_dirs: tuple[str, ...], yes: bool, tool_models: tuple[str, ...],
              system: str | None, policy: str | None, out: str | None, as_json: bool, no_log: bool,
              choose: str = "auto") -> None:
    """Run one agent and print it as `imagine agent` does (also `imagine ask --mcp`)."""
    from ..agents.loop import AgentRun

    confirm: Any = True if yes else (_ask_on_terminal if sys.stdin.isatty() else None)
    run = AgentRun(text, tools, model, max_steps=max_steps, attach=list(attach),
                   allow_dirs=list(allow_dirs), system=system, policy=policy, confirm=confirm,
                   models=_tool_models(tool_models), options=parse_options(options),
                   log=False if no_log else None, yes_hint="run again with --yes to allow it",
                   choose=choose)  # type: ignore[arg-type]
    if not as_json:
        click.echo(f"agent run {run.run_id}: tools {', '.join(run.tools) or 'none'}", err=True)
    for step in run:
        if not as_json:
            _say(step)
    written = _write_media(run, out)
    if as_json:
        click.echo(json.dumps(_payload(run, written), indent=2, ensure_ascii=False))
    else:
        if run.answer:
            click.echo(run.answer)
        for path in written:
            click.echo(f"wrote {path}", err=True)
    if run.stopped != "answer":
        from ..errors import ImagineError

        raise ImagineError(f"{run.stop_reason}; raise --max-steps or make the request simpler")


def _payload(run: Any, written: list[Path]) -> dict[str, Any]:
    from ..agents.loop import ModelStep

    steps: list[dict[str, Any]] = []
    for s in run.steps:
        if isinstance(s, ModelStep):
            steps.append({"type": "model", "step": s.step, "model": s.model, "response_id": s.response_id,
                          "chosen": {"tool": s.chosen.tool, "similarity": s.chosen.similarity} if s.chosen else None,
                          "text": s.text, "calls": [{"id": c.id, "name": c.name, "arguments": c.arguments}
                                                    for c in s.calls], "seconds": round(s.seconds, 3)})
        else:
            steps.append({"type": "tool", "step": s.step, "call_id": s.call_id, "name": s.name,
                          "arguments": s.arguments, "result": s.result.content, "error": s.result.is_error,
                          "seconds": round(s.seconds, 3)})
    return {"run_id": run.run_id, "answer": run.answer, "stopped": run.stopped, "steps": steps,
            "files": [str(p) for p in written], "usage": {"input_tokens": run.usage.input_tokens,
                                                           "output_tokens": run.usage.output_tokens}}
