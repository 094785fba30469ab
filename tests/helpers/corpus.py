"""A small multimodal corpus made here, offline and from fixed inputs, whose right answers are known:
text and markdown files, a three-page PDF, PNGs with drawn text at known places, spoken WAVs with
sentences at known seconds, and a short video with captions and speech. `QUESTIONS` says, for each
question, which file (and page / box point / second / scene) holds the answer."""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage, ImageDraw, ImageFont

from .media import make_video, slide
from .speech import RATE, speech, trim

TEXTS = {
    "meeting.md": "# Planning meeting\n\nWe decided to cut the travel budget by ten percent next year, and "
                  "conferences abroad now need the director's approval.\n\n"
                  "Two new engineers join the platform team in March to work on the billing service.\n\n"
                  "The Lisbon office moves to a larger building near the river in the autumn.\n",
    "kitchen.txt": "Knead the bread dough for ten minutes until it is smooth and elastic, then let it rise.\n\n"
                   "The tomato soup is finished with fresh basil and a spoon of olive oil.\n",
    "space.txt": "Jupiter's Great Red Spot is a storm wider than the whole Earth.\n\n"
                 "Saturn's rings are made mostly of ice and rock, from dust grains to boulders.\n",
}
PDF_PAGES = [
    ["Photosynthesis converts sunlight, water and", "carbon dioxide into sugar and oxygen in plant leaves."],
    ["The French Revolution began in 1789", "with the storming of the Bastille prison in Paris."],
    ["Volcanoes erupt when molten magma rises", "through cracks in the crust of the Earth."],
]
# image name -> blocks of (text, top-left corner); blocks far apart on one picture
IMAGES = {
    "dialog.png": [("Error 0x42: disk full", (40, 40)), ("Parking for bicycles only", (40, 300))],
    "invoice.png": [("Invoice total: 512 euros", (60, 80))],
}
# sound file -> (offset seconds, sentence), spoken with espeak at these offsets in silence
AUDIO = {
    "earnings.wav": [(1.0, "The quarterly revenue grew by twelve percent."),
                     (9.0, "Our next product launch is planned for September.")],
    "penguins.wav": [(2.0, "Emperor penguins huddle together to survive the Antarctic winter.")],
}
VIDEO_SLIDES = [(4.0, "Gradient descent", (200, 60, 60)), (4.0, "Attention heads", (60, 140, 60))]
VIDEO_SPEECH = [(0.5, "Gradient descent follows the slope of the loss downhill."),
                (4.5, "Each attention head looks at every other word.")]


@dataclass(frozen=True)
class Question:
    text: str
    file: str
    page: int | None = None
    point: tuple[int, int] | None = None  # a pixel inside the right box
    second: float | None = None  # the moment the answer starts being said
    scene: int | None = None


QUESTIONS = [
    Question("what did we decide about the travel budget?", "meeting.md"),
    Question("who joins the platform team in March?", "meeting.md"),
    Question("where is the Lisbon office moving?", "meeting.md"),
    Question("how long should I knead bread dough?", "kitchen.txt"),
    Question("what goes in the tomato soup?", "kitchen.txt"),
    Question("how big is the storm on Jupiter?", "space.txt"),
    Question("what are Saturn's rings made of?", "space.txt"),
    Question("how do plants make sugar from sunlight?", "notes.pdf", page=1),
    Question("when did the French Revolution begin?", "notes.pdf", page=2),
    Question("why do volcanoes erupt?", "notes.pdf", page=3),
    Question("the screenshot with the disk full error", "dialog.png", point=(60, 50)),
    Question("bicycle parking sign", "dialog.png", point=(60, 310)),
    Question("how much was the invoice total?", "invoice.png", point=(80, 90)),
    Question("how much did quarterly revenue grow?", "earnings.wav", second=1.0),
    Question("when is the next product launch?", "earnings.wav", second=9.0),
    Question("how do emperor penguins survive the winter?", "penguins.wav", second=2.0),
    Question("what does gradient descent follow?", "lecture.mp4", second=0.5),
]


def pdf_bytes(pages: list[list[str]]) -> bytes:
    """A minimal valid PDF: one Helvetica text line per entry, one page per list, with a correct xref."""
    objects: list[bytes] = []
    kids = []
    font_id = 3
    for n, lines in enumerate(pages):
        page_id, content_id = 4 + 2 * n, 5 + 2 * n
        kids.append(f"{page_id} 0 R")
        ops = "BT /F1 14 Tf 72 720 Td 18 TL " + " ".join(
            f"({line.replace('(', '[').replace(')', ']')}) Tj T*" for line in lines) + " ET"
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 {font_id} 0 R "
                       f">> >> /Contents {content_id} 0 R >>".encode())
        objects.append(f"<< /Length {len(ops)} >>\nstream\n{ops}\nendstream".encode())
    head = [b"<< /Type /Catalog /Pages 2 0 R >>",
            f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(pages)} >>".encode(),
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(head + objects, start=1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(offsets) + 1}\n0000000000 65535 f \n".encode())
    for offset in offsets:
        out.write(f"{offset:010d} 00000 n \n".encode())
    out.write(f"trailer\n<< /Size {len(offsets) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


def picture(blocks: list[tuple[str, tuple[int, int]]], size: tuple[int, int] = (640, 400)) -> bytes:
    img = PILImage.new("RGB", size, (235, 235, 240))
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=28)
    for text, (x, y) in blocks:
        draw.text((x, y), text, fill=(10, 10, 10), font=font)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _track(sentences: list[tuple[float, str]], seconds: float) -> np.ndarray:
    track = np.zeros(int(seconds * RATE), dtype=np.float32)
    for start, text in sentences:
        voice = trim(speech(text))  # speech starts exactly at `start`
        begin = int(start * RATE)
        track[begin:begin + len(voice)] = voice[: len(track) - begin]
    return track


def _wav(samples: np.ndarray) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def write_corpus(root: Path) -> Path:
    """Write every file of the corpus under `root` and return it."""
    root.mkdir(parents=True, exist_ok=True)
    for name, text in TEXTS.items():
        (root / name).write_text(text)
    (root / "notes.pdf").write_bytes(pdf_bytes(PDF_PAGES))
    for name, blocks in IMAGES.items():
        (root / name).write_bytes(picture(blocks))
    for name, sentences in AUDIO.items():
        (root / name).write_bytes(_wav(_track(sentences, sentences[-1][0] + 6.0)))
    total = sum(seconds for seconds, _, _ in VIDEO_SLIDES)
    frames = [(seconds, slide(text, colour)) for seconds, text, colour in VIDEO_SLIDES]
    (root / "lecture.mp4").write_bytes(make_video(frames, _track(VIDEO_SPEECH, total), rate=RATE))
    return root
