"""Spoken chat answers (`modalities: ["text", "audio"]`): the text is generated, then spoken by the default
voice engine through the one request path, and returned in OpenAI's shape, whole or streamed, as the
official SDK reads it."""

from __future__ import annotations

import base64
import io
import wave

import pytest

openai = pytest.importorskip("openai")

from imagine.media.encode import audio_formats  # noqa: E402

WORDS = "Hello there, this is a spoken answer."
USER = [{"role": "user", "content": WORDS}]


def _seconds(wav: bytes) -> float:
    with wave.open(io.BytesIO(wav)) as decoded:
        assert decoded.getframerate() > 0 and decoded.getnframes() > 0
        return decoded.getnframes() / decoded.getframerate()


def test_a_spoken_answer_is_message_audio_with_its_transcript(server):
    raw = server.openai().chat.completions.with_raw_response.create(
        model="mock", messages=USER, modalities=["text", "audio"], audio={"voice": "alloy", "format": "wav"})
    message = raw.parse().choices[0].message
    assert message.content is None and message.audio is not None
    assert message.audio.transcript == WORDS and message.audio.id.startswith("audio_")
    assert message.audio.expires_at > 0
    assert 1.0 < _seconds(base64.b64decode(message.audio.data)) < 15  # a sentence, spoken
    speech = server.client.store.get(message.audio.id.removeprefix("audio_"))  # the speech is logged too
    assert speech["output_parts"][0]["kind"] == "audio"


def test_a_streamed_spoken_answer_sends_transcript_then_audio_chunks(server):
    stream = server.openai().chat.completions.create(
        model="mock", messages=USER, modalities=["text", "audio"], audio={"voice": "alloy", "format": "pcm16"},
        stream=True)
    transcript, data, ids, finish = [], [], [], None
    for chunk in stream:
        for choice in chunk.choices:
            audio = getattr(choice.delta, "audio", None) or {}
            if not isinstance(audio, dict):  # newer SDKs type it (ChoiceDeltaAudio)
                audio = audio.model_dump(exclude_none=True)
            assert not choice.delta.content
            transcript.append(audio.get("transcript", ""))
            if "data" in audio:
                assert not ids, "audio data comes before the id"
                data.append(base64.b64decode(audio["data"]))
            if "id" in audio:
                ids.append(audio["id"])
            finish = choice.finish_reason or finish
    assert "".join(transcript) == WORDS and len(ids) == 1 and finish == "stop"
    pcm = b"".join(data)
    assert len(pcm) % 2 == 0 and 1.0 < len(pcm) / 2 / 24000 < 15  # 24 kHz 16-bit mono


def test_audio_format_errors_name_the_field(server):
    sdk = server.openai()
    with pytest.raises(openai.BadRequestError) as err:
        sdk.chat.completions.create(model="mock", messages=USER, modalities=["text", "audio"],
                                    audio={"voice": "alloy", "format": "aiff"})  # type: ignore[typeddict-item]
    assert err.value.body["param"] == "audio.format"
    with pytest.raises(openai.BadRequestError) as err:
        sdk.chat.completions.create(model="mock", messages=USER, modalities=["text", "audio"])
    assert err.value.body["param"] == "audio"
    missing = [f for f, why in audio_formats().items() if why is not None and f in ("mp3", "flac", "opus")]
    if missing:  # a format this FFmpeg cannot write is refused before anything is generated
        fmt = missing[0]
        with pytest.raises(openai.BadRequestError) as err:
            sdk.chat.completions.create(model="mock", messages=USER, modalities=["text", "audio"],
                                        audio={"voice": "alloy", "format": fmt})
        assert err.value.body["param"] == "audio.format"
