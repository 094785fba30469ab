"""Reproducible media for tests: small PNG and WAV bytes; slides with text (Pillow) and a sound track, muxed
into MP4 with PyAV."""

from __future__ import annotations

import io
import wave
from fractions import Fraction
from typing import Sequence

import numpy as np
from PIL import Image as PILImage, ImageDraw, ImageFont


def png_bytes(size=(8, 6), color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def wav_bytes(seconds=0.1, rate=8000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x00" * int(seconds * rate))
    return buf.getvalue()


def slide(text: str, colour: tuple[int, int, int], size: tuple[int, int] = (640, 360)) -> PILImage.Image:
    img = PILImage.new("RGB", size, colour)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=48)
    box = draw.textbbox((0, 0), text, font=font)
    x, y = (size[0] - (box[2] - box[0])) // 2, (size[1] - (box[3] - box[1])) // 2
    draw.rectangle((x - 20, y - 20, x + box[2] - box[0] + 20, y + box[3] - box[1] + 30), fill=(255, 255, 255))
    draw.text((x, y), text, fill=(0, 0, 0), font=font)
    return img


def make_video(slides: Sequence[tuple[float, PILImage.Image]], audio: np.ndarray | None = None,
               rate: int = 16000, fps: int = 10) -> bytes:
    """MP4 (H.264 + AAC) bytes: each (seconds, image) slide shown in turn; `audio` mono float32 at `rate`."""
    import av

    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        width, height = slides[0][1].size
        vstream = container.add_stream("libx264", rate=fps)
        vstream.width, vstream.height, vstream.pix_fmt = width, height, "yuv420p"
        astream = None
        if audio is not None:
            astream = container.add_stream("aac", rate=rate)
            astream.layout = "mono"
        index = 0
        for seconds, image in slides:
            for _ in range(int(round(seconds * fps))):
                frame = av.VideoFrame.from_image(image)
                frame.pts = index
                frame.time_base = Fraction(1, fps)
                index += 1
                for packet in vstream.encode(frame):
                    container.mux(packet)
        for packet in vstream.encode():
            container.mux(packet)
        if astream is not None and audio is not None:
            pcm = np.asarray(audio, dtype=np.float32)[None, :]
            step = 1024
            for start in range(0, pcm.shape[1], step):
                chunk = np.ascontiguousarray(pcm[:, start:start + step])
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                frame.sample_rate = rate
                frame.pts = start
                frame.time_base = Fraction(1, rate)
                for packet in astream.encode(frame):
                    container.mux(packet)
            for packet in astream.encode():
                container.mux(packet)
    return buf.getvalue()


def write_long_flac(path, minutes: int, clips: Sequence[np.ndarray], *, every: int = 1, rate: int = 16000) -> None:
    """`minutes` of digital silence as FLAC with a clip 20 s into every `every`-th minute (the clips in
    turn), encoded a minute at a time so that hours of audio never sit in memory: the long-audio tests and
    bench/long_audio.py share it."""
    import av

    with av.open(str(path), "w", format="flac") as out:
        stream = out.add_stream("flac", rate=rate, layout="mono")
        for minute in range(minutes):
            block = np.zeros(60 * rate, np.float32)
            if minute % every == 0:
                clip = clips[(minute // every) % len(clips)]
                block[20 * rate:20 * rate + len(clip)] = clip
            pcm = (np.clip(block, -1, 1) * 32767).astype("<i2")[None, :]
            frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
