"""`espeak`: libespeak-ng text to speech, driven through the real engine contract (no mocks)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import numpy as np
import pytest

from imagine import Audio, InputError, Message, Modality, OptionsError, get_registry
from imagine.engine import Request, Response

pytest.importorskip("espeakng_loader", reason="needs the speech extra: pip install -e '.[speech]'")

RATE = 22050


@pytest.fixture
def engine():
    return get_registry().engine("espeak")


def request(engine, text: str, **options) -> Request:
    return Request(messages=(Message.user(text),), model="espeak-ng", options=engine.parse_options(options),
                   want=Modality.AUDIO)


def speak(engine, text: str = "Hello world", **options) -> Response:
    return Response(engine, request(engine, text, **options)).complete()


def audio_of(engine, text: str = "Hello world", **options) -> tuple[Audio, np.ndarray]:
    part = speak(engine, text, **options).parts[0]
    samples, sr = part.samples(rate=None)
    assert sr == RATE
    return part, samples


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))


def median_pitch(samples: np.ndarray) -> float:
    """Median f0 (Hz) over loud 40 ms frames, from the autocorrelation peak between 60 and 500 Hz."""
    frame, found = int(0.04 * RATE), []
    lo, hi = RATE // 500, RATE // 60
    for start in range(0, len(samples) - frame, frame // 2):
        x = samples[start:start + frame].astype(np.float64)
        if rms(x) < 0.05:
            continue
        x = x - x.mean()
        ac = np.correlate(x, x, "full")[frame - 1:]
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.3 * ac[0]:
            found.append(RATE / lag)
    assert found, "no voiced frames"
    return float(np.median(found))


# -- output ----------------------------------------------------------------------------------------


def test_speaks_a_wav_at_22050_hz_that_is_audible_and_tightly_trimmed(engine):
    response = speak(engine, "Hello world", rate=160)
    assert response.finish_reason == "stop" and response.error is None
    (part,) = response.parts
    assert isinstance(part, Audio) and part.mime == "audio/wav" and part.name == "speech.wav"
    samples, sr = part.samples(rate=None)
    assert sr == RATE and samples.ndim == 1
    seconds = len(samples) / sr
    assert 0.5 < seconds < 2.5
    assert rms(samples) > 0.03  # speech, not silence
    loud = np.flatnonzero(np.abs(samples) > 0.02)
    assert loud[0] / sr < 0.15 and (len(samples) - loud[-1]) / sr < 0.2  # little leading/trailing silence
    usage = response.usage
    assert (usage.input_tokens, usage.output_tokens, usage.cost) == (len("Hello world"), 0, 0.0)
    assert usage.extra["seconds"] == pytest.approx(seconds, abs=1e-3)


def test_longer_text_gives_longer_audio(engine):
    short = audio_of(engine, "Hello.")[0].duration
    medium = audio_of(engine, "Hello there, how are you today?")[0].duration
    long = audio_of(engine, "Hello there, how are you today? The weather is lovely and the birds are singing.")[0].duration
    assert short < medium < long
    assert long > 2 * short


def test_slower_rate_gives_longer_audio(engine):
    text = "The quick brown fox jumps over the lazy dog."
    slow, normal, fast = (audio_of(engine, text, rate=r)[0].duration for r in (90, 175, 350))
    assert slow > normal > fast
    assert slow > 1.5 * normal and normal > 1.5 * fast


@pytest.mark.parametrize("rate", [120, 175, 350])
def test_word_gap_adds_about_gap_ms_between_words_at_any_rate(engine, rate):
    text = "one two three four five six"
    plain = audio_of(engine, text, rate=rate)[0].duration
    part, samples = audio_of(engine, text, rate=rate, gap_ms=400)
    per_gap = (part.duration - plain) / 5  # five gaps between six words
    assert 0.3 < per_gap < 0.5, per_gap
    loud = np.flatnonzero(np.abs(samples) > 0.02)
    assert (len(samples) - loud[-1]) / RATE < 0.2  # no gap after the last word


def test_volume_scales_the_amplitude(engine):
    quiet, normal, loud = (rms(audio_of(engine, "Volume test", volume=v)[1]) for v in (30, 100, 180))
    assert quiet < 0.6 * normal and loud > 1.3 * normal
    assert rms(audio_of(engine, "Volume test", volume=0)[1]) < 0.001


def test_pitch_option_and_female_variant_raise_the_pitch(engine):
    text = "This sentence is spoken at different pitches."
    low = median_pitch(audio_of(engine, text, pitch=10)[1])
    normal = median_pitch(audio_of(engine, text)[1])
    high = median_pitch(audio_of(engine, text, pitch=90)[1])
    female = median_pitch(audio_of(engine, text, voice="en-us+f3")[1])
    assert low < normal < high
    assert high > 1.3 * low
    assert female > 1.4 * normal


def test_different_voices_give_different_samples(engine):
    text = "Tomato, potato, water."
    us, gb, f3 = (audio_of(engine, text, voice=v)[0] for v in ("en-us", "en-gb", "en-us+f3"))
    assert len({us.sha256, gb.sha256, f3.sha256}) == 3
    german = audio_of(engine, "Grüße aus München", voice="de")[1]
    assert rms(german) > 0.03


def test_voice_can_be_named_by_name_identifier_file_or_language(engine):
    reference = audio_of(engine, voice="en-us")[0].sha256
    for alias in ("English (America)", "gmw/en-US", "EN-US", " en-us "):
        assert audio_of(engine, voice=alias)[0].sha256 == reference, alias
    # en-gb is a language code only (the file is gmw/en): espeak alone would reject it
    assert audio_of(engine, voice="en-gb")[0].sha256 == audio_of(engine, voice="gmw/en")[0].sha256
    assert engine.resolve_voice("en-gb") == "gmw/en"
    assert engine.resolve_voice("en-us+F3") == "gmw/en-US+f3"


# -- determinism -------------------------------------------------------------------------------------


def test_same_request_gives_identical_bytes(engine):
    text = "Determinism matters for caching and logs."
    first = audio_of(engine, text, voice="en-us+f3")[0]
    audio_of(engine, "Something else in between, with another voice.", voice="en-us+klatt")
    second = audio_of(engine, text, voice="en-us+f3")[0]
    assert first.data == second.data
    klatt = [audio_of(engine, text, voice="en-us+klatt")[0].data for _ in range(2)]
    assert klatt[0] == klatt[1]


def test_identical_bytes_in_a_fresh_process(engine):
    text = "Same bytes in every process."
    here = audio_of(engine, text)[0].sha256
    code = ("from imagine import get_registry, Message, Modality\nfrom imagine.engine import Request, Response\n"
            "e = get_registry().engine('espeak')\n"
            f"r = Request((Message.user({text!r}),), 'espeak-ng', e.parse_options({{}}), want=Modality.AUDIO)\n"
            "print(Response(e, r).complete().parts[0].sha256)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == here


async def test_concurrent_requests_are_serialised_and_correct(engine):
    texts = ["first request", "second request, longer than the first", "first request"]
    responses = [Response(engine, request(engine, t)) for t in texts]
    await asyncio.gather(*(r._complete() for r in responses))
    parts = [r.parts[0] for r in responses]
    assert parts[0].data == parts[2].data
    assert parts[1].duration > parts[0].duration


# -- voices --------------------------------------------------------------------------------------------


def test_list_voices(engine):
    voices = engine.list_voices()
    assert len(voices) > 100
    assert all(set(v) == {"name", "identifier", "languages", "gender"} for v in voices)
    assert all(v["gender"] in ("male", "female", "unknown") for v in voices)
    us = next(v for v in voices if "en-us" in v["languages"])
    assert us["name"] == "English (America)" and us["identifier"] == "gmw/en-US"
    assert us["languages"][0] == "en-us" and "en" in us["languages"]  # several languages, in order
    assert any("en-gb" in v["languages"] for v in voices)
    assert {"f3", "klatt", "m1"} <= set(engine.list_variants())


# -- errors ----------------------------------------------------------------------------------------------


def test_unknown_voice_names_it_and_suggests_close_matches(engine):
    with pytest.raises(InputError) as info:
        speak(engine, voice="en-gbb")
    message = str(info.value)
    assert "'en-gbb'" in message and "en-gb" in message and "imagine speak --voices" in message
    with pytest.raises(InputError, match="English \\(America\\)"):
        speak(engine, voice="english (americ)")
    with pytest.raises(InputError, match="variant 'klat'.*klatt"):
        speak(engine, voice="en-us+klat")


def test_empty_text_is_an_input_error(engine):
    for text in ("", "   \n"):
        with pytest.raises(InputError, match="nothing to speak: the text is empty"):
            speak(engine, text)


@pytest.mark.parametrize("options, field", [
    ({"rate": 5}, "rate"), ({"rate": 1000}, "rate"), ({"pitch": 100}, "pitch"), ({"volume": -1}, "volume"),
    ({"gap_ms": -10}, "gap_ms"), ({"voice": ""}, "voice"), ({"speed": 2}, "speed")])
def test_invalid_options_are_options_errors(engine, options, field):
    with pytest.raises(OptionsError, match=f"'{field}'"):
        engine.parse_options(options)


def test_registry_resolves_the_engine_and_rejects_voices_as_models():
    registry = get_registry()
    resolved = registry.resolve("espeak", inputs=(Modality.TEXT,), want=Modality.AUDIO)
    assert resolved.model == "espeak-ng"
    with pytest.raises(InputError, match="voice=en-gb"):
        registry.resolve("espeak:en-gb", inputs=(Modality.TEXT,), want=Modality.AUDIO)


# -- robustness -------------------------------------------------------------------------------------------


def test_a_dead_helper_process_is_restarted(engine):
    before = audio_of(engine, "still here")[0].sha256
    helper = type(engine)._helper
    if helper is None:
        pytest.skip("no helper process on this platform")
    helper.proc.kill()
    helper.proc.wait()
    assert audio_of(engine, "still here")[0].sha256 == before
    assert type(engine)._helper is not helper


def test_in_process_fallback_without_fork(engine, monkeypatch):
    forked = audio_of(engine, "fallback path")[0]
    monkeypatch.delattr(os, "fork")
    local = audio_of(engine, "fallback path")[0]
    assert type(engine)._local is not None
    assert local.duration == pytest.approx(forked.duration, abs=0.05)  # same speech, state may differ slightly
    assert rms(local.samples(rate=None)[0]) > 0.03


def test_a_nul_in_the_text_does_not_cut_it_short(engine):
    whole = audio_of(engine, "first half second half")[0].duration
    assert audio_of(engine, "first half\0second half")[0].duration == pytest.approx(whole, abs=0.3)
    assert audio_of(engine, "first half")[0].duration < 0.7 * whole
