"""Pictures and tools in the voice loop: "read me the sign" with a picture shown goes through read_text
(the bundled model cannot see), and a tool is called by voice through the agent loop.

Real bundled models (Whisper tiny.en, SmolLM2, Piper, PP-OCR), audio fed in real time."""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

import numpy as np
import pytest

from tests.helpers.media import slide
from tests.helpers.speech import needs_espeak, synth_wav

pytest.importorskip("faster_whisper", reason="needs the speech extra: pip install 'imagine[speech]'")
pytest.importorskip("llama_cpp", reason="needs the llama extra: pip install 'imagine[llama]'")
pytest.importorskip("rapidocr", reason="needs the vision extra: pip install 'imagine[vision]'")

pytestmark = [needs_espeak, pytest.mark.timeout(300)]

RATE = 24000


def speech(text: str) -> np.ndarray:
    from imagine.parts import Audio

    samples, _ = Audio(synth_wav(text)).samples(RATE)
    return samples.astype(np.float32)


def sign() -> Any:
    from imagine.parts import Image

    buf = io.BytesIO()
    slide("OPEN 9 TO 5", (255, 255, 255)).save(buf, "PNG")
    return Image(buf.getvalue(), name="sign.png")


async def converse(session: Any, audio: np.ndarray, limit_s: float = 40) -> list[Any]:
    """Feed `audio` in real time, then silence until a reply is done; returns the session's events."""
    from imagine.realtime import events as ev

    got: list[Any] = []
    done = asyncio.Event()

    async def read() -> None:
        async for event in session.events():
            got.append(event)
            if isinstance(event, (ev.ReplyDone, ev.SessionError)):
                done.set()

    reader = asyncio.create_task(read())
    t0, step, fed = time.monotonic(), RATE // 50, 0
    audio = np.concatenate([np.zeros(RATE // 4, np.float32), audio])
    while not done.is_set() and time.monotonic() - t0 < limit_s:
        chunk = audio[fed:fed + step] if fed < len(audio) else np.zeros(step, np.float32)
        wait = t0 + fed / RATE - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        session.append(chunk, RATE)
        fed += step
    await session.close()
    await reader
    return got


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from imagine import Client

    with Client(home=tmp_path_factory.mktemp("talk-media")) as c:
        yield c


def test_a_shown_picture_is_read_for_a_model_that_cannot_see(client):
    from imagine.realtime import SessionConfig, VoiceSession
    from imagine.realtime import events as ev
    from imagine.realtime.context import takes_images

    assert not takes_images(client, None)  # the bundled SmolLM2 reads text only: the OCR path is the one taken

    async def run() -> tuple[list[Any], str]:
        session = VoiceSession(client, SessionConfig(llm_options={"max_tokens": 40, "temperature": 0}))
        await session.warm()
        session.show(sign())
        return await converse(session, speech("Read me the sign, please.")), session.id

    events, conversation = asyncio.run(run())
    done = [e for e in events if isinstance(e, ev.ReplyDone)]
    assert done and done[0].status == "completed", events
    rows = client.store.recent(50, conversation_id=conversation)
    engines = [r["engine"] for r in rows]
    assert "rapidocr" in engines and "whisper" in engines and "llama-cpp" in engines, engines
    reply = client.store.get(done[0].item.log_id)
    asked = str(reply["input"])
    assert "OPEN 9 TO 5" in asked.upper()  # the model was told what the picture says
    assert done[0].item.text  # and said something about it


def test_a_tool_is_called_by_voice(client):
    from imagine.realtime import SessionConfig, VoiceSession
    from imagine.realtime import events as ev

    calls: list[str] = []

    def weather(city: str) -> str:
        """Today's weather forecast for a city."""
        calls.append(city)
        return f"In {city} it is sunny and 21 degrees."

    async def run() -> list[Any]:
        config = SessionConfig(tools=[weather], llm_options={"max_tokens": 60, "temperature": 0,
                                                             "tool_choice": "required"})
        session = VoiceSession(client, config)
        await session.warm()
        return await converse(session, speech("What is the weather in Paris?"))

    events = asyncio.run(run())
    done = [e for e in events if isinstance(e, ev.ReplyDone)]
    assert done and done[0].status == "completed", events
    assert len(calls) == 1 and calls[0].strip()  # the model chose the tool and gave it a city
    assert done[0].item.text  # and answered after seeing the result


def test_only_pictures_can_be_shown(client):
    from imagine.errors import InputError
    from imagine.parts import Audio
    from imagine.realtime import VoiceSession

    with pytest.raises(InputError, match="only pictures"):
        VoiceSession(client).show(Audio.from_samples(np.zeros(160, np.float32), 16000))
