"""Built-in tools running for real: the bundled whisper hears a WAV, rapidocr reads a PNG, and the model
(the mock, scripted to call them) gets both results; a drawing tool's image comes back as an Image part."""

from __future__ import annotations

import io
from typing import AsyncIterator

import pytest
from PIL import Image as PILImage

import imagine
from imagine import Done, Image, Modality, PartOut, ToolCall, Usage
from imagine.agents.loop import ToolStep
from imagine.engine import Engine, NoOptions, Request

from ..helpers.media import slide
from ..helpers.speech import needs_espeak, synth_wav

pytest.importorskip("faster_whisper", reason="needs faster-whisper (the bundled speech-to-text)")
pytest.importorskip("rapidocr", reason="needs rapidocr (the bundled OCR)")


@needs_espeak
def test_an_agent_hears_a_wav_reads_a_png_and_answers_from_both(model, tmp_path):
    (tmp_path / "note.wav").write_bytes(synth_wav("The meeting starts at three pm."))
    sign = tmp_path / "sign.png"
    slide("Meeting moved to room 42", (230, 230, 230)).save(sign)
    model.enqueue([ToolCall("c1", "transcribe", {"audio": "note.wav"}),  # a path in the allowed folder
                   ToolCall("c2", "read_text", {"image": "image-1"}),  # the attached file, by handle
                   Usage(40, 2), Done("tool_calls")])
    # nothing more queued: the mock answers with the last turn it read, here the two tool results
    run = imagine.agent("Where is the meeting and when does it start?", tools=["transcribe", "read_text"],
                        model="mock", attach=[sign], allow_dirs=[tmp_path])
    answer = run.text()
    heard, read = (s for s in sorted((s for s in run.steps if isinstance(s, ToolStep)), key=lambda s: s.call_id))
    assert heard.ok and read.ok, (heard.result, read.result)
    transcript, ocr = heard.result.content["text"], read.result.content["text"]
    assert "meeting" in transcript.lower() and ("3" in transcript or "three" in transcript.lower())
    assert "room 42" in ocr.lower()
    sent = {r.call_id: r.content for r in model.requests[1].messages[-1].tool_results}
    assert sent == {"c1": {"text": transcript}, "c2": {"text": ocr}}  # what the tools returned reached the model
    assert transcript in answer and ocr in answer
    assert "image-1 (sign.png)" in model.requests[0].messages[1].text


def _png() -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", (20, 10), (0, 128, 255)).save(buf, "PNG")
    return buf.getvalue()


class Painter(Engine[NoOptions]):
    """A local text-to-image engine that paints one colour (a stand-in for a diffusion model)."""

    id = "painter"
    locality = "local"
    inputs = frozenset({Modality.TEXT})
    outputs = frozenset({Modality.IMAGE})
    default_model = "flat"
    auto_select = False
    Options = NoOptions

    async def stream(self, request: Request[NoOptions]) -> AsyncIterator:
        yield PartOut(Image(_png(), name="painting.png"))
        yield Done()


def test_the_draw_tool_gives_an_image_part_not_base64(model):
    imagine.get_registry().register(Painter)
    model.enqueue([ToolCall("c1", "draw", {"prompt": "a blue field"}), Done("tool_calls")])
    model.enqueue("Here is the blue field.")
    run = imagine.agent("Draw a blue field", tools=["draw"], model="mock", models={"draw": "painter"},
                        confirm=True)
    text, image = run.parts
    assert text.text == "Here is the blue field." and isinstance(image, Image)
    assert image.pil().size == (20, 10) and image.pil().getpixel((3, 3)) == (0, 128, 255)
    result = model.requests[1].messages[-1].tool_results[0].content
    assert result == {"image": "image-1", "width": 20, "height": 10}
