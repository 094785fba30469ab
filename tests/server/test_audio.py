"""Audio end to end: a real uvicorn server driven by the official openai SDK. Transcription of espeak-ng
speech with the bundled Whisper tiny.en in every response format, translation, speech with the default
voice in every format this FFmpeg can write (round-tripped through transcription), and the errors."""

from __future__ import annotations

import io
import re
from importlib.util import find_spec

import numpy as np
import pytest

from imagine.media.decode import decode_audio
from imagine.media.encode import PCM_RATE, audio_formats

from ..helpers.media import png_bytes
from ..helpers.speech import needs_espeak, synth_wav, wer

openai = pytest.importorskip("openai")
pytest.importorskip("faster_whisper", reason="needs the speech extra: pip install -e '.[speech]'")

pytestmark = needs_espeak

SENTENCE = "The quick brown fox jumps over the lazy dog."
TIME = r"\d\d:\d\d:\d\d[.,]\d\d\d"


@pytest.fixture(scope="module")
def wav() -> bytes:
    return synth_wav(SENTENCE)


def transcribe(server, wav, **kwargs):
    return server.openai().audio.transcriptions.with_raw_response.create(
        model="whisper-1", file=("speech.wav", wav, "audio/wav"), **kwargs)


def test_json_is_the_text_and_names_its_log_row(server, wav):
    raw = transcribe(server, wav)
    assert wer(SENTENCE, raw.parse().text) <= 0.2
    row = server.client.store.get(raw.headers["x-imagine-log-id"])
    assert row["engine"] == "whisper"


def test_text_srt_and_vtt(server, wav):
    text = transcribe(server, wav, response_format="text").parse()
    assert isinstance(text, str) and wer(SENTENCE, text) <= 0.2
    srt = transcribe(server, wav, response_format="srt")
    assert srt.headers["content-type"].startswith("application/x-subrip")
    assert re.match(rf"1\n{TIME} --> {TIME}\n\S", srt.parse()) and "," in srt.parse().split("\n")[1]
    vtt = transcribe(server, wav, response_format="vtt").parse()
    assert vtt.startswith("WEBVTT\n") and re.search(rf"{TIME} --> {TIME}\n\S", vtt)
    assert wer(SENTENCE, " ".join(line for line in vtt.splitlines()[1:] if line and "-->" not in line)) <= 0.2


def test_verbose_json_with_segments_and_words(server, wav):
    result = server.openai().audio.transcriptions.create(
        model="whisper-1", file=("speech.wav", wav), response_format="verbose_json",
        timestamp_granularities=["word", "segment"], language="en", prompt="A pangram.", temperature=0)
    assert result.language == "en" and 1.5 < result.duration < 6
    assert result.segments and result.segments[0].start >= 0 and result.segments[-1].end <= result.duration + 0.01
    words = [w.word.strip(".,").lower() for w in result.words]
    assert "fox" in words and all(w.start <= w.end for w in result.words)
    assert [w.start for w in result.words] == sorted(w.start for w in result.words)
    only_words = server.openai().audio.transcriptions.create(
        model="whisper-1", file=("speech.wav", wav), response_format="verbose_json", timestamp_granularities=["word"])
    assert only_words.words and not getattr(only_words, "segments", None)


def test_translation_with_an_english_only_model_is_a_clear_400(server, wav):
    with pytest.raises(openai.BadRequestError) as err:
        server.openai().audio.translations.create(model="whisper-1", file=("speech.wav", wav))
    assert "English-only" in err.value.body["message"] and "cannot translate" in err.value.body["message"]


def test_upload_errors_name_the_field(server, wav):
    sdk = server.openai()
    with pytest.raises(openai.BadRequestError) as err:
        sdk.audio.transcriptions.create(model="whisper-1", file=("picture.png", png_bytes()))
    assert err.value.body["param"] == "file" and "image/png" in err.value.body["message"]
    with pytest.raises(openai.BadRequestError) as err:
        sdk.audio.transcriptions.create(model="whisper-1", file=("speech.wav", wav), response_format="docx")
    assert err.value.body["param"] == "response_format"
    with pytest.raises(openai.BadRequestError) as err:
        sdk.audio.transcriptions.create(model="whisper-1", file=("speech.wav", wav), language="xx")
    assert "xx" in err.value.body["message"]
    import httpx

    missing = httpx.post(server.base_url + "/audio/transcriptions", data={"model": "whisper-1"},
                         files={"other": ("a.wav", wav)})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "file"


# -- speech -----------------------------------------------------------------------------------------

def speak(server, text=SENTENCE, **kwargs):
    return server.openai().audio.speech.with_raw_response.create(model="tts-1", voice="alloy", input=text, **kwargs)


def test_speech_wav_decodes_is_plausibly_long_and_round_trips(server):
    raw = speak(server, response_format="wav")
    assert raw.headers["content-type"] == "audio/wav" and raw.headers["x-content-type-options"] == "nosniff"
    assert server.client.store.get(raw.headers["x-imagine-log-id"])["engine"] in ("piper", "espeak")
    data = raw.content
    samples, rate = decode_audio(data, rate=None)
    assert 1.5 < len(samples) / rate < 8  # nine words
    heard = transcribe(server, data).parse().text
    assert wer(SENTENCE, heard) <= 0.35, heard


def test_speed_makes_it_shorter(server):
    slow, _ = decode_audio(speak(server, "one two three four five", response_format="wav").content, rate=16000)
    fast, _ = decode_audio(speak(server, "one two three four five", response_format="wav", speed=2.0).content,
                           rate=16000)
    assert len(fast) < 0.8 * len(slow)


@pytest.mark.parametrize("fmt,mime", [("mp3", "audio/mpeg"), ("opus", "audio/ogg"), ("flac", "audio/flac"),
                                      ("aac", "audio/aac")])
def test_compressed_formats_decode(server, fmt, mime):
    if audio_formats()[fmt] is not None:
        pytest.skip(f"{fmt}: {audio_formats()[fmt]}")
    raw = speak(server, "hello world", response_format=fmt)
    assert raw.headers["content-type"] == mime
    samples, rate = decode_audio(raw.content, rate=None)
    assert 0.4 < len(samples) / rate < 4 and np.abs(samples).max() > 0.05


def test_pcm_is_24khz_16bit(server):
    # Piper samples phoneme durations on every call (a fresh-clone run once got 0.84 s against 0.72 s for
    # the same words); with its noise at 0 the same text gives the same audio, so only the format differs
    calm = {"extra_body": {"options": {"noise_scale": 0, "noise_w_scale": 0}}} if find_spec("piper") else {}
    wav = speak(server, "hello world", response_format="wav", **calm).content
    pcm = speak(server, "hello world", response_format="pcm", **calm).content
    samples, rate = decode_audio(wav, rate=None)
    assert len(pcm) % 2 == 0  # the resampler's edges still differ a little: compare durations loosely
    assert abs(len(pcm) / 2 / PCM_RATE - len(samples) / rate) < 0.15 * len(samples) / rate


def test_speech_errors_name_the_field(server):
    sdk = server.openai()
    with pytest.raises(openai.BadRequestError) as err:
        sdk.audio.speech.create(model="tts-1", voice="alloy", input="hi", response_format="midi")  # type: ignore[arg-type]
    assert err.value.body["param"] == "response_format"
    with pytest.raises(openai.BadRequestError) as err:
        sdk.audio.speech.create(model="tts-1", voice="alloy", input="hi", instructions="whisper it")
    assert err.value.body["param"] == "instructions"
    with pytest.raises(openai.BadRequestError) as err:
        sdk.audio.speech.create(model="mock", voice="alloy", input="hi")
    assert "audio" in err.value.body["message"]
    with pytest.raises(openai.BadRequestError) as err:
        sdk.audio.speech.create(model="espeak", voice="no-such-voice-zz", input="hi")
    assert "no-such-voice-zz" in err.value.body["message"]
