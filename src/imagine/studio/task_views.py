"""Pictures and tables for the Tasks tab, drawn with numpy + Pillow (no plotting library): a spectrogram
with the transcript's segments marked under it, OCR boxes on the picture they were read from, a video's
scenes and speech on one timeline; and what the registry says about who can see, draw or edit here."""

from __future__ import annotations

import io
from typing import Any, Iterable, Sequence

from ..parts import Image, Modality, Segments
from ..subtitles import to_srt, to_vtt
from .chat import _MEDIA_DIR, media_file

__all__ = ["boxes_picture", "capability", "capability_note", "clock", "png_file", "segment_rows",
           "spectrogram_picture", "subtitle_files", "timeline_picture", "timeline_rows", "voice_choices"]

WIDTH = 1000
INK, MUTED, PAPER = (31, 41, 55), (107, 114, 128), (249, 250, 251)
SPANS = [(79, 70, 229), (14, 116, 144)]  # alternate segments: indigo, teal
SPEECH = (217, 119, 6)
# a magma-like ramp: quiet is near-black violet, loud is pale yellow
_STOPS = [(0.0, (10, 8, 30)), (0.3, (80, 18, 123)), (0.55, (182, 54, 121)), (0.8, (251, 136, 97)),
          (1.0, (252, 253, 191))]


def clock(seconds: float) -> str:
    """0:03.25 / 1:02:03.25 (what the tables show)."""
    minutes, secs = divmod(max(0.0, seconds), 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{secs:05.2f}" if hours else f"{minutes}:{secs:05.2f}"


def _font(size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def png_file(picture: Any) -> str:
    """A file Gradio can serve for a PIL picture."""
    buf = io.BytesIO()
    picture.save(buf, format="PNG", optimize=True)
    return media_file(Image(buf.getvalue(), mime="image/png"))


def _ramp(values: Any) -> Any:
    import numpy as np

    xs = [s for s, _ in _STOPS]
    return np.stack([np.interp(values, xs, [c[i] for _, c in _STOPS]) for i in range(3)], axis=-1).astype(np.uint8)


def _spectrum(blocks: Iterable[Any], duration: float, columns: int, rate: int = 16000, n_fft: int = 512) -> Any:
    """(n_fft/2, columns) dB magnitudes: one windowed FFT per column, centred on its share of the audio;
    the audio comes in blocks, so memory stays flat on long recordings."""
    import numpy as np

    centres = ((np.arange(columns) + 0.5) * duration / columns * rate).astype(np.int64)
    window = np.hanning(n_fft).astype(np.float32)
    out = np.full((n_fft // 2, columns), -120.0, np.float32)
    offset = 0
    for block in blocks:
        block = np.asarray(block, np.float32)
        inside = np.flatnonzero((centres >= offset) & (centres < offset + len(block)))
        if len(block) >= n_fft and len(inside):
            starts = np.clip(centres[inside] - offset - n_fft // 2, 0, len(block) - n_fft)
            frames = block[starts[:, None] + np.arange(n_fft)] * window
            mags = np.abs(np.fft.rfft(frames, axis=1))[:, 1:]
            out[:, inside] = (20 * np.log10(mags + 1e-6)).T
        offset += len(block)
    return out


def _axis(draw: Any, top: int, duration: float, width: int) -> None:
    """Time ticks at a round step along `top`."""
    step = next((s for s in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)
                 if duration / s <= 10), 7200)
    font, t = _font(15), 0.0
    while t <= duration + 1e-9:
        x = min(width - 1, int(t / max(duration, 1e-9) * (width - 1)))
        draw.line((x, top, x, top + 4), fill=MUTED)
        label = clock(t).rsplit(".", 1)[0] if step >= 1 else clock(t)[:-1]
        bbox = draw.textbbox((0, 0), label, font=font)
        draw.text((min(max(0, x - (bbox[2] - bbox[0]) // 2), width - bbox[2]), top + 6), label, fill=MUTED, font=font)
        t += step


def _lane(draw: Any, top: int, height: int, spans: Sequence[tuple[float, float, str]], duration: float,
          width: int, colours: Sequence[tuple[int, int, int]]) -> None:
    """Rounded bars for (start, end, label) spans on a pale lane."""
    draw.rounded_rectangle((0, top, width - 1, top + height), radius=6, fill=(238, 240, 244))
    font = _font(16)
    for i, (start, end, label) in enumerate(spans):
        x0 = int(start / max(duration, 1e-9) * (width - 1))
        x1 = max(x0 + 3, int(end / max(duration, 1e-9) * (width - 1)))
        draw.rounded_rectangle((x0, top + 3, x1, top + height - 3), radius=5, fill=colours[i % len(colours)])
        bbox = draw.textbbox((0, 0), label, font=font)
        if bbox[2] - bbox[0] + 8 < x1 - x0:
            draw.text((x0 + 5, top + (height - (bbox[3] - bbox[1])) // 2 - bbox[1]), label, fill="white", font=font)


def spectrogram_picture(blocks: Iterable[Any], duration: float, segments: Segments, width: int = WIDTH) -> Any:
    """The spectrogram (0-8 kHz) with each segment's span shaded on it and numbered in a lane below."""
    import numpy as np
    from PIL import Image as PILImage, ImageDraw

    spec_h, lane_h = 200, 34
    db = _spectrum(blocks, max(duration, 1e-3), width)
    top = float(db.max())
    level = np.clip((db - (top - 80.0)) / 80.0, 0, 1)[::-1]  # low frequencies at the bottom
    spec = PILImage.fromarray(_ramp(level)).resize((width, spec_h), PILImage.Resampling.BILINEAR)
    picture = PILImage.new("RGB", (width, spec_h + lane_h + 26), PAPER)
    picture.paste(spec, (0, 0))
    overlay = PILImage.new("RGBA", (width, spec_h), (0, 0, 0, 0))
    shade = ImageDraw.Draw(overlay)
    for seg in segments.items:
        x0, x1 = (int(t / max(duration, 1e-9) * (width - 1)) for t in (seg.start, seg.end))
        shade.rectangle((x0, 0, x1, spec_h - 1), fill=(255, 255, 255, 28))
        shade.line((x0, 0, x0, spec_h - 1), fill=(255, 255, 255, 170), width=1)
    picture.paste(overlay, (0, 0), overlay)
    draw = ImageDraw.Draw(picture)
    spans = [(s.start, s.end, f"{i}  {s.text.strip()}") for i, s in enumerate(segments.items, 1)]
    _lane(draw, spec_h + 4, lane_h - 4, spans, duration, width, SPANS)
    _axis(draw, spec_h + lane_h + 2, duration, width)
    return picture


def segment_rows(segments: Segments) -> list[list[str]]:
    return [[clock(s.start), clock(s.end), s.text.strip()] for s in segments.items]


def subtitle_files(segments: Segments, stem: str) -> tuple[str, str]:
    """(path.srt, path.vtt) named after the input, in a folder of their own (content-addressed)."""
    import hashlib

    srt, vtt = to_srt(segments), to_vtt(segments)
    folder = _MEDIA_DIR / hashlib.sha256((srt + stem).encode()).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:80] or "transcript"
    paths = folder / f"{stem}.srt", folder / f"{stem}.vtt"
    paths[0].write_text(srt, encoding="utf-8")
    paths[1].write_text(vtt, encoding="utf-8")
    return str(paths[0]), str(paths[1])


def boxes_picture(image: Image, lines: Sequence[dict[str, Any]], max_side: int = 1600) -> Any:
    """The picture with each OCR line's box outlined and numbered in reading order."""
    from PIL import Image as PILImage, ImageDraw

    picture = image.pil(mode="RGB")
    scale = min(1.0, max_side / max(picture.size))
    if scale < 1.0:
        picture = picture.resize((max(1, int(picture.width * scale)), max(1, int(picture.height * scale))))
    overlay = PILImage.new("RGBA", picture.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    stroke = max(2, round(max(picture.size) / 400))
    font = _font(max(12, round(max(picture.size) / 45)))
    for number, line in enumerate(lines, 1):
        points = [(x * scale, y * scale) for x, y in line.get("box") or []]
        if len(points) < 3:
            continue
        draw.polygon(points, fill=(99, 102, 241, 50), outline=(79, 70, 229, 255), width=stroke)
        label = str(number)
        x, y = min(p[0] for p in points), min(p[1] for p in points)
        bbox = draw.textbbox((0, 0), label, font=font)
        w, h = bbox[2] - bbox[0] + 8, bbox[3] - bbox[1] + 6
        tag = (x, max(0, y - h - 2), x + w, max(0, y - h - 2) + h)
        draw.rounded_rectangle(tag, radius=3, fill=(79, 70, 229, 235))
        draw.text((tag[0] + 4, tag[1] + 3 - bbox[1]), label, fill="white", font=font)
    return PILImage.alpha_composite(picture.convert("RGBA"), overlay).convert("RGB")


def timeline_picture(timeline: Segments, duration: float, thumbs: dict[float, Any], width: int = WIDTH) -> Any:
    """A video's timeline: scene key frames at their times over a scene lane and a speech lane."""
    from PIL import Image as PILImage, ImageDraw

    thumb_h, lane_h = 90, 32
    picture = PILImage.new("RGB", (width, thumb_h + 2 * lane_h + 40), PAPER)
    draw = ImageDraw.Draw(picture)
    scenes = [s for s in timeline.items if s.meta.get("kind") == "scene"]
    speech = [s for s in timeline.items if s.meta.get("kind") == "speech"]
    for seg in scenes:  # later thumbnails overlap earlier ones when scenes are short
        frame = thumbs.get(seg.start)
        if frame is None:
            continue
        small = frame.convert("RGB")
        small.thumbnail((int(thumb_h * 16 / 9), thumb_h))
        x = min(int(seg.start / max(duration, 1e-9) * (width - 1)), width - small.width)
        picture.paste(small, (x, 0))
        draw.rectangle((x, 0, x + small.width - 1, small.height - 1), outline=(255, 255, 255), width=2)
    _lane(draw, thumb_h + 6, lane_h, [(s.start, s.end, f"scene {s.meta.get('scene', '')}") for s in scenes],
          duration, width, SPANS)
    _lane(draw, thumb_h + lane_h + 12, lane_h, [(s.start, s.end, s.text) for s in speech], duration, width,
          [SPEECH])
    _axis(draw, thumb_h + 2 * lane_h + 14, duration, width)
    return picture


def timeline_rows(timeline: Segments) -> list[list[str]]:
    rows = []
    for seg in timeline.items:
        kind = seg.meta.get("kind", "")
        label = f"scene {seg.meta['scene']}" if kind == "scene" and "scene" in seg.meta else kind
        rows.append([clock(seg.start), clock(seg.end), label, seg.text or "(no text)"])
    return rows


def voice_choices(engine: Any) -> tuple[list[tuple[str, str]], str | None]:
    """(label, value) choices for an engine's voices and the default one's value."""
    if not hasattr(engine, "list_voices"):
        return [], None
    choices, default = [], None
    for v in engine.list_voices():
        value = str(v.get("identifier") or v["name"])
        langs = ", ".join(v.get("languages") or [])
        extra = ", ".join(x for x in (langs, v.get("gender") if v.get("gender") != "unknown" else "") if x)
        choices.append((f"{v['name']} ({extra})" if extra else str(v["name"]), value))
        if default is None and ("en-us" in [lang.lower() for lang in v.get("languages") or []]
                                or v.get("source") == "bundled"):
            default = value
    return choices, default or (choices[0][1] if choices else None)


def capability(registry: Any, needed: set[Modality], want: Modality) -> tuple[list[str], list[str], dict[str, str]]:
    """(ENGINE:MODEL refs that run here by default, engines that run when a model is named, engines that
    could do it but cannot run here: id -> why)."""
    ready: list[str] = []
    for engine_id in registry.capable(needed, want):
        try:
            engine = registry.engine(engine_id)
        except Exception:
            continue
        ready.append(f"{engine_id}:{engine.default_model}" if engine.default_model else engine_id)
    named = registry.capable(needed, want, named_only=True)
    missing: dict[str, str] = {}
    for engine_id in registry.ids:
        cls = registry.engine_class(engine_id)
        reason = cls.unavailable_reason()
        fits = needed <= cls.inputs and want in cls.outputs and (not cls.needs_one_of or needed & cls.needs_one_of)
        if reason and fits and engine_id != "mock":
            missing[engine_id] = reason
    return ready, named, missing


_EXAMPLES = {"see": "transformers:HuggingFaceTB/SmolVLM-256M-Instruct", "draw": "diffusers:stabilityai/sd-turbo",
             "edit": "diffusers:stabilityai/sd-turbo"}
_KIND = {"see": "a vision model", "draw": "an image model", "edit": "an image model"}


def capability_note(task: str, ready: list[str], named: list[str], missing: dict[str, str]) -> str:
    """Markdown for the top of See / Draw / Edit: what can do it here, or what it needs."""
    if ready:
        return f"Runs on {', '.join(f'`{r}`' for r in ready)} here; name another model to try it."
    lines = [f"**{task.capitalize()} needs {_KIND[task]}**: none runs here by default."]
    if named:
        example = _EXAMPLES[task] if _EXAMPLES[task].split(":")[0] in named else f"{named[0]}:OWNER/NAME"
        lines.append(f"Name one in *Model*, e.g. `{example}` ({', '.join(named)}: a local folder or a Hugging "
                     "Face id, downloaded on first use when the machine is online).")
    if missing:
        lines.append("Or set up: " + "; ".join(f"{e} — {why}" for e, why in sorted(missing.items())) + ".")
    return "\n\n".join(lines)

