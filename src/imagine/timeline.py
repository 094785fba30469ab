"""`watch`: understand a video as one timestamped timeline.

Frames are sampled every `every` seconds; a frame that differs enough from the last key frame starts a
new scene, and each scene's key frame is read with OCR. The sound track is transcribed. Both become
Segments on one timeline (meta kind "scene" or "speech") that `ask` can summarise with the local LLM.
Every OCR and transcription call goes through the normal task path, so each is logged.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any, Callable

from .errors import InputError
from .parts import Image, Segment, Segments, Video
from .subtitles import format_timestamp

if TYPE_CHECKING:
    from .client import Client

__all__ = ["summarize_timeline", "timeline_text", "watch"]

ProgressFn = Callable[[float, float, str], None]


def _thumbnail(frame: Any) -> Any:
    """A small colour copy for cheap scene comparison (float array in [0, 1]); colour, not grey, because
    two slides of equal brightness but different hue are different scenes."""
    import numpy as np

    return np.asarray(frame.convert("RGB").resize((64, 36)), dtype=np.float32) / 255.0


def _png(frame: Any) -> Image:
    buf = io.BytesIO()
    frame.save(buf, format="PNG")
    return Image(buf.getvalue(), mime="image/png")


def watch(video: Video | str | bytes, *, every: float = 0.5, scene_threshold: float = 0.08,
          ocr_model: str | None = None, asr_model: str | None = None, ocr: bool = True,
          transcribe_audio: bool = True, progress: ProgressFn | None = None, log: bool | None = None,
          client: "Client | None" = None) -> Segments:
    """Build the timeline of a video: scene changes with their on-screen text, and the speech."""
    import numpy as np

    from .client import default_client
    from .tasks import _media, read_text, transcribe

    client = client or default_client()
    if every <= 0:
        raise InputError("every must be a positive number of seconds")
    part = _media(video, (Video,), "watch", client)
    assert isinstance(part, Video)
    info = part.info()
    limits = client.settings.part_limits()
    total = max(1.0, info.duration / every) + (1 if transcribe_audio and info.has_audio else 0)
    report = progress or (lambda done, total, label: None)

    # 1. scenes: key frames where the picture changes
    keys: list[tuple[float, Any]] = []
    last = None
    for index, (time, frame) in enumerate(part.frames(every, limits=limits)):
        thumb = _thumbnail(frame)
        if last is None or float(np.abs(thumb - last).mean()) > scene_threshold:
            keys.append((time, frame))
            last = thumb
        report(index + 1, total, "frames")
    segments: list[Segment] = []
    for i, (start, frame) in enumerate(keys):
        end = keys[i + 1][0] if i + 1 < len(keys) else max(info.duration, start)
        text = ""
        if ocr:
            text = " / ".join(line for line in read_text(_png(frame), ocr_model, log=log, client=client).text().splitlines()
                              if line.strip())
        segments.append(Segment(round(start, 3), round(end, 3), text, meta={"kind": "scene", "scene": i + 1}))

    # 2. speech from the sound track
    if transcribe_audio and info.has_audio:
        response = transcribe(part, asr_model, log=log, client=client)  # times already narrowed to the speech
        for out in response.parts:
            if isinstance(out, Segments):
                for seg in out.items:
                    segments.append(Segment(seg.start, seg.end, seg.text.strip(), meta={"kind": "speech"}))
        report(total, total, "speech")
    segments.sort(key=lambda s: (s.start, s.meta.get("kind") != "scene"))
    return Segments(segments)


def timeline_text(timeline: Segments) -> str:
    """One line per segment: `[start - end] scene 2: on-screen text` / `[start - end] speech: words`."""
    lines = []
    for seg in timeline.items:
        kind = seg.meta.get("kind", "segment")
        label = f"scene {seg.meta['scene']}" if kind == "scene" and "scene" in seg.meta else kind
        lines.append(f"[{format_timestamp(seg.start)[3:]} - {format_timestamp(seg.end)[3:]}] {label}: "
                     f"{seg.text or '(no text)'}")
    return "\n".join(lines)


def summarize_timeline(timeline: Segments, model: str | None = None, *, client: "Client | None" = None,
                       **options: Any) -> Any:
    """Ask the (local) LLM for a short summary of the timeline; returns the Response."""
    from .tasks import ask

    prompt = ("Here is the timeline of a video: on-screen text per scene and the spoken words, "
              "with timestamps.\n\n" + timeline_text(timeline) + "\n\nSummarise what the video is about in two sentences.")
    return ask(prompt, model, client=client, **{"temperature": 0, "max_tokens": 120, **options})
