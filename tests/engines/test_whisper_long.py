"""Long recordings through whisper: heard in windows (around the speech, or cut at quiet moments without the
VAD gate) with the transcript and its times as if heard whole, and peak memory that stays flat with duration
(the attack of issue 13: two hours of silence took 7.1 GB)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from imagine import Message, Modality
from imagine import get_registry
from imagine.config import get_settings
from imagine.engine import Request, Response
from imagine.parts import Audio, Data, Segments

from ..helpers.media import write_long_flac
from ..helpers.rss import run_measured
from ..helpers.speech import RATE, needs_espeak, speech, trim, wer

faster_whisper = pytest.importorskip("faster_whisper", reason="needs the speech extra: pip install -e '.[speech]'")
pytestmark = needs_espeak

SENTENCES = [(2.0, "We are going to the market to buy some fresh bread and apples."),
             (41.0, "My name is John and I live in a small house near the river."),
             (84.0, "The meeting will start at ten in the morning.")]
SECONDS = 100.0


@pytest.fixture(scope="module")
def recording() -> tuple[np.ndarray, list[tuple[float, float]]]:
    """100 s of faint noise with three sentences far apart; (samples, [(start, end) of each sentence])."""
    rng = np.random.default_rng(7)
    audio = (rng.standard_normal(int(SECONDS * RATE)) * 1e-4).astype(np.float32)
    places = []
    for start, text in SENTENCES:
        voice = trim(speech(text))
        first = int(start * RATE)
        audio[first:first + len(voice)] += voice
        places.append((start, start + len(voice) / RATE))
    return audio, places


@pytest.fixture
def heard(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Seconds of audio in each call to faster-whisper, with windows of 30 s instead of 240 s so that a
    100 s recording is a long one."""
    from imagine.engines import whisper

    monkeypatch.setattr(whisper, "WINDOW_S", 30.0)
    calls: list[float] = []
    original = faster_whisper.WhisperModel.transcribe

    def spy(self: Any, audio: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(audio) / RATE)
        return original(self, audio, *args, **kwargs)

    monkeypatch.setattr(faster_whisper.WhisperModel, "transcribe", spy)
    return calls


def transcribe(samples: np.ndarray, **options: Any) -> Response:
    engine = get_registry().engine("whisper")
    part = Audio.from_samples(samples, RATE, name="long.wav")
    request = Request(messages=(Message.user(part),), model="tiny.en", options=engine.parse_options(options),
                      want=Modality.TEXT, limits=get_settings().part_limits())
    return Response(engine, request)


def check_transcript(response: Response, places: list[tuple[float, float]], whole: bool = True) -> None:
    text = response.text()
    if whole:  # without the gate Whisper may also invent words in the silence: that is what the gate is for
        assert wer(" ".join(t for _, t in SENTENCES), text) <= 0.2, text
    items = next(p for p in response.parts if isinstance(p, Segments)).items
    for (start, end), (_, sentence) in zip(places, SENTENCES):  # each sentence where it was spoken
        if whole:
            inside = [s for s in items if start - 0.6 <= s.start and s.end <= end + 0.6]
        else:  # ungated Whisper stretches times over the silence before: its segment only overlaps the place
            inside = [s for s in items if s.start < end and s.end > start]
        assert inside and wer(sentence, " ".join(s.text for s in inside)) <= 0.25, (start, items)
    data = next(p for p in response.parts if isinstance(p, Data)).value
    assert data["duration"] == pytest.approx(SECONDS, abs=1e-3)


def test_whisper_hears_only_windows_around_the_speech(recording, heard) -> None:
    samples, places = recording
    response = transcribe(samples)
    check_transcript(response, places)
    assert len(heard) == 3 and all(seconds <= 30 for seconds in heard)  # three windows, silence skipped
    assert sum(heard) < 30
    data = next(p for p in response.parts if isinstance(p, Data)).value
    assert data["speech_seconds"] < 15


def test_without_the_gate_fixed_windows_cover_it_all_and_cut_in_quiet(recording, heard) -> None:
    samples, places = recording
    response = transcribe(samples, vad_gate=False)
    check_transcript(response, places, whole=False)
    assert sum(heard) == pytest.approx(SECONDS, abs=0.01) and all(seconds <= 30 for seconds in heard)
    cuts = np.cumsum(heard)[:-1]
    assert not any(start - 0.1 < cut < end + 0.1 for cut in cuts for start, end in places), cuts  # in quiet


def test_a_recording_that_fits_one_window_is_heard_whole(recording, heard) -> None:
    samples, _ = recording
    transcribe(samples[: 25 * RATE]).complete()
    assert heard == [pytest.approx(25.0)]


# -- memory: a child process, as a user runs it ----------------------------------------------------------


MINUTES = int(os.environ.get("IMAGINE_LONG_AUDIO_MINUTES", "40"))  # before the fix: ~2.3 GB at 40 min


@pytest.mark.parametrize("command", ["transcribe", "vad"])
def test_long_audio_runs_in_flat_memory(tmp_path: Path, command: str) -> None:
    sentence = SENTENCES[0][1]
    path = tmp_path / "long.flac"
    write_long_flac(path, MINUTES, [trim(speech(sentence))], every=5, rate=RATE)
    env = {**os.environ, "IMAGINE_HOME": str(tmp_path / "home")}
    run = run_measured([sys.executable, "-m", "imagine", command, str(path)], env=env)
    output = run.stdout
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.peak_mb < 1024, f"peak RSS {run.peak_mb:.0f} MB for {MINUTES} min of audio"
    if command == "transcribe":
        assert wer(" ".join([sentence] * (-(-MINUTES // 5))), output) <= 0.2, output
    else:
        assert len([line for line in output.splitlines() if " s  (" in line]) == -(-MINUTES // 5)
