"""Tasks: one sub-tab per media task, each a call of the Client's task helpers with its result laid out.

Transcribe (the transcript, its segments in a table and on a spectrogram, SRT/VTT files), Speak (an engine's
voices, play and download), Read text (OCR boxes drawn on the picture), Watch (a video's scenes as
thumbnails with their on-screen text and the speech, on one timeline), and See / Draw / Edit where an
engine can do them here (else a note saying what they need, read from the registry). Every run is logged
like any other call and recorded per browser session (`ctx.remember`) for "save as flow"; a bad file, a missing model or an
engine failure becomes a readable line under the form, and the rest of the page keeps working.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, AsyncIterator

from ..errors import ImagineError, InputError
from ..parts import Audio, Data, Image, Modality, Part, Segments, Video, load_part
from . import task_views as views
from .app import StudioContext
from .chat import media_file, parse_options

__all__ = ["build"]

MAX_WATCH_SECONDS = 20 * 60  # longer videos: `imagine watch` on the command line
MAX_WATCH_FRAMES = 240       # frames sampled per video: `every` grows to keep to it


def _message(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, ImagineError) else f"{type(exc).__name__}: {exc}"
    return f"⚠️ {text}"


def _shown(text: str) -> Any:
    import gradio as gr

    return gr.update(value=text, visible=bool(text))


def _load(path: str | None, kinds: tuple[type[Part], ...], what: str, ctx: StudioContext) -> Part:
    """The uploaded file as a part of one of `kinds`, else a readable InputError."""
    if not path:
        raise InputError(f"no {what} yet", hint=f"upload {what} first")
    part = load_part(path, limits=ctx.client.settings.part_limits())
    if not isinstance(part, kinds):
        raise InputError(f"{Path(path).name} is not {what}",
                         hint={"audio": "upload WAV, FLAC, MP3 or OGG (or a video with sound)",
                               "an image": "upload PNG, JPEG, GIF or WebP", "a video": "upload MP4 or WebM"}
                         .get(what, f"upload {what}"))
    return part


def _model(chosen: str | None) -> str | None:
    chosen = (chosen or "").strip()
    return None if chosen in ("", "auto") else chosen


def _record(ctx: StudioContext, task: str, response: Any, options: dict[str, Any], inputs: list[str | None],
            **extra: Any) -> None:
    ctx.remember(task=task, model=getattr(response, "answered_ref", None) or getattr(response, "model_ref", ""),
                 options=options, inputs=[Path(p).name for p in inputs if p], **extra)


def _first(parts: list[Part], kind: type[Part]) -> Any:
    return next((p for p in parts if isinstance(p, kind)), None)


def _refs(ctx: StudioContext, want: Modality, inputs: tuple[Modality, ...]) -> list[str]:
    return [r for r in ctx.models(want, inputs) if r not in ("auto", "local")]


def _error_box(name: str) -> Any:
    import gradio as gr

    return gr.Markdown(visible=False, elem_classes=["imagine-error"], elem_id=f"tasks-{name}-error")


# -- transcribe ----------------------------------------------------------------------------------

def _transcribe(ctx: StudioContext) -> None:
    import gradio as gr

    refs = _refs(ctx, Modality.TEXT, (Modality.AUDIO,))
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Audio",
                             elem_id="tasks-transcribe-audio")
            with gr.Row():
                model = gr.Dropdown(refs or ["auto"], value=(refs or ["auto"])[0], allow_custom_value=True,
                                    label="Model", elem_id="tasks-transcribe-model")
                options = gr.Textbox(label="Options", placeholder="language=en, word_timestamps=true",
                                     elem_id="tasks-transcribe-options")
            run = gr.Button("Transcribe", variant="primary", elem_id="tasks-transcribe-run")
            error = _error_box("transcribe")
        with gr.Column(scale=3, min_width=420):
            text = gr.Textbox(label="Transcript", lines=4, max_lines=12, buttons=["copy"],
                              elem_id="tasks-transcribe-text")
            gr.Markdown("**Spectrogram** · the segments, numbered, below it", elem_classes=["imagine-meta"])
            picture = gr.Image(label="Spectrogram", show_label=False, type="filepath", interactive=False,
                               buttons=["download", "fullscreen"], elem_id="tasks-transcribe-picture")
            table = gr.Dataframe(headers=["start", "end", "text"], datatype="str", interactive=False, wrap=True,
                                 column_widths=["90px", "90px", "auto"], label="Segments",
                                 elem_id="tasks-transcribe-segments")
            with gr.Row():
                srt = gr.DownloadButton("Subtitles (.srt)", visible=False, size="sm", elem_id="tasks-transcribe-srt")
                vtt = gr.DownloadButton("Subtitles (.vtt)", visible=False, size="sm", elem_id="tasks-transcribe-vtt")
            meta = gr.Markdown(elem_classes=["imagine-meta"])

    async def go(path: str | None, chosen: str, raw: str) -> tuple[Any, ...]:
        try:
            part = _load(path, (Audio, Video), "audio", ctx)
            assert isinstance(part, (Audio, Video))
            opts = parse_options(raw or "")
            response = ctx.client.transcribe(part, _model(chosen), **opts)
            await response
            segments = _first(response.parts, Segments) or Segments([])
            info = (_first(response.parts, Data) or Data({})).value
            limits = ctx.client.settings.part_limits()
            duration = float(info.get("duration") or 0) or sum(int(len(b)) for b in part.blocks(limits=limits)) / 16000
            drawn = await asyncio.to_thread(views.spectrogram_picture, part.blocks(limits=limits), duration, segments)
            files = views.subtitle_files(segments, Path(path or "transcript").stem)
        except Exception as exc:  # the page stays usable whatever went wrong
            return (_shown(_message(exc)), gr.update(), gr.update(), gr.update(), gr.update(visible=False),
                    gr.update(visible=False), gr.update())
        _record(ctx, "transcribe", response, opts, [path])
        language = f" · language {info['language']}" if info.get("language") else ""
        count = len(segments.items)
        facts = (f"{count} segment{'' if count == 1 else 's'} · {views.clock(duration)} of audio{language} · "
                 f"{response.latency_s or 0:.1f} s on `{response.answered_ref}`")
        return (_shown(""), response.text().strip(), views.png_file(drawn), views.segment_rows(segments),
                gr.update(value=files[0], visible=True), gr.update(value=files[1], visible=True), facts)

    run.click(go, [audio, model, options], [error, text, picture, table, srt, vtt, meta])


# -- speak ---------------------------------------------------------------------------------------

def _speak(ctx: StudioContext) -> None:
    import gradio as gr

    registry = ctx.client.registry
    engines: dict[str, Any] = {}
    for engine_id in ("piper", "espeak"):
        try:
            engines[engine_id] = registry.engine(engine_id)
        except ImagineError:
            continue
    if not engines:
        gr.Markdown("**Speak needs a speech engine**: neither Piper nor espeak-ng can run here "
                    "(pip install 'imagine[speech]', or apt install espeak-ng).", elem_classes=["imagine-error"])
        return
    first = next(iter(engines))
    choices, default = views.voice_choices(engines[first])
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=360):
            text = gr.Textbox(label="Text", lines=4, placeholder="Type something to hear it", elem_id="tasks-speak-text",
                              value="Hello! This is imagine, speaking from your own machine.")
            with gr.Row():
                engine = gr.Radio(list(engines), value=first, label="Engine", elem_id="tasks-speak-engine", scale=1,
                                  info="Piper sounds natural; espeak-ng speaks 100+ languages")
                voice = gr.Dropdown(choices, value=default, label="Voice", allow_custom_value=True,
                                    filterable=True, elem_id="tasks-speak-voice", scale=2)
                speed = gr.Slider(0.5, 2.0, value=1.0, step=0.05, label="Speed", elem_id="tasks-speak-speed", scale=1)
            run = gr.Button("Speak", variant="primary", elem_id="tasks-speak-run")
            error = _error_box("speak")
        with gr.Column(scale=2, min_width=320):
            audio = gr.Audio(label="Speech", type="filepath", interactive=False, buttons=["download"],
                             elem_id="tasks-speak-audio")
            download = gr.DownloadButton("Download WAV", visible=False, size="sm", elem_id="tasks-speak-download")
            meta = gr.Markdown(elem_classes=["imagine-meta"])

    def voices(engine_id: str) -> Any:
        found, chosen = views.voice_choices(engines[engine_id]) if engine_id in engines else ([], None)
        return gr.update(choices=found, value=chosen)

    async def go(words: str, engine_id: str, chosen: str, pace: float) -> tuple[Any, ...]:
        opts: dict[str, Any] = {}
        try:
            if chosen:
                opts["voice"] = chosen.strip()
            if abs(pace - 1.0) > 1e-3:
                opts.update({"length_scale": round(1 / pace, 3)} if engine_id == "piper"
                            else {"rate": int(min(450, max(80, 175 * pace)))})
            response = ctx.client.speak(words, engine_id, **opts)
            await response
            spoken = _first(response.parts, Audio)
            if spoken is None:
                raise ImagineError(f"{engine_id} returned no audio")
            path = media_file(spoken)
        except Exception as exc:
            return _shown(_message(exc)), gr.update(), gr.update(), gr.update()
        _record(ctx, "speak", response, opts, [], text=words)
        seconds = response.usage.extra.get("seconds") or 0
        return (_shown(""), path, gr.update(value=path, visible=True),
                f"{seconds:.1f} s of speech in {response.latency_s or 0:.1f} s on `{response.answered_ref}`")

    engine.change(voices, engine, voice)
    run.click(go, [text, engine, voice, speed], [error, audio, download, meta])


# -- read text -----------------------------------------------------------------------------------

def _read(ctx: StudioContext) -> None:
    import gradio as gr

    refs = _refs(ctx, Modality.TEXT, (Modality.IMAGE,))
    ocr = [r for r in refs if r.startswith("rapidocr")] or refs or ["auto"]
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            image = gr.Image(type="filepath", sources=["upload", "clipboard"], label="Image",
                             elem_id="tasks-read-image")
            model = gr.Dropdown(ocr, value=ocr[0], allow_custom_value=True, label="Model", elem_id="tasks-read-model")
            run = gr.Button("Read text", variant="primary", elem_id="tasks-read-run")
            error = _error_box("read")
        with gr.Column(scale=3, min_width=420):
            boxes = gr.Image(label="Text found, numbered in reading order", type="filepath", interactive=False,
                             format="png", buttons=["download", "fullscreen"], elem_id="tasks-read-boxes")
            text = gr.Textbox(label="Text", lines=4, max_lines=16, buttons=["copy"], elem_id="tasks-read-text")
            table = gr.Dataframe(headers=["#", "text", "confidence"], datatype="str", interactive=False, wrap=True,
                                 column_widths=["48px", "auto", "110px"], label="Lines", elem_id="tasks-read-lines")

    async def go(path: str | None, chosen: str) -> tuple[Any, ...]:
        try:
            part = _load(path, (Image,), "an image", ctx)
            response = ctx.client.read_text(part, _model(chosen))
            await response
            lines = [line for p in response.parts if isinstance(p, Data) for line in p.value.get("lines", [])]
            assert isinstance(part, Image)
            drawn = await asyncio.to_thread(views.boxes_picture, part, lines)
        except Exception as exc:
            return _shown(_message(exc)), gr.update(), gr.update(), gr.update()
        _record(ctx, "read_text", response, {}, [path])
        rows = [[str(i), line["text"], f"{line.get('confidence', 0):.2f}"] for i, line in enumerate(lines, 1)]
        found = response.text().strip() or "(no text found)"
        return _shown(""), views.png_file(drawn), found, rows

    run.click(go, [image, model], [error, boxes, text, table])


# -- watch ---------------------------------------------------------------------------------------

def _watch(ctx: StudioContext) -> None:
    import gradio as gr

    gr.Markdown(f"Scenes are found where the picture changes; each scene's key frame is read with OCR and the "
                f"sound track is transcribed. Videos up to {MAX_WATCH_SECONDS // 60} minutes here "
                "(`imagine watch` for longer ones).", elem_classes=["imagine-meta"])
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            video = gr.Video(sources=["upload"], label="Video", elem_id="tasks-watch-video")
            with gr.Row():
                every = gr.Slider(0.25, 5.0, value=0.5, step=0.25, label="Look every (s)", elem_id="tasks-watch-every")
                threshold = gr.Slider(0.01, 0.5, value=0.08, step=0.01, label="Scene change threshold",
                                      elem_id="tasks-watch-threshold")
            with gr.Row():
                ocr = gr.Checkbox(value=True, label="Read on-screen text", elem_id="tasks-watch-ocr")
                speech = gr.Checkbox(value=True, label="Transcribe speech", elem_id="tasks-watch-speech")
            run = gr.Button("Watch", variant="primary", elem_id="tasks-watch-run")
            error = _error_box("watch")
        with gr.Column(scale=3, min_width=420):
            gallery = gr.Gallery(label="Scenes", columns=4, height="auto", object_fit="contain",
                                 elem_id="tasks-watch-scenes")
            gr.Markdown("**Timeline** · key frames, scenes and speech", elem_classes=["imagine-meta"])
            picture = gr.Image(label="Timeline", show_label=False, type="filepath", interactive=False,
                               buttons=["download", "fullscreen"],
                               elem_id="tasks-watch-timeline")
            table = gr.Dataframe(headers=["start", "end", "what", "text"], datatype="str", interactive=False,
                                 wrap=True, column_widths=["90px", "90px", "90px", "auto"], label="Timeline",
                                 elem_id="tasks-watch-table")

    def look(part: Video, step: float, limit: float, read: bool, hear: bool, progress: Any) -> tuple[Any, ...]:
        limits = ctx.client.settings.part_limits()
        timeline = ctx.client.watch(part, every=step, scene_threshold=limit, ocr=read, transcribe_audio=hear,
                                    progress=lambda done, total, label: progress(min(1.0, done / max(total, 1)),
                                                                                 desc=label))
        starts = {s.start for s in timeline.items if s.meta.get("kind") == "scene"}
        thumbs: dict[float, Any] = {}
        for time, frame in part.frames(step, limits=limits):
            if round(time, 3) in starts:
                small = frame.convert("RGB")
                small.thumbnail((480, 270))
                thumbs[round(time, 3)] = small
        return timeline, thumbs

    async def go(path: str | None, step: float, limit: float, read: bool, hear: bool,
                 progress: Any = gr.Progress()) -> tuple[Any, ...]:
        try:
            part = _load(path, (Video,), "a video", ctx)
            assert isinstance(part, Video)
            duration = float(part.info().duration or 0)
            if duration > MAX_WATCH_SECONDS:
                raise InputError(f"the video is {views.clock(duration)} long; the studio watches up to "
                                 f"{MAX_WATCH_SECONDS // 60} minutes", hint="use `imagine watch FILE` for longer ones")
            step = max(float(step), duration / MAX_WATCH_FRAMES)
            timeline, thumbs = await asyncio.to_thread(look, part, step, float(limit), read, hear, progress)
            drawn = views.timeline_picture(timeline, duration, thumbs)
        except Exception as exc:
            return _shown(_message(exc)), gr.update(), gr.update(), gr.update()
        ctx.remember(task="watch", model="", options={"every": step, "scene_threshold": limit, "ocr": read,
                                                      "transcribe_audio": hear}, inputs=[Path(path or "").name])
        speech_items = [s for s in timeline.items if s.meta.get("kind") == "speech"]
        shown = []
        for seg in timeline.items:
            if seg.meta.get("kind") != "scene" or seg.start not in thumbs:
                continue
            said = " ".join(s.text for s in speech_items if s.start < seg.end and s.end > seg.start)
            caption = f"{views.clock(seg.start)}–{views.clock(seg.end)} · {seg.text or 'no text on screen'}"
            shown.append((views.png_file(thumbs[seg.start]), caption + (f" · “{said}”" if said else "")))
        return _shown(""), shown, views.png_file(drawn), views.timeline_rows(timeline)

    run.click(go, [video, every, threshold, ocr, speech], [error, gallery, picture, table])


# -- see / draw / edit ---------------------------------------------------------------------------

_NEEDS = {"see": ({Modality.IMAGE, Modality.TEXT}, Modality.TEXT), "draw": ({Modality.TEXT}, Modality.IMAGE),
          "edit": ({Modality.IMAGE, Modality.TEXT}, Modality.IMAGE)}


def _image_task(ctx: StudioContext, task: str) -> None:
    import gradio as gr

    needed, want = _NEEDS[task]
    ready, named, missing = views.capability(ctx.client.registry, needed, want)
    gr.Markdown(views.capability_note(task, ready, named, missing), elem_id=f"tasks-{task}-note",
                elem_classes=["imagine-meta"])
    if not ready and not named:
        return  # nothing here can do it: the note says what would
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            model = gr.Dropdown(ready, value=ready[0] if ready else None, allow_custom_value=True, label="Model",
                                elem_id=f"tasks-{task}-model", info="ENGINE:MODEL")
            image = mask = None
            if task in ("see", "edit"):
                image = gr.Image(type="filepath", sources=["upload", "clipboard"], label="Image",
                                 elem_id=f"tasks-{task}-image")
            if task == "edit":
                mask = gr.Image(type="filepath", sources=["upload"], label="Mask (optional: white = repaint)",
                                elem_id="tasks-edit-mask")
            prompt = gr.Textbox(label="Question" if task == "see" else "Prompt", lines=2, elem_id=f"tasks-{task}-prompt",
                                value="Describe this image." if task == "see" else "")
            options = gr.Textbox(label="Options", placeholder="steps=4, seed=1" if task != "see" else "max_tokens=200",
                                 elem_id=f"tasks-{task}-options")
            run = gr.Button(task.capitalize(), variant="primary", elem_id=f"tasks-{task}-run")
            error = _error_box(task)
        with gr.Column(scale=3, min_width=420):
            if task == "see":
                out: Any = gr.Textbox(label="Answer", lines=8, buttons=["copy"], elem_id="tasks-see-answer")
            else:
                out = gr.Gallery(label="Images", columns=2, height="auto", elem_id=f"tasks-{task}-images")
            meta = gr.Markdown(elem_classes=["imagine-meta"])

    async def go(chosen: str, words: str, raw: str, picture: str | None = None, masked: str | None = None,
                 progress: Any = gr.Progress()) -> AsyncIterator[tuple[Any, ...]]:
        try:
            opts = parse_options(raw or "")
            if task == "see":
                response = ctx.client.see(_load(picture, (Image,), "an image", ctx), words or "Describe this image.",
                                          _model(chosen), **opts)
            elif task == "draw":
                response = ctx.client.draw(words, _model(chosen), **opts)
            else:
                source = _load(picture, (Image,), "an image", ctx)
                response = ctx.client.edit(source, words, _model(chosen), mask=masked or None, **opts)
            from ..events import Progress, TextDelta

            so_far = ""
            async for event in response.aevents():
                if isinstance(event, Progress) and event.total:
                    progress(event.done / event.total, desc=f"{event.label or task} {event.done:.0f}/{event.total:.0f}")
                elif isinstance(event, TextDelta) and task == "see":
                    so_far += event.text
                    yield _shown(""), so_far, gr.update()
        except Exception as exc:
            yield _shown(_message(exc)), gr.update(), gr.update()
            return
        _record(ctx, task, response, opts, [picture, masked], prompt=words)
        facts = f"{response.latency_s or 0:.1f} s on `{response.answered_ref}`"
        if task == "see":
            yield _shown(""), response.text(), facts
        else:
            yield _shown(""), [media_file(p) for p in response.parts if isinstance(p, Image)], facts

    inputs = [model, prompt, options] + ([image] if image is not None else []) + ([mask] if mask is not None else [])
    run.click(go, inputs, [error, out, meta])


def build(ctx: StudioContext) -> None:
    import gradio as gr

    with gr.Tabs(elem_id="tasks-tabs"):
        with gr.Tab("Transcribe", id="tasks-transcribe"):
            _transcribe(ctx)
        with gr.Tab("Speak", id="tasks-speak"):
            _speak(ctx)
        with gr.Tab("Read text", id="tasks-read"):
            _read(ctx)
        with gr.Tab("Watch", id="tasks-watch"):
            _watch(ctx)
        for task in ("see", "draw", "edit"):
            with gr.Tab(task.capitalize(), id=f"tasks-{task}"):
                _image_task(ctx, task)
