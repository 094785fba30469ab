"""Media commands of the `imagine` CLI: transcribe, speak, vad, read, embed, watch.

Thin like the rest of the CLI: parse, call a task, render. Loaded by the root group when one of them runs.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from ._common import (OPTIONS, FiniteFloat, OutPath, emit, first_part, output_path, parse_options, prompt_text,
                      read_stdin_if_piped, run_with_progress, segments_json)

__all__ = ["embed", "read", "speak", "transcribe", "vad", "watch"]

MODEL = click.option("-m", "--model", help="ENGINE:MODEL (default: the task's bundled engine).")
OUT = click.option("-O", "--out", type=OutPath(), help="Write the result to this file (or into this folder).")


@click.command()
@click.argument("file", type=click.Path())
@MODEL
@OPTIONS
@click.option("--format", "fmt", type=click.Choice(["text", "json", "srt", "vtt"]), default="text", show_default=True)
@click.option("--words", is_flag=True, help="Word timestamps (in --format json).")
@OUT
def transcribe(file: str, model: str | None, options: tuple[str, ...], fmt: str, words: bool, out: str | None) -> None:
    """Transcribe speech in an audio or video FILE."""
    from .. import tasks
    from ..parts import Data, Segments
    from ..subtitles import to_srt, to_vtt

    opts = parse_options(options)
    if words:
        opts["word_timestamps"] = True
    response = tasks.transcribe(file, model, **opts)
    if fmt == "text" and not out and sys.stdout.isatty():
        for delta in response:  # stream on a terminal
            click.echo(delta, nl=False)
            sys.stdout.flush()
        click.echo()
        return
    run_with_progress(response, "transcribing")
    segments = first_part(response, Segments) or Segments([])
    if fmt == "json":
        info = first_part(response, Data)
        body = json.dumps({"id": response.id, "model": response.model_ref, "text": response.text().strip(),
                           "segments": segments_json(segments), **(info.value if info else {})}, indent=2)
    elif fmt == "srt":
        body = to_srt(segments)
    elif fmt == "vtt":
        body = to_vtt(segments)
    else:
        body = response.text().strip()
    emit(body, out, f"{Path(file).stem}.{ 'txt' if fmt == 'text' else fmt}")


def _print_voices(model: str | None) -> None:
    """`speak --voices`: the voices of the engine -m names, else of each speech engine installed, grouped,
    the default first."""
    from .. import tasks
    from ..registry import get_registry

    registry = get_registry()
    if model:
        engines: list[Any] = [registry.engine(model.partition(":")[0])]
        if not hasattr(engines[0], "list_voices"):
            raise click.UsageError(f"engine {engines[0].id} cannot list voices")
    else:
        default = tasks.task_default("speak")
        ids = [default, *(e for e in (tasks.TASK_DEFAULTS["speak"], *tasks.TASK_FALLBACKS["speak"]) if e != default)]
        engines = [e for e in (_available(registry, i) for i in ids) if hasattr(e, "list_voices")]
    for i, engine in enumerate(engines):
        if len(engines) > 1:
            click.echo(("\n" if i else "") + f"{engine.id}" + (" (default)" if i == 0 else "") + ":")
        for v in engine.list_voices():
            extra = v.get("source") or v.get("identifier", "")
            click.echo(f"{v['name']:<28} {', '.join(v['languages']):<16} {v['gender']:<8} {extra}".rstrip())


def _available(registry: Any, engine_id: str) -> Any:
    from ..errors import EngineNotFound, EngineUnavailable

    try:
        return registry.engine(engine_id)
    except (EngineNotFound, EngineUnavailable):
        return None


@click.command()
@click.argument("text", nargs=-1)
@MODEL
@OPTIONS
@click.option("--voice", help="Voice name (see --voices).")
@click.option("--voices", "list_voices", is_flag=True, help="List the voices (of -m's engine, else of every "
              "speech engine) and exit.")
@click.option("-O", "--out", type=OutPath(), help="WAV file to write (default: ./speech-<id>.wav).")
def speak(text: tuple[str, ...], model: str | None, options: tuple[str, ...], voice: str | None,
          list_voices: bool, out: str | None) -> None:
    """Speak TEXT (or stdin) to a WAV file (default voice: Piper's; -m espeak for 100+ languages)."""
    from .. import tasks
    from ..parts import Audio

    if list_voices:
        _print_voices(model)
        return
    words = prompt_text(text)
    if not words:
        words = (read_stdin_if_piped() or "").strip()
    opts = parse_options(options)
    if voice:
        opts["voice"] = voice
    response = tasks.speak(words, model, **opts)
    audio = first_part(response, Audio)
    target = output_path(out, f"speech-{response.id}.wav") if out else Path(f"speech-{response.id}.wav")
    target.write_bytes(audio.data)
    seconds = response.usage.extra.get("seconds")
    click.echo(f"wrote {target}" + (f" ({seconds:.1f} s)" if seconds else ""))


@click.command()
@click.argument("file", type=click.Path())
@MODEL
@OPTIONS
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def vad(file: str, model: str | None, options: tuple[str, ...], as_json: bool) -> None:
    """Find the speech in an audio or video FILE (start and end times in seconds)."""
    from .. import tasks
    from ..parts import Segments

    response = tasks.detect_speech(file, model, **parse_options(options))
    segments = first_part(response, Segments) or Segments([])
    if as_json:
        click.echo(json.dumps(segments_json(segments), indent=2))
        return
    for seg in segments.items:
        click.echo(f"{seg.start:8.2f} - {seg.end:8.2f} s  ({seg.end - seg.start:.2f} s)")
    if not segments.items:
        click.echo("no speech found", err=True)


@click.command()
@click.argument("image", type=click.Path())
@MODEL
@OPTIONS
@click.option("--json", "as_json", is_flag=True, help="Print lines with boxes and confidences as JSON.")
def read(image: str, model: str | None, options: tuple[str, ...], as_json: bool) -> None:
    """Read the text in an IMAGE (OCR)."""
    from .. import tasks
    from ..parts import Data

    response = tasks.read_text(image, model, **parse_options(options))
    if as_json:
        data = first_part(response, Data)
        click.echo(json.dumps({"text": response.text(), **(data.value if data else {})}, indent=2))
    else:
        click.echo(response.text())


# what makes an `embed` argument a file rather than a text to embed, when no such file exists
_FILE_SUFFIXES = {".txt", ".md", ".json", ".csv", ".html", ".xml", ".yaml", ".yml", ".rst", ".log", ".png",
                  ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".wav", ".mp3", ".flac", ".ogg",
                  ".mp4", ".webm", ".mov", ".mkv"}


def _names_a_file(item: str) -> bool:
    """An existing path is a file to embed; so is an argument that looks like one (a known file
    extension, or a path separator, and no spaces; not a URL), which then fails as a missing file instead
    of being embedded as the text of its name."""
    if os.path.lexists(item):
        return True
    if not item.strip() or any(c.isspace() for c in item) or "://" in item:
        return False
    return Path(item).suffix.lower() in _FILE_SUFFIXES or "/" in item or os.sep in item


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@MODEL
@OPTIONS
def embed(inputs: tuple[str, ...], model: str | None, options: tuple[str, ...]) -> None:
    """Embed texts, text FILEs or image FILEs (images default to clip): one JSON array per input, one
    per line; with -o score=true (clip), a last line holds the image x text similarity JSON."""
    from .. import tasks
    from ..errors import InputError
    from ..parts import Data, Image, Part, Text, Vector, load_part

    texts: list[str | Part] = []
    for item in inputs:
        if _names_a_file(item):
            part = load_part(item)  # a missing file, a folder or an empty file is an error naming it
            if not isinstance(part, (Text, Image)):
                raise InputError(f"{item}: only text and image files can be embedded")
            texts.append(part.text if isinstance(part, Text) else part)
        else:
            texts.append(prompt_text([item]))
    response = tasks.embed(texts, model, **parse_options(options))
    for part in response.parts:
        if isinstance(part, Vector):
            click.echo(json.dumps([round(v, 6) for v in part.values]))
        elif isinstance(part, Data):
            click.echo(json.dumps(part.value))


def _check_text_model(model: str | None) -> None:
    """Plan a text request on `model` without running it: an unknown or unfit model fails now."""
    from ..client import default_client
    from ..parts import Message, Modality

    client = default_client()
    decision = client.router.plan([Message.user("summary")], (model or "").strip() or "auto", want=Modality.TEXT,
                                  direct=True)
    if not decision.plan:
        client.router.build(decision, None)  # type: ignore[arg-type]


@click.command()
@click.argument("video", type=click.Path())
@click.option("--every", default=0.5, show_default=True, type=FiniteFloat(min=0, min_open=True), help="Seconds between sampled frames.")
@click.option("--scene-threshold", default=0.08, show_default=True, type=FiniteFloat(min=0, max=1), help="Picture change that starts a scene (0-1).")
@click.option("--summarize", is_flag=True, help="Ask the LLM for a summary of the timeline.")
@MODEL
@click.option("--json", "as_json", is_flag=True, help="Print the timeline as JSON.")
@OUT
def watch(video: str, every: float, scene_threshold: float, summarize: bool, model: str | None,
          as_json: bool, out: str | None) -> None:
    """Understand a VIDEO: scenes with their on-screen text, and the speech, on one timeline."""
    from ..timeline import summarize_timeline, timeline_text, watch as run_watch

    if summarize:  # the model is checked before the timeline work, as everywhere else
        _check_text_model(model)
    if sys.stderr.isatty():
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task("watching", total=None)
            timeline = run_watch(video, every=every, scene_threshold=scene_threshold,
                                 progress=lambda done, total, label: bar.update(task, completed=done, total=total,
                                                                                 description=label))
    else:
        timeline = run_watch(video, every=every, scene_threshold=scene_threshold)
    body = json.dumps(segments_json(timeline), indent=2) if as_json else timeline_text(timeline)
    emit(body, out, f"{Path(video).stem}.timeline.{'json' if as_json else 'txt'}")
    if summarize:
        click.echo("\nsummary: ", nl=False)
        for delta in summarize_timeline(timeline, model):
            click.echo(delta, nl=False)
        click.echo()
