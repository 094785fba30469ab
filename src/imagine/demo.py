"""`imagine demo` / `make demo`: the main job, offline, on the embedded default model.

SmolLM2-135M is small: it is good at short lists, summaries and (grammar-constrained) extraction,
and poor at facts. The demo shows what it does well, then where the log went.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from pydantic import BaseModel, Field

from .config import get_settings
from .tasks import ask

__all__ = ["run_demo"]


class Contact(BaseModel):
    """What the extraction step pulls out of free text."""

    name: str = Field(description="the person's full name")
    company: str = Field(description="the company they work for")
    email: str = Field(description="their email address")


TIPS = "Give three short tips for staying focused while studying."
EXTRACT = ("Extract the contact details from this email signature as JSON.\n\n"
           "Thanks again for the demo! Best, Dana Whitfield, Northwind Labs, dana.whitfield@northwind.io")
SUMMARY = ("Summarise in one sentence: The city council voted on Tuesday to extend the riverside bike path "
           "by four kilometres. Construction starts in spring and should finish before the summer festival. "
           "The project is paid for by a regional climate grant.")


def _heading(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}")


def run_demo(model: str | None = None) -> None:
    ids = []
    _heading("1. a streamed answer")
    print(f"> {TIPS}")
    t0 = time.perf_counter()
    response = ask(TIPS, model, temperature=0, seed=7, max_tokens=160)
    for delta in response:
        print(delta, end="", flush=True)
    tokens = "?" if response.usage.output_tokens is None else response.usage.output_tokens  # None: not reported
    print(f"\n[{response.answered_ref} · {tokens} tokens in "
          f"{time.perf_counter() - t0:.1f}s · first token after {(response.ttft_s or 0) * 1000:.0f} ms]")
    ids.append(response.id)

    _heading("2. structured output (JSON schema → validated object)")
    print(f"> {EXTRACT}")
    extraction = ask(EXTRACT, model, schema=Contact, temperature=0, seed=7, max_tokens=128)
    contact = extraction.parsed
    print(f"{contact!r}")
    ids.append(extraction.id)

    _heading("3. a one-sentence summary")
    print(f"> {SUMMARY}")
    summary = ask(SUMMARY, model, temperature=0, seed=7, max_tokens=80)
    for delta in summary:
        print(delta, end="", flush=True)
    print()
    ids.append(summary.id)

    settings = get_settings()
    files = _media_round_trip(summary.text().strip(), settings.home / "demo")

    _heading("logged")
    if settings.log:
        print(f"{len(ids) + 3} responses logged to {settings.db_path}; files in {files}")
        print(f"  imagine logs            # the latest responses\n  imagine logs show {ids[0][:12]}   # one in full")
    else:
        print("logging is off (IMAGINE_LOG=0)")
    print("\nThis is a 135M-parameter model that runs anywhere. For better answers point imagine at a bigger GGUF:\n"
          "  imagine ask -m llama-cpp:~/models/qwen2.5-7b-instruct-q4_k_m.gguf \"...\"\n"
          "  imagine ask -m llama-cpp:bartowski/Qwen2.5-7B-Instruct-GGUF/*Q4_K_M.gguf \"...\"   # from the hub")


def _draw_sign(path: Path) -> None:
    """A picture with text on it, for the OCR step."""
    from PIL import Image as PILImage, ImageDraw, ImageFont

    img = PILImage.new("RGB", (640, 200), (250, 246, 235))
    draw = ImageDraw.Draw(img)
    draw.text((30, 40), "Riverside bike path", fill=(20, 20, 20), font=ImageFont.load_default(size=44))
    draw.text((30, 110), "opens on 14 June", fill=(160, 30, 30), font=ImageFont.load_default(size=44))
    img.save(path)


def _media_round_trip(text: str, folder: Path) -> Path:
    """The default voice (Piper) speaks the summary, whisper transcribes it back, OCR reads a drawn sign."""
    from .parts import Audio
    from .tasks import read_text, speak, transcribe

    folder.mkdir(parents=True, exist_ok=True)
    _heading("4. speak the summary, transcribe it back")
    spoken = speak(text)
    audio = next(p for p in spoken.parts if isinstance(p, Audio))
    wav = folder / "summary.wav"
    wav.write_bytes(audio.data)
    voice = spoken.answered_by[0].id  # piper, or espeak where piper is not installed
    print(f"{voice:<7} → {wav} ({spoken.usage.extra.get('seconds', audio.duration):.1f} s of speech)")
    heard = transcribe(wav).text().strip()
    print(f"whisper → {heard}")

    _heading("5. read the text in a picture")
    sign = folder / "sign.png"
    _draw_sign(sign)
    print(f"drew {sign}")
    print(f"rapidocr → {read_text(sign).text()!r}")
    return folder
