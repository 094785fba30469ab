"""Helpers shared by the command modules: -o parsing, --schema, stdin, output paths, progress bars.

Light on purpose (json, click, pathlib): the heavy parts are imported inside the helpers that use them.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import click

__all__ = ["FiniteFloat", "OPTIONS", "OutPath", "emit", "finish_with_steps", "first_part", "load_schema", "output_path", "parse_options",
           "prompt_text", "read_stdin_if_piped", "response_payload", "run_with_progress", "segments_json", "write_out"]

OPTIONS = click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE", help="Engine option, repeatable.")


# -- parameter types ---------------------------------------------------------------------------------


def _hint(param: click.Parameter | None, ctx: click.Context | None) -> str:
    return param.get_error_hint(ctx) if param is not None and ctx is not None else "value"


class FiniteFloat(click.FloatRange):
    """A float option that refuses nan and +-inf (NaN compares false, so it would switch a limit off), and
    values outside its range, as one `error:` line (InputError, exit 2)."""

    name = "float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from ..errors import InputError

        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InputError(f"{_hint(param, ctx)}: {value!r} is not a number") from None
        if not math.isfinite(number):
            raise InputError(f"{_hint(param, ctx)}: {value!r} is not a finite number", hint="give a finite number")
        try:
            return super().convert(number, param, ctx)
        except click.BadParameter as exc:
            raise InputError(f"{_hint(param, ctx)}: {exc.message}") from None


class OutPath(click.ParamType):
    """-O: a path that is not empty (an empty one used to be ignored without a word)."""

    name = "path"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from ..errors import InputError

        if not str(value).strip():
            raise InputError(f"{_hint(param, ctx)}: the path is empty", hint="name a file or a folder")
        return str(value)


# -- options and inputs ------------------------------------------------------------------------------


def _not_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, str):
        try:
            return not math.isfinite(float(value))
        except ValueError:
            return False
    if isinstance(value, list):
        return any(_not_finite(v) for v in value)
    if isinstance(value, dict):
        return any(_not_finite(v) for v in value.values())
    return False


def parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    """`-o key=value` pairs; values are JSON when they parse as JSON (numbers, true, lists), else text.
    A value that reads as nan or infinity is refused: no engine option means anything by it."""
    from ..errors import OptionsError
    from ..parts import utf8_text

    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = utf8_text(pair, "-o").partition("=")
        if not sep or not key.strip():
            raise OptionsError(f"-o {pair!r} is not key=value", hint="e.g. -o temperature=0")
        try:
            value: Any = json.loads(raw)
        except (json.JSONDecodeError, RecursionError):
            value = raw
        name = key.strip().replace("-", "_")
        if _not_finite(value):
            raise OptionsError(f"option {name!r}: {raw!r} is not a finite number", hint="give a finite number")
        options[name] = value
    return options


def prompt_text(words: Sequence[str], piped: str | None = None) -> str:
    """The prompt from the command's words (and text piped before them), valid UTF-8 or refused."""
    from ..parts import utf8_text

    text = utf8_text(" ".join(words), "the prompt")
    if piped and piped.strip():
        text = f"{piped.rstrip()}\n\n{text}" if text else piped
    return text


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
    """Piped stdin as text: read as bytes and decoded by the one UTF-8 rule (refused, naming the byte).
    At most the prompt limit is read: one byte more and it is refused, the rest left unread."""
    if sys.stdin is None or sys.stdin.isatty():
        return None
    from ..config import get_settings
    from ..media.limits import prompt_too_big
    from ..parts import utf8_text

    limits = get_settings().part_limits()
    cap = limits.max_prompt_bytes
    buffer = getattr(sys.stdin, "buffer", None)
    data = buffer.read(cap + 1) if buffer is not None else sys.stdin.read(cap + 1)
    if len(data) > cap:
        raise prompt_too_big(None, limits, "stdin")
    return utf8_text(data, "stdin")


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
