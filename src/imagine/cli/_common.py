"""Helpers shared by the command modules: -o parsing, --schema, stdin, output paths, progress bars.

Light on purpose (json, click, pathlib): the heavy parts are imported inside the helpers that use them.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import click

__all__ = ["OPTIONS", "emit", "finish_with_steps", "first_part", "load_schema", "output_path", "parse_options",
           "read_stdin_if_piped", "response_payload", "run_with_progress", "segments_json", "write_out"]

OPTIONS = click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE", help="Engine option, repeatable.")


# -- options and inputs ------------------------------------------------------------------------------


def parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    """`-o key=value` pairs; values are JSON when they parse as JSON (numbers, true, lists), else text."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not key=value (e.g. -o temperature=0)", param_hint="'-o'")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        options[key.strip().replace("-", "_")] = value
    return options


def load_schema(text: str | None) -> dict[str, Any] | None:
    """--schema: inline JSON, or the path of a .json file."""
    if text is None:
        return None
    from ..errors import InputError

    source = text
    path = Path(text)
    if not text.lstrip().startswith("{") and path.exists():
        source = path.read_text()
    try:
        schema = json.loads(source)
    except json.JSONDecodeError as exc:
        raise InputError(f"--schema is not valid JSON ({exc.msg})", hint="pass a JSON schema or a .json file") from None
    if not isinstance(schema, dict):
        raise InputError("--schema must be a JSON object (a JSON schema)")
    return schema


def read_stdin_if_piped() -> str | None:
    if sys.stdin is None or sys.stdin.isatty():
        return None
    return sys.stdin.read()


# -- outputs -----------------------------------------------------------------------------------------


def output_path(out: str, default_name: str) -> Path:
    """-O: a file as given, or `default_name` inside a folder (an existing one, or one ending in /)."""
    target = Path(out).expanduser()
    if target.is_dir() or out.endswith("/"):
        target.mkdir(parents=True, exist_ok=True)
        return target / default_name
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def emit(text: str, out: str | None, default_name: str) -> None:
    """Print `text`, or with -O write it (ending in a newline) and say where on stderr."""
    if out:
        target = output_path(out, default_name)
        target.write_text(text if text.endswith("\n") else text + "\n")
        click.echo(f"wrote {target}", err=True)
    else:
        click.echo(text.rstrip("\n"))


def write_out(out: str, response: Any, payload: dict[str, Any] | None) -> Path:
    """-O: a file gets the answer; a folder gets `<id>.txt` (or .json with --json)."""
    target = Path(out).expanduser()
    ext = ".json" if payload is not None else ".txt"
    if target.is_dir() or out.endswith(("/", os.sep)):
        target.mkdir(parents=True, exist_ok=True)
        target = target / f"{response.id}{ext}"
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps(payload, indent=2) + "\n" if payload is not None else response.text_so_far()
    target.write_text(body)
    return target


def response_payload(response: Any) -> dict[str, Any]:
    """`ask --json`: the answer with its model, usage and timings."""
    usage = response.usage
    payload = {
        "id": response.id,
        "conversation_id": response.conversation_id,
        "model": response.answered_ref,  # the engine that answered, after any fallback
        "text": response.text_so_far(),
        "finish_reason": response.finish_reason,
        "usage": {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens},
        "latency_ms": round((response.latency_s or 0) * 1000, 1),
        "ttft_ms": None if response.ttft_s is None else round(response.ttft_s * 1000, 1),
    }
    if response.request.schema is not None:
        payload["parsed"] = response.json()
    return payload


def segments_json(segments: Any) -> list[dict[str, Any]]:
    return [{"start": s.start, "end": s.end, "text": s.text, **({"meta": s.meta} if s.meta else {})}
            for s in segments.items]


def first_part(response: Any, cls: type) -> Any:
    return next((p for p in response.parts if isinstance(p, cls)), None)


# -- progress ----------------------------------------------------------------------------------------


def run_with_progress(response: Any, label: str) -> None:
    """Finish a response, showing its Progress events as a bar when stderr is a terminal."""
    if not sys.stderr.isatty():
        response.complete()
        return
    from rich.progress import Progress as Bar

    from ..events import Progress

    with Bar(transient=True) as bar:
        task = bar.add_task(label, total=None)
        for event in response.events():
            if isinstance(event, Progress):
                bar.update(task, completed=event.done, total=event.total)


def finish_with_steps(response: Any) -> None:
    """Run the response to the end, showing its steps (each Progress label, done of total, time) as a
    bar when stderr is a terminal: the denoising steps of an image model."""
    if not sys.stderr.isatty():
        response.complete()
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn

    from ..events import Progress

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Bar(*columns, transient=True) as bar:
        task = bar.add_task("loading", total=None)
        for event in response.events():
            if isinstance(event, Progress):
                bar.update(task, completed=event.done, total=event.total, description=event.label or "working")
