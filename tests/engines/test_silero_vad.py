"""The silero-vad engine: the Silero VAD v6 ONNX model shipped with faster-whisper, on espeak-ng speech
placed at known times."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from imagine import Audio, InputError, Message, Modality, OptionsError, Video, get_registry
from imagine.config import get_settings
from imagine.engine import Request, Response
from imagine.parts import Segment, Segments

from ..helpers.speech import RATE, needs_espeak, noise, speech, trim, video_with_sound, wav_part

pytest.importorskip("onnxruntime", reason="needs the speech extra: pip install -e '.[speech]'")

SPEECH_A = "We are going to the market to buy some fresh bread and apples."
SPEECH_B = "My name is John and I live in a small house near the river."


def detect(part: Any, model: str = "silero-vad-v6", **options: Any) -> Response:
    engine = get_registry().engine("silero-vad")
    request = Request(messages=(Message.user(part),), model=model, options=engine.parse_options(options),
                      want=Modality.SEGMENTS, limits=get_settings().part_limits())
    return Response(engine, request)


def spans(response: Response) -> list[Segment]:
    (part,) = response.parts
    assert isinstance(part, Segments)
    return list(part.items)


def two_sentences(gap: Any) -> tuple[np.ndarray, list[float]]:
    """1 s gap + speech A + 1.5 s gap + speech B + 1 s gap, and the four true boundaries (seconds);
    `gap(seconds, seed)` makes the stretches between (silence or noise)."""
    a, b = trim(speech(SPEECH_A)), trim(speech(SPEECH_B))
    audio = np.concatenate([gap(1.0, 0), a, gap(1.5, 1), b, gap(1.0, 2)])
    t0 = 1.0
    t1 = t0 + len(a) / RATE
    t2 = t1 + 1.5
    return audio, [t0, t1, t2, t2 + len(b) / RATE]


def silence(seconds: float, seed: int = 0) -> np.ndarray:
    return np.zeros(int(seconds * RATE), np.float32)


@pytest.fixture(scope="module")
def in_silence() -> tuple[np.ndarray, list[float]]:
    return two_sentences(silence)


@pytest.fixture(scope="module")
def in_noise() -> tuple[np.ndarray, list[float]]:
    return two_sentences(lambda seconds, seed: noise(seconds, -50.0, seed))  # gaussian, -50 dBFS RMS


@needs_espeak
def test_finds_two_sentences_within_100_ms(in_silence: tuple[np.ndarray, list[float]]) -> None:
    audio, truth = in_silence
    response = detect(wav_part(audio))
    found = spans(response)
    assert len(found) == 2, found
    bounds = [found[0].start, found[0].end, found[1].start, found[1].end]
    errors = [round(abs(f - t) * 1000) for f, t in zip(bounds, truth)]
    assert max(errors) <= 100, f"boundary errors (ms): {errors}"
    for seg in found:
        assert seg.text == "speech" and 0.5 < seg.meta["probability"] <= 1
    assert response.usage.extra["audio_seconds"] == pytest.approx(len(audio) / RATE, abs=1e-3)
    assert [type(e).__name__ for e in response.events()] == ["PartOut", "Usage", "Done"]


@needs_espeak
def test_finds_two_sentences_in_low_noise(in_noise: tuple[np.ndarray, list[float]]) -> None:
    audio, truth = in_noise
    found = spans(detect(wav_part(audio)))
    assert len(found) == 2, found
    bounds = [found[0].start, found[0].end, found[1].start, found[1].end]
    errors = [round(abs(f - t) * 1000) for f, t in zip(bounds, truth)]
    assert max(errors) <= 100, f"boundary errors (ms): {errors}"
    # without tightening, Silero's probability decays over ~5 chunks after speech in noise: ends run late
    loose = spans(detect(wav_part(audio), tighten=False))
    assert all(0 <= lo.end - t <= 0.3 for lo, t in zip(loose, truth[1::2])), (loose, truth)


@pytest.mark.parametrize("background", ["silence", "noise -50 dBFS", "noise -20 dBFS"])
def test_no_speech_gives_no_segments(background: str) -> None:
    audio = silence(5.0) if background == "silence" else noise(5.0, float(background.split()[1]))
    response = detect(wav_part(audio))
    assert spans(response) == []
    assert response.usage.extra["audio_seconds"] == 5.0


@needs_espeak
@pytest.mark.parametrize("background", ["silence", "noise"])
def test_a_higher_threshold_never_finds_more_speech(background: str, in_silence: Any, in_noise: Any) -> None:
    audio, _ = in_silence if background == "silence" else in_noise
    part = wav_part(audio)
    results = [spans(detect(part, threshold=t)) for t in (0.1, 0.3, 0.5, 0.7, 0.9, 0.999)]
    totals = [sum(s.end - s.start for s in found) for found in results]
    assert all(a >= b for a, b in zip(totals, totals[1:])), totals
    for looser, stricter in zip(results, results[1:]):  # and what it finds lies inside what a lower one found
        assert all(any(o.start <= s.start and s.end <= o.end for o in looser) for s in stricter)
    assert totals[2] > 5 and totals[-1] < totals[0]


@needs_espeak
def test_min_silence_merges_and_max_speech_splits(in_silence: tuple[np.ndarray, list[float]]) -> None:
    audio, truth = in_silence
    part = wav_part(audio)
    merged = spans(detect(part, min_silence_ms=2000))  # faster-whisper's default: joins sentences 1.5 s apart
    assert len(merged) == 1 and merged[0].start < truth[0] < truth[3] < merged[0].end
    split = spans(detect(part, max_speech_s=2.0))
    assert len(split) > 2 and all(s.end - s.start <= 2.0 for s in split)
    assert all(a.end <= b.start for a, b in zip(split, split[1:]))
    dropped = spans(detect(part, min_speech_ms=5000))  # both sentences are shorter than 5 s
    assert dropped == []


@needs_espeak
def test_padding_widens_each_segment(in_silence: tuple[np.ndarray, list[float]]) -> None:
    part = wav_part(in_silence[0])
    tight, padded = spans(detect(part, speech_pad_ms=0)), spans(detect(part, speech_pad_ms=200))
    assert len(tight) == len(padded) == 2
    for t, p in zip(tight, padded):
        assert p.start == pytest.approx(t.start - 0.2, abs=1e-3) and p.end == pytest.approx(t.end + 0.2, abs=1e-3)


@needs_espeak
def test_speech_in_a_video_sound_track(in_silence: tuple[np.ndarray, list[float]]) -> None:
    audio, truth = in_silence
    found = spans(detect(Video(video_with_sound(audio, "mp4"))))
    assert len(found) == 2
    assert abs(found[0].start - truth[0]) <= 0.1 and abs(found[1].start - truth[2]) <= 0.1


def test_chunked_inference_matches_one_call() -> None:
    """Blocks carry the model state and context, so chunk boundaries do not change the probabilities."""
    from imagine.engines import silero_vad

    model = get_registry().engine("silero-vad").load("silero-vad-v6")
    rng = np.random.default_rng(3)
    audio = (np.sin(np.arange(3 * RATE) * 0.05) * rng.uniform(0, 0.5, 3 * RATE)).astype(np.float32)
    whole = silero_vad.speech_probabilities(model, audio)
    assert len(whole) == -(-len(audio) // silero_vad.CHUNK)
    original = silero_vad.BLOCK
    try:
        silero_vad.BLOCK = 7
        blocked = silero_vad.speech_probabilities(model, audio)
    finally:
        silero_vad.BLOCK = original
    np.testing.assert_allclose(blocked, whole, atol=1e-5)


def test_upstream_model_signature_is_fed_one_chunk_at_a_time() -> None:
    """The snakers4 export (inputs input/state/sr) takes one chunk per call with a (2, 1, 128) state."""
    from imagine.engines.silero_vad import CHUNK, CONTEXT, _Model, speech_probabilities

    class Named:
        def __init__(self, name: str) -> None:
            self.name = name

    class FakeSession:
        calls: list[tuple[tuple[int, ...], tuple[int, ...]]] = []

        def get_inputs(self) -> list[Named]:
            return [Named("input"), Named("state"), Named("sr")]

        def run(self, _: Any, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
            assert feed["sr"] == RATE and feed["input"].dtype == np.float32
            self.calls.append((feed["input"].shape, feed["state"].shape))
            # "probability": the loudness of the chunk itself; the state counts the calls
            return [np.array([[np.abs(feed["input"][0, CONTEXT:]).max()]]), feed["state"] + 1]

    model = _Model(FakeSession(), Path("upstream.onnx"))
    audio = np.zeros(5 * CHUNK, np.float32)
    audio[2 * CHUNK:3 * CHUNK] = 0.9
    probs = speech_probabilities(model, audio)
    np.testing.assert_allclose(probs, [0, 0, 0.9, 0, 0], atol=1e-6)
    assert FakeSession.calls == [((1, CHUNK + CONTEXT), (2, 1, 128))] * 5


def test_models_and_errors(tmp_path: Path) -> None:
    engine = get_registry().engine("silero-vad")
    engine.check_model("silero-vad-v6")
    from imagine.engines.silero_vad import bundled_model_path

    engine.check_model(str(bundled_model_path()))  # a path to a Silero .onnx works too
    with pytest.raises(InputError, match="not found"):
        engine.check_model(str(tmp_path / "missing.onnx"))
    with pytest.raises(InputError, match="not found"):
        get_registry().resolve(f"silero-vad:{tmp_path / 'missing.onnx'}", inputs={Modality.AUDIO},
                               want=Modality.SEGMENTS)
    with pytest.raises(InputError, match="folder"):
        engine.check_model(str(tmp_path))
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"not a model")
    with pytest.raises(InputError, match="not a loadable ONNX model"):
        engine.check_model(str(bogus))
    with pytest.raises(InputError, match="no audio or video"):
        detect("some text").complete()
    with pytest.raises(OptionsError, match="threshold"):
        engine.parse_options({"threshold": 1.5})
    empty = detect(Audio.from_samples(np.zeros(0, np.float32), RATE))
    assert spans(empty) == [] and empty.usage.extra["audio_seconds"] == 0.0


def test_detect_speech_task_uses_the_engine() -> None:
    from imagine.tasks import detect_speech

    response = detect_speech(wav_part(silence(1.0)), log=False)
    assert response.model_ref == "silero-vad:silero-vad-v6"
    assert spans(response) == []


@needs_espeak
def test_tightened_boundaries_in_silence_and_noise(in_silence: Any, in_noise: Any) -> None:
    for audio, truth in (in_silence, in_noise):
        found = spans(detect(wav_part(audio), speech_pad_ms=0))
        bounds = [found[0].start, found[0].end, found[1].start, found[1].end]
        print("boundary errors (ms)", [round((f - t) * 1000) for f, t in zip(bounds, truth)])
        assert max(abs(f - t) for f, t in zip(bounds, truth)) <= 0.1
