"""`POST /v1/audio/speech` streamed, end to end on a real uvicorn server with the official openai SDK.

The default voice (Piper, else espeak) checks what a client gets: pcm at 24 kHz, a streaming WAV header
then PCM, OpenAI's server-sent events, each the length of the clip the request logged. A gated test voice
(one sentence, then it waits for the test) checks what timing cannot show reliably: the first chunk is out
while synthesis is still under way, and a client that hangs up stops it."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import threading
import time
from typing import Any, AsyncIterator, ClassVar, Iterator

import httpx
import numpy as np
import pytest

from imagine.engine import Engine, NoOptions, Request
from imagine.errors import UpstreamError
from imagine.events import Done, PartOut, Usage, pcm_delta
from imagine.media.decode import decode_audio
from imagine.media.encode import PCM_RATE, audio_formats
from imagine.parts import Audio, Modality

from ..helpers.speech import needs_espeak

openai = pytest.importorskip("openai")

TEXT = "The first sentence is short. Here comes a second one. And the third sentence ends it."


class GatedVoice(Engine[NoOptions]):
    """Speaks 0.2 s of tone per sentence at 16 kHz; after the first it waits until `gate` is set."""

    id = "gated-voice"
    inputs = frozenset({Modality.TEXT})
    outputs = frozenset({Modality.AUDIO})
    default_model = "tone"
    auto_select = False
    Options = NoOptions
    RATE = 16000
    gate: ClassVar[threading.Event] = threading.Event()
    made: ClassVar[int] = 0
    finished: ClassVar[bool] = False  # reached its end
    closed: ClassVar[bool] = False  # its stream was closed (ended or stopped)
    breaks: ClassVar[bool] = False  # fails instead of making the second sentence

    @classmethod
    def reset(cls) -> None:
        cls.gate, cls.made, cls.finished, cls.closed, cls.breaks = threading.Event(), 0, False, False, False

    async def stream(self, request: Request[NoOptions]) -> AsyncIterator[Any]:
        cls = type(self)
        sentences = [s for s in request.messages[-1].text.split(".") if s.strip()]
        tone = (0.3 * np.sin(np.arange(int(0.2 * cls.RATE)) * 2 * np.pi * 440 / cls.RATE)).astype(np.float32)
        try:
            for index, _ in enumerate(sentences):
                if index:
                    deadline = time.monotonic() + 30
                    while not cls.gate.is_set() and time.monotonic() < deadline:
                        await asyncio.sleep(0.01)
                    if cls.breaks:
                        raise UpstreamError("the voice broke down")
                cls.made += 1
                yield pcm_delta(tone, cls.RATE, sentence=index)
            samples = np.concatenate([tone] * len(sentences))
            yield PartOut(Audio.from_samples(samples, cls.RATE, name="speech.wav"))
            yield Usage(input_tokens=len(request.messages[-1].text), output_tokens=0, cost=0.0)
            cls.finished = True
            yield Done("stop")
        finally:
            cls.closed = True


@pytest.fixture
def gated(server: Any) -> Iterator[type[GatedVoice]]:
    server.client.registry.register(GatedVoice, replace=True)
    GatedVoice.reset()
    yield GatedVoice
    GatedVoice.gate.set()  # never leave a request waiting


def _wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def _create(server: Any, text: str = TEXT, model: str = "tts-1", **kwargs: Any) -> Any:
    return server.openai().audio.speech.with_streaming_response.create(model=model, voice="alloy", input=text,
                                                                       **kwargs)


def _logged_clip(server: Any, log_id: str) -> tuple[Any, int]:
    """(samples, rate) of the clip the request logged: what the engine made, whole."""
    row = server.client.store.get(log_id)
    audio = next(p for p in map(server.client.store.part_from_record, row["output_parts"]) if isinstance(p, Audio))
    return audio.samples(None)


def _events(lines: Any) -> list[dict[str, Any]]:
    return [json.loads(line[len("data: "):]) for line in lines if line.startswith("data: ")]


# -- timing and cancelling, with the gated voice ------------------------------------------------------

def test_the_first_chunk_comes_while_synthesis_is_still_under_way(server, gated):
    with _create(server, model="gated-voice", response_format="pcm") as response:
        assert response.headers["content-type"] == "audio/pcm"
        chunks = response.iter_bytes()
        first = next(chunks)
        assert first and gated.made == 1 and not gated.finished  # out before the second sentence exists
        gated.gate.set()
        rest = list(chunks)
    data = first + b"".join(rest)
    assert gated.finished and len(rest) >= 1
    seconds = len(data) / 2 / PCM_RATE  # three 0.2 s sentences, resampled 16 -> 24 kHz
    assert len(data) % 2 == 0 and abs(seconds - 0.6) < 0.02
    row = server.client.store.get(response.headers["x-imagine-log-id"])
    assert row["engine"] == "gated-voice" and row["finish_reason"] == "stop"


def test_sse_sends_a_delta_per_sentence_as_it_is_made(server, gated):
    with _create(server, model="gated-voice", response_format="pcm", stream_format="sse") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        assert json.loads(first[6:])["type"] == "speech.audio.delta" and not gated.finished
        gated.gate.set()
        events = _events([first, *lines])
    types = [e["type"] for e in events]  # a delta per sentence (and the resampler's last few samples)
    assert types[-1] == "speech.audio.done" and types[:-1] == ["speech.audio.delta"] * len(types[:-1])
    assert len(types) - 1 >= 3
    usage = events[-1]["usage"]
    assert usage["input_tokens"] == len(TEXT) and usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_a_client_that_hangs_up_stops_the_synthesis(server, gated):
    with httpx.Client(timeout=30) as http:
        with http.stream("POST", server.base_url + "/audio/speech",
                         json={"model": "gated-voice", "input": TEXT, "response_format": "wav"}) as response:
            assert response.status_code == 200
            log_id = response.headers["x-imagine-log-id"]
            assert next(response.iter_raw())
    _wait_for(lambda: gated.closed)  # the engine's stream was closed while it waited: nobody set the gate
    assert gated.made == 1 and not gated.finished
    _wait_for(lambda: _row(server, log_id) is not None)
    assert _row(server, log_id)["finish_reason"] == "cancelled"


def test_a_failure_part_way_is_an_error_event_or_a_cut_stream(server, gated):
    gated.breaks = True
    gated.gate.set()
    with _create(server, model="gated-voice", response_format="pcm", stream_format="sse") as response:
        events = _events(response.iter_lines())
    assert events[0]["type"] == "speech.audio.delta" and "broke down" in events[-1]["error"]["message"]
    gated.reset()
    gated.breaks = True
    gated.gate.set()
    with httpx.Client(timeout=30) as http:
        with http.stream("POST", server.base_url + "/audio/speech",
                         json={"model": "gated-voice", "input": TEXT, "response_format": "pcm"}) as response:
            assert response.status_code == 200
            with pytest.raises(httpx.HTTPError):  # the connection ends without its last chunk: not a whole clip
                response.read()


def _row(server: Any, log_id: str) -> dict[str, Any] | None:
    try:
        return server.client.store.get(log_id)
    except Exception:  # not written yet
        return None


# -- the default voice ----------------------------------------------------------------------------------

@needs_espeak
def test_pcm_streams_the_whole_clip_at_24khz(server):
    with _create(server, response_format="pcm", stream_format="audio") as response:
        assert response.headers["content-type"] == "audio/pcm"
        assert response.headers["x-content-type-options"] == "nosniff"
        chunks = list(response.iter_bytes())
    data = b"".join(chunks)
    samples, rate = _logged_clip(server, response.headers["x-imagine-log-id"])
    clip = len(samples) / rate
    assert 2.5 < clip < 15  # three sentences
    assert len(data) % 2 == 0 and abs(len(data) / 2 / PCM_RATE - clip) < 0.01 * clip
    assert np.abs(np.frombuffer(data, "<i2")).max() > 1000  # speech, not silence


@needs_espeak
def test_wav_is_streamed_by_default_as_a_header_then_pcm(server):
    with _create(server, response_format="wav") as response:
        assert response.headers["content-type"] == "audio/wav"
        data = response.read()
    riff, riff_size, wave, fmt, fmt_size, codec, channels, rate, _, _, bits, tag, size = \
        struct.unpack("<4sI4s4sIHHIIHH4sI", data[:44])
    assert (riff, wave, fmt, tag, riff_size, size) == (b"RIFF", b"WAVE", b"fmt ", b"data", 0xFFFFFFFF, 0xFFFFFFFF)
    assert (fmt_size, codec, channels, bits) == (16, 1, 1, 16) and 8000 <= rate <= 48000
    samples, logged_rate = _logged_clip(server, response.headers["x-imagine-log-id"])
    assert logged_rate == rate and abs((len(data) - 44) / 2 - len(samples)) <= 0.01 * len(samples)
    decoded, decoded_rate = decode_audio(data, rate=None)  # FFmpeg reads a streaming WAV too
    assert abs(len(decoded) / decoded_rate - len(samples) / rate) < 0.05 * len(samples) / rate


@needs_espeak
@pytest.mark.parametrize("fmt", ["pcm", "mp3"])
def test_sse_events_carry_the_audio_and_end_with_usage(server, fmt):
    if audio_formats()[fmt] is not None:
        pytest.skip(f"{fmt}: {audio_formats()[fmt]}")
    with _create(server, response_format=fmt, stream_format="sse") as response:
        assert response.status_code == 200  # sse used to be refused with a 400
        events = _events(response.iter_lines())
    assert events[-1]["type"] == "speech.audio.done" and events[-1]["usage"]["input_tokens"] > 0
    deltas = events[:-1]
    assert deltas and all(e["type"] == "speech.audio.delta" for e in deltas)
    data = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    seconds = len(data) / 2 / PCM_RATE if fmt == "pcm" else len(decode_audio(data, rate=16000)[0]) / 16000
    assert 2.5 < seconds < 15


@needs_espeak
def test_a_compressed_format_with_stream_format_audio_is_the_whole_file(server):
    if audio_formats()["mp3"] is not None:
        pytest.skip(f"mp3: {audio_formats()['mp3']}")
    with _create(server, "hello world", response_format="mp3", stream_format="audio") as response:
        assert response.headers["content-type"] == "audio/mpeg" and "x-imagine-log-id" in response.headers
        data = response.read()
    samples, rate = decode_audio(data, rate=None)
    assert 0.4 < len(samples) / rate < 4


def test_errors_before_the_first_byte_are_openai_json(server):
    for stream_format in ("audio", "sse"):
        with pytest.raises(openai.BadRequestError) as err:
            with _create(server, "  ", stream_format=stream_format, response_format="pcm"):
                pass
        assert err.value.body["param"] == "input"
        with pytest.raises(openai.BadRequestError) as err:
            with _create(server, response_format="midi", stream_format=stream_format):  # type: ignore[arg-type]
                pass
        assert err.value.body["param"] == "response_format"
        with pytest.raises(openai.BadRequestError) as err:
            with _create(server, model="mock", response_format="pcm", stream_format=stream_format):
                pass
        assert "audio" in err.value.body["message"]
        with pytest.raises(openai.NotFoundError):
            with _create(server, model="no-such-engine:x", response_format="pcm", stream_format=stream_format):
                pass


@needs_espeak
def test_a_voice_the_engine_lacks_is_a_400_before_streaming(server):
    for stream_format in ("audio", "sse"):
        with pytest.raises(openai.BadRequestError) as err:
            with server.openai().audio.speech.with_streaming_response.create(
                    model="espeak", voice="no-such-voice-zz", input="hi", response_format="pcm",
                    stream_format=stream_format):
                pass
        assert "no-such-voice-zz" in err.value.body["message"]
