"""Make the inputs the screenshots and lecture examples run on, offline and reproducibly from a seed.

    python examples/flows/make_inputs.py            # writes examples/flows/inputs/ (git ignores it)
    python examples/flows/make_inputs.py --out DIR --seed 7

Why generated, not shipped: media in git is dead weight, and a seed makes the same files on every machine.
Screenshots are PNGs of app-like windows with a line of text drawn by Pillow; the lecture is an MP4 of
captioned slides with a voice-over spoken by the bundled espeak-ng engine (through imagine itself), muxed
with PyAV.
"""

from __future__ import annotations

import argparse
import random
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

HERE = Path(__file__).resolve().parent

# file stem -> the text the screenshot shows (what OCR should read back)
SCREENSHOTS = {
    "error": "ERROR 42: connection refused",
    "invoice": "Invoice total: 318.50 EUR",
    "meeting": "Meeting moved to 10:30 in room B",
    "build": "Build passed: 128 tests green",
    "battery": "Low battery: 7 percent left",
}

# (seconds on screen, caption, what the voice says while it shows); the voice starts 0.3 s into a slide
LECTURE = [
    (4.0, "Photosynthesis", "Today we look at how plants turn sunlight into sugar."),
    (4.0, "Chlorophyll is green", "The green pigment in the leaves is called chlorophyll."),
    (3.0, "Questions?", "Thank you for listening."),
]
RATE = 16000


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def screenshot(text: str, rng: random.Random, size: tuple[int, int] = (720, 240)) -> Image.Image:
    """A window with a title bar and one line of dark text on a light background (what OCR reads well)."""
    back = tuple(rng.randint(225, 255) for _ in range(3))
    bar = tuple(rng.randint(40, 120) for _ in range(3))
    img = Image.new("RGB", size, back)  # type: ignore[arg-type]
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, size[0], 28), fill=bar)  # type: ignore[arg-type]
    for i, colour in enumerate(((230, 80, 70), (240, 190, 60), (90, 190, 90))):
        draw.ellipse((10 + 20 * i, 8, 22 + 20 * i, 20), fill=colour)
    draw.text((24 + rng.randint(0, 30), 90 + rng.randint(-20, 20)), text, fill=(20, 20, 20), font=_font(36))
    return img


def slide(caption: str, colour: tuple[int, int, int], size: tuple[int, int] = (640, 360)) -> Image.Image:
    """A coloured slide with its caption in black on a white box, centred."""
    img = Image.new("RGB", size, colour)
    draw = ImageDraw.Draw(img)
    font = _font(44)
    box = draw.textbbox((0, 0), caption, font=font)
    w, h = box[2] - box[0], box[3] - box[1]
    x, y = (size[0] - w) // 2, (size[1] - h) // 2
    draw.rectangle((x - 20, y - 20, x + w + 20, y + h + 30), fill=(255, 255, 255))
    draw.text((x, y), caption, fill=(0, 0, 0), font=font)
    return img


def mux(slides: Sequence[tuple[float, Image.Image]], audio: np.ndarray, path: Path, fps: int = 10) -> None:
    """MP4 (H.264 + AAC): each (seconds, image) in turn, with `audio` (mono float32 at RATE) under it."""
    import av

    with av.open(str(path), mode="w", format="mp4") as out:
        width, height = slides[0][1].size
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = out.add_stream("aac", rate=RATE)
        sound.layout = "mono"
        index = 0
        for seconds, image in slides:
            for _ in range(int(round(seconds * fps))):
                frame = av.VideoFrame.from_image(image)
                frame.pts, frame.time_base = index, Fraction(1, fps)
                index += 1
                out.mux(video.encode(frame))
        out.mux(video.encode())
        pcm = np.asarray(audio, dtype=np.float32)[None, :]
        for start in range(0, pcm.shape[1], 1024):
            chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[:, start:start + 1024]), format="fltp",
                                               layout="mono")
            chunk.sample_rate, chunk.pts, chunk.time_base = RATE, start, Fraction(1, RATE)
            out.mux(sound.encode(chunk))
        out.mux(sound.encode())


def make_screenshots(folder: Path, seed: int = 0) -> list[Path]:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem, text in SCREENSHOTS.items():
        path = folder / f"{stem}.png"
        screenshot(text, rng).save(path)
        paths.append(path)
    return paths


def make_lecture(path: Path, seed: int = 0) -> Path:
    """The slides with their voice-over; espeak is deterministic, so the seed only picks the colours."""
    from imagine import Audio, speak

    rng = random.Random(seed)
    total = sum(seconds for seconds, _, _ in LECTURE)
    track = np.zeros(int(total * RATE), dtype=np.float32)
    slides, start = [], 0.0
    for seconds, caption, said in LECTURE:
        colour = (rng.randint(40, 200), rng.randint(40, 200), rng.randint(40, 200))
        slides.append((seconds, slide(caption, colour)))
        audio = next(p for p in speak(said, "espeak", log=False).parts if isinstance(p, Audio))
        voice, _ = audio.samples(RATE)
        begin = int((start + 0.3) * RATE)
        voice = voice[: min(len(voice), int((seconds - 0.3) * RATE))]  # the next slide's voice never overlaps
        track[begin:begin + len(voice)] = voice
        start += seconds
    path.parent.mkdir(parents=True, exist_ok=True)
    mux(slides, track, path)
    return path


def make_inputs(out: Path = HERE / "inputs", seed: int = 0) -> dict[str, Path]:
    """Everything both examples read, under `out` (the folder their YAML files point at by default)."""
    make_screenshots(out / "screenshots", seed)
    return {"screenshots": out / "screenshots", "lecture": make_lecture(out / "lecture.mp4", seed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "inputs", help="folder to write (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for name, path in make_inputs(args.out, args.seed).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
