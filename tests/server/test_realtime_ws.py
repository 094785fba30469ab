"""`/v1/realtime`: a client streams synthesised speech in real time over the WebSocket, as a microphone
would, and hears the reply — through the official openai SDK's realtime client and a plain websockets one.

One server per module on the bundled models (Whisper tiny.en, SmolLM2 via llama.cpp, Piper joe); the
first session loads them. Speech comes from espeak-ng, so the STT sees a voice it was not tuned on."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import numpy as np
import pytest

from tests.helpers.server import served
from tests.helpers.speech import needs_espeak, synth_wav, wer

pytest.importorskip("faster_whisper", reason="needs the speech extra: pip install 'imagine[speech]'")
pytest.importorskip("llama_cpp", reason="needs the llama extra: pip install 'imagine[llama]'")
websockets = pytest.importorskip("websockets", reason="needs websockets (installed with uvicorn[standard])")

pytestmark = [needs_espeak, pytest.mark.timeout(300)]

RATE = 24000
STEP = RATE // 50  # 20 ms, as a microphone sends it
LLM = {"temperature": 0, "max_response_output_tokens": 60}


def speech(text: str) -> np.ndarray:
    from imagine.parts import Audio

    samples, _ = Audio(synth_wav(text)).samples(RATE)
    return samples.astype(np.float32)


def onset(samples: np.ndarray) -> int:
    """First sample of audible speech (espeak starts with a little silence)."""
    return int(np.flatnonzero(np.abs(samples) > 0.02)[0])


def b64(samples: np.ndarray) -> str:
    return base64.b64encode((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()).decode()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with served(tmp_path_factory.mktemp("realtime")) as s:
        yield s


class Feeder:
    """Appends audio in 20 ms events paced by the wall clock, as a microphone would."""

    def __init__(self, send: Any) -> None:
        self.send, self.t0 = send, time.monotonic()
        self.sent = 0  # samples so far

    async def feed(self, samples: np.ndarray) -> None:
        for first in range(0, len(samples), STEP):
            wait = self.t0 + (self.sent / RATE) - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await self.send(b64(samples[first:first + STEP]))
            self.sent += len(samples[first:first + STEP])

    async def silence_until(self, done: asyncio.Event, limit_s: float = 30) -> None:
        end = time.monotonic() + limit_s
        while not done.is_set() and time.monotonic() < end:
            await self.feed(np.zeros(STEP * 5, np.float32))


def sdk_connection(server: Any) -> Any:
    import openai

    client = openai.AsyncOpenAI(api_key="none", base_url=server.base_url,
                                websocket_base_url=server.base_url.replace("http", "ws"))
    return client.beta.realtime.connect(model="gpt-4o-realtime-preview")


def test_official_sdk_talks_and_hears_the_reply(server):
    """Two fresh questions, each its own turn: the transcript is right, and the reply audio, heard back
    by Whisper, says what the log says the model wrote."""
    questions = ["How many legs does a spider have?", "What is the biggest city in Japan?"]

    async def talk() -> list[dict[str, Any]]:
        turns: list[dict[str, Any]] = []
        async with sdk_connection(server) as conn:
            await conn.session.update(session={"instructions": "Answer in one short sentence.", **LLM})
            feeder = Feeder(lambda audio: conn.input_audio_buffer.append(audio=audio))
            for question in questions:
                done, turn = asyncio.Event(), {"audio": [], "events": []}
                turns.append(turn)

                async def listen() -> None:
                    async for event in conn:
                        turn["events"].append(event.type)
                        if event.type == "conversation.item.input_audio_transcription.completed":
                            turn["transcript"] = event.transcript
                        elif event.type == "response.audio.delta":
                            turn["audio"].append(base64.b64decode(event.delta))
                        elif event.type == "response.audio_transcript.done":
                            turn["said"] = event.transcript
                        elif event.type == "response.done":
                            turn["response"] = event.response
                            done.set()
                            return
                        elif event.type == "error":
                            turn.setdefault("errors", []).append(event.error.message)

                listener = asyncio.create_task(listen())
                await feeder.feed(np.concatenate([np.zeros(RATE // 4, np.float32), speech(question)]))
                await feeder.silence_until(done)
                await asyncio.wait_for(listener, 30)
        return turns

    turns = asyncio.run(talk())
    for question, turn in zip(questions, turns):
        assert "errors" not in turn, turn.get("errors")
        assert wer(question, turn["transcript"]) <= 0.15, (question, turn["transcript"])
        response = turn["response"]
        assert response.status == "completed"
        assert turn["events"].index("input_audio_buffer.speech_started") < turn["events"].index("response.created")
        logged = server.client.store.get(response.metadata["log_id"])
        assert logged["conversation_id"] and logged["output_text"].strip()
        heard_back = server.client.transcribe(
            __import__("imagine").Audio.from_samples(
                np.frombuffer(b"".join(turn["audio"]), "<i2").astype(np.float32) / 32767, RATE)).text()
        # Piper speaks it, Whisper tiny.en hears it: measured WER 0-0.1 on such replies; 0.35 leaves room
        # for a name or number the pair renders differently
        assert wer(logged["output_text"], heard_back) <= 0.35, (logged["output_text"], heard_back)
        assert wer(turn["said"], logged["output_text"]) <= 0.1  # the transcript deltas are the reply text


def test_speaking_over_the_reply_stops_it_and_keeps_what_was_heard(server):
    story = speech("Please tell me a story about a brave little dragon.")
    interruption = speech("Wait, stop, what time is it?")  # made now: synthesis mid-stream would make the feed late

    async def talk() -> dict[str, Any]:
        seen: dict[str, Any] = {"audio_after": 0, "audio": 0}
        async with websockets.connect(server.url.replace("http", "ws") + "/v1/realtime", max_size=None) as ws:
            async def send(audio: str) -> None:
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))

            await ws.send(json.dumps({"type": "session.update", "session": {
                "instructions": "Tell long, detailed stories of at least five sentences.", **LLM,
                "max_response_output_tokens": 200}}))
            feeder = Feeder(send)
            first_audio, done = asyncio.Event(), asyncio.Event()

            async def listen() -> None:
                async for raw in ws:
                    event = json.loads(raw)
                    if event["type"] == "response.audio.delta":
                        seen["audio"] += 1
                        first_audio.set()
                        if event["response_id"] == seen.get("response", {}).get("id"):
                            seen["audio_after"] += 1  # the cut reply's audio after its response.done
                    elif event["type"] == "response.done" and event["response"]["status"] != "completed":
                        seen["stop_at"], seen["response"] = time.monotonic(), event["response"]
                        done.set()
                    elif event["type"] == "response.done":
                        seen["finished_first"] = True
                        done.set()

            listener = asyncio.create_task(listen())
            await feeder.feed(np.concatenate([np.zeros(RATE // 4, np.float32), story]))
            while not first_audio.is_set():
                await feeder.feed(np.zeros(STEP * 5, np.float32))
            await feeder.feed(np.zeros(RATE, np.float32))  # a second of the reply plays
            start = feeder.sent
            await feeder.feed(interruption)
            # speech onset happens when its sample is due on the wall clock (a microphone hears it then),
            # even if this client sent it late: a late client only makes the measured stop time longer
            seen["onset_at"] = feeder.t0 + (start + onset(interruption)) / RATE
            await feeder.silence_until(done, 5)
            await asyncio.sleep(0.3)  # anything still in flight would arrive now
            listener.cancel()
        return seen

    seen = asyncio.run(talk())
    assert "finished_first" not in seen, "the story ended before the interruption: ask for a longer one"
    response = seen["response"]
    assert response["status"] == "cancelled" and response["status_details"]["reason"] == "turn_detected"
    stop = seen["stop_at"] - seen["onset_at"]
    print(f"barge-in: the reply stopped {stop * 1000:.0f} ms after speech onset")
    assert stop <= 0.2, f"the reply stopped {stop * 1000:.0f} ms after speech onset"
    assert seen["audio_after"] == 0
    item = response["output"][0]
    heard, generated = response["metadata"]["heard"], response["metadata"]["generated"]
    assert item["status"] == "incomplete" and item["content"][0]["transcript"] == heard
    assert heard and generated.split()[:len(heard.split())] == heard.split() and len(heard) < len(generated)


def test_silence_and_noise_are_no_turn(server):
    rng = np.random.default_rng(7)
    audio = np.concatenate([np.zeros(RATE * 2, np.float32),
                            (rng.standard_normal(RATE * 3) * 0.05).astype(np.float32),
                            (0.2 * np.sin(2 * np.pi * 1000 * np.arange(RATE * 2) / RATE)).astype(np.float32),
                            np.zeros(RATE * 2, np.float32)])

    async def talk() -> list[str]:
        kinds: list[str] = []
        async with websockets.connect(server.url.replace("http", "ws") + "/v1/realtime", max_size=None) as ws:
            async def listen() -> None:
                async for raw in ws:
                    kinds.append(json.loads(raw)["type"])

            listener = asyncio.create_task(listen())
            await Feeder(lambda a: ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": a}))).feed(audio)
            await asyncio.sleep(1.5)
            listener.cancel()
        return kinds

    kinds = asyncio.run(talk())
    assert "session.created" in kinds
    assert not {"conversation.item.created", "response.created", "input_audio_buffer.committed"} & set(kinds), kinds


async def _exchange(url: str, events: list[dict[str, Any]], until: str, headers: Any = None,
                    subprotocols: Any = None, limit: float = 60) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    async with websockets.connect(url, max_size=None, additional_headers=headers, subprotocols=subprotocols) as ws:
        for event in events:
            await ws.send(event if isinstance(event, str) else json.dumps(event))
        end = time.monotonic() + limit
        while time.monotonic() < end:
            event = json.loads(await asyncio.wait_for(ws.recv(), end - time.monotonic()))
            got.append(event)
            if event["type"] == until:
                break
    return got


def test_text_turns_and_bad_events_get_named_errors(server):
    url = server.url.replace("http", "ws") + "/v1/realtime"
    events = [
        "not json",
        {"type": "bogus.event", "event_id": "e1"},
        {"type": "input_audio_buffer.append", "audio": "***"},
        {"type": "session.update", "session": {"turn_detection": {"silence_duration_ms": 5}}},
        {"type": "session.update", "session": {"input_audio_format": "g711_ulaw"}},
        {"type": "conversation.item.truncate", "item_id": "nope", "content_index": 0, "audio_end_ms": 10},
        {"type": "response.cancel"},
        {"type": "session.update", "session": {"modalities": ["text"], "turn_detection": None, **LLM}},
        {"type": "conversation.item.create",
         "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Say hello."}]}},
        {"type": "response.create"},
    ]
    got = asyncio.run(_exchange(url, events, "response.done"))
    errors = [e["error"] for e in got if e["type"] == "error"]
    assert [e["code"] for e in errors] == ["invalid_json", "unknown_event", "invalid_value", "invalid_value",
                                           "invalid_value", "item_not_found", "response_cancel_not_active"]
    assert errors[1]["event_id"] == "e1" and errors[1]["param"] == "type"
    assert [e["param"] for e in errors[2:5]] == ["audio", "turn_detection.silence_duration_ms", "input_audio_format"]
    kinds = [e["type"] for e in got]
    assert "response.text.delta" in kinds and "response.audio.delta" not in kinds
    done = got[-1]["response"]
    assert done["status"] == "completed" and done["output"][0]["content"][0]["type"] == "text"
    assert done["output"][0]["content"][0]["text"].strip()


def test_keys_origin_and_session_cap(tmp_path):
    from imagine.server.keys import KeyStore

    _, key = KeyStore(tmp_path).create("voice")
    with served(tmp_path, realtime_sessions=1) as s:
        url = s.url.replace("http", "ws") + "/v1/realtime"
        hello = [{"type": "session.update", "session": {"modalities": ["text"]}}]

        def refused(**kwargs: Any) -> int:
            with pytest.raises(websockets.exceptions.InvalidStatus) as info:
                asyncio.run(_exchange(url, hello, "session.updated", **kwargs))
            return info.value.response.status_code

        assert refused() == 403  # no key
        assert refused(headers={"authorization": "Bearer imk-wrong"}) == 403
        assert refused(headers={"authorization": f"Bearer {key}", "origin": "http://evil.example"}) == 403
        ok = asyncio.run(_exchange(url, hello, "session.updated", headers={"authorization": f"Bearer {key}"}))
        assert ok[-1]["session"]["modalities"] == ["text"]
        browser = asyncio.run(_exchange(url, hello, "session.updated", headers={"origin": s.url},
                                        subprotocols=["realtime", f"openai-insecure-api-key.{key}"]))
        assert browser[0]["type"] == "session.created"

        async def two_at_once() -> Any:
            async with websockets.connect(url, additional_headers={"authorization": f"Bearer {key}"}) as first:
                await first.recv()  # session.created: the one allowed session is open
                async with websockets.connect(url, additional_headers={"authorization": f"Bearer {key}"}) as second:
                    with pytest.raises(websockets.exceptions.ConnectionClosed) as info:
                        await second.recv()
                    return info.value.rcvd.code if info.value.rcvd else None

        assert asyncio.run(two_at_once()) == 1013


def test_a_picture_and_tools_in_a_text_turn(server):
    import io

    from tests.helpers.media import slide

    buf = io.BytesIO()
    slide("OPEN 9 TO 5", (255, 255, 255)).save(buf, "PNG")
    picture = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    url = server.url.replace("http", "ws") + "/v1/realtime"
    events = [
        {"type": "session.update", "session": {"tools": [{"type": "function", "name": "launch_rocket"}]}},
        {"type": "session.update", "session": {"modalities": ["text"], "turn_detection": None, **LLM}},
        {"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [
            {"type": "input_image", "image_url": "data:image/png;base64,bm90IGFuIGltYWdl"}]}},
        {"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [
            {"type": "input_image", "image_url": picture}, {"type": "input_text", "text": "What does the sign say?"}]}},
        {"type": "response.create"},
    ]
    got = asyncio.run(_exchange(url, events, "response.done"))
    errors = [e["error"] for e in got if e["type"] == "error"]
    assert errors[0]["param"] == "tools" and "launch_rocket" in errors[0]["message"]
    assert errors[1]["param"] == "item.content[0].image_url", errors
    assert len(errors) == 2
    done = got[-1]["response"]
    assert done["status"] == "completed"
    rows = server.client.store.recent(20)
    reply = next(r for r in rows if r["id"] == done["metadata"]["log_id"])
    assert "OPEN 9 TO 5" in str(reply["input"]).upper()  # read by OCR for the text-only model
    assert any(r["engine"] == "rapidocr" and r["conversation_id"] == reply["conversation_id"] for r in rows)
