"""TurnDetector on the bundled Silero VAD model, driven by espeak-ng speech and numpy silence/noise built here.

The detector counts samples, not wall time, so every expectation below is exact to one 32 ms chunk."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from imagine import get_registry
from imagine.parts import Audio
from imagine.realtime.turns import (CHUNK, CHUNK_S, Paused, Resumed, SpeechDropped, SpeechStarted, TurnDetector,
                                    TurnEnded, TurnSettings, looks_complete)

from ..helpers.speech import needs_espeak, noise, synth_wav, trim

pytest.importorskip("onnxruntime", reason="needs the speech extra: pip install -e '.[speech]'")

RATE = 16000
SENTENCE_A = "What time does the library open tomorrow?"
SENTENCE_B = "Please book a table for two people."


@pytest.fixture(scope="module")
def vad() -> Any:
    return get_registry().engine("silero-vad").load("silero-vad-v6")


def spoken(text: str) -> np.ndarray:
    """`text` as espeak-ng says it, decoded to 16 kHz by imagine, trimmed so speech starts at sample 0."""
    samples, rate = Audio(synth_wav(text)).samples(RATE)
    assert rate == RATE
    return trim(samples)


def quiet(seconds: float, seed: int = 0) -> np.ndarray:
    """Near-silence (-70 dBFS noise): below anything Silero calls speech, but no two chunks are equal,
    so a stretch of the detector's output can be found in the input exactly."""
    return noise(seconds, -70.0, seed)


def run(detector: TurnDetector, audio: np.ndarray, step: int = CHUNK, on_pause: Any = None) -> list[tuple[float, Any]]:
    """Feed `audio` in `step`-sample pieces; (detector clock when reported, event) for every event.
    `on_pause(detector, event)` is called at each Paused and may return an event (complete()'s)."""
    out: list[tuple[float, Any]] = []
    for first in range(0, len(audio), step):
        for event in detector.feed(audio[first:first + step]):
            out.append((detector.now, event))
            if isinstance(event, Paused) and on_pause is not None:
                extra = on_pause(detector, event)
                if extra is not None:
                    out.append((detector.now, extra))
    return out


def kinds(events: list[tuple[float, Any]]) -> list[str]:
    return [type(e).__name__ for _, e in events]


def find(haystack: np.ndarray, needle: np.ndarray) -> int:
    """Where `needle` (a chunk-aligned stretch of `haystack`) starts in it."""
    for start in range(0, len(haystack) - len(needle) + 1, CHUNK):
        if np.array_equal(haystack[start:start + CHUNK], needle[:CHUNK]):
            assert np.array_equal(haystack[start:start + len(needle)], needle)
            return start
    raise AssertionError("not a stretch of the input")


@needs_espeak
def test_speech_then_silence_is_one_turn_forced_after_max_silence(vad: Any) -> None:
    speech = spoken(SENTENCE_A)
    audio = np.concatenate([quiet(1.0), speech, quiet(3.0, 1)])
    onset, end = 1.0, 1.0 + len(speech) / RATE
    settings = TurnSettings()
    events = run(TurnDetector(vad, settings), audio)
    assert kinds(events) == ["SpeechStarted", "Paused", "TurnEnded"]
    (started_when, started), (paused_when, paused), (ended_when, ended) = events
    assert abs(started.at - onset) <= 0.1
    assert started_when == pytest.approx(started.at + settings.onset_ms / 1000, abs=CHUNK_S + 1e-9)
    assert abs(paused.at - end) <= 0.15  # Silero's probability lags the end of speech a little
    assert paused_when == pytest.approx(paused.at + settings.pause_ms / 1000, abs=CHUNK_S + 1e-9)
    # nobody said the transcript reads as finished: the turn ends after max_silence_ms, forced
    assert ended.forced and ended.serial == paused.serial and ended.at == paused.at
    assert ended_when == pytest.approx(ended.at + settings.max_silence_ms / 1000, abs=CHUNK_S + 1e-9)
    assert 0.8 * (paused.at - started.at) <= ended.speech_s <= paused.at - started.at  # speech chunks only
    # the turn's audio is the utterance: prefix padding before it, at most 200 ms of silence after it
    start = find(audio, ended.audio)
    stop = start + len(ended.audio)
    assert start <= int(onset * RATE) - int(0.25 * RATE)
    assert stop >= int(end * RATE)
    spoken_s = paused.at - started.at
    assert spoken_s + 0.25 <= len(ended.audio) / RATE <= spoken_s + settings.prefix_padding_ms / 1000 + 0.2 + 0.04
    np.testing.assert_array_equal(paused.audio, ended.audio)  # no speech since the pause: the same audio


@needs_espeak
def test_a_finished_transcript_ends_the_turn_at_silence_ms(vad: Any) -> None:
    audio = np.concatenate([quiet(1.0), spoken(SENTENCE_A), quiet(3.0, 1)])
    settings = TurnSettings()

    def finished(detector: TurnDetector, paused: Paused) -> Any:
        assert detector.complete(paused.serial + 1, True) is None  # not this pause's serial: ignored
        assert detector.complete(paused.serial, True) is None  # too little silence yet: it ends later
        return None

    events = run(TurnDetector(vad, settings), audio, on_pause=finished)
    assert kinds(events) == ["SpeechStarted", "Paused", "TurnEnded"]
    (_, paused), (ended_when, ended) = events[1], events[2]
    assert not ended.forced and ended.serial == paused.serial
    assert ended_when == pytest.approx(paused.at + settings.silence_ms / 1000, abs=CHUNK_S + 1e-9)

    # a transcript that reads as unfinished leaves the turn to max_silence_ms
    events = run(TurnDetector(vad, settings), audio, on_pause=lambda d, p: d.complete(p.serial, False))
    assert kinds(events) == ["SpeechStarted", "Paused", "TurnEnded"]
    assert events[2][1].forced
    assert events[2][0] == pytest.approx(events[1][1].at + settings.max_silence_ms / 1000, abs=CHUNK_S + 1e-9)


@needs_espeak
def test_a_late_transcript_ends_the_turn_at_once(vad: Any) -> None:
    """The transcript of the pause arrives after silence_ms has passed: complete() ends the turn itself."""
    settings = TurnSettings()
    detector = TurnDetector(vad, settings)
    speech = np.concatenate([quiet(1.0), spoken(SENTENCE_A)])
    events = run(detector, np.concatenate([speech, quiet(0.8, 1)]))
    assert kinds(events) == ["SpeechStarted", "Paused"]
    paused = events[1][1]
    assert detector.silence_s * 1000 >= settings.silence_ms
    assert detector.complete(paused.serial - 1, True) is None  # a stale serial changes nothing
    ended = detector.complete(paused.serial, True)
    assert isinstance(ended, TurnEnded) and not ended.forced and ended.at == paused.at
    assert detector.state == "idle" and detector.complete(paused.serial, True) is None
    assert run(detector, quiet(2.0, 2)) == []  # over: the silence after it ends nothing more


@needs_espeak
def test_a_short_gap_is_one_turn_a_long_one_two(vad: Any) -> None:
    a, b = spoken(SENTENCE_A), spoken(SENTENCE_B)
    lead = quiet(1.0)

    def turns(gap_s: float) -> list[tuple[float, Any]]:
        return run(TurnDetector(vad), np.concatenate([lead, a, quiet(gap_s, 1), b, quiet(2.0, 2)]))

    # 150 ms: less than pause_ms, the speech never even pauses
    events = turns(0.15)
    assert kinds(events) == ["SpeechStarted", "Paused", "TurnEnded"]
    ended = events[-1][1]
    assert ended.speech_s >= (len(a) + len(b)) / RATE - 0.4
    assert len(ended.audio) / RATE >= (len(a) + len(b)) / RATE + 0.15

    # 600 ms: a pause, then speech again before max_silence_ms: the same turn resumes
    events = turns(0.6)
    assert kinds(events) == ["SpeechStarted", "Paused", "Resumed", "Paused", "TurnEnded"]
    first, resumed, second, ended = (e for _, e in events[1:])
    assert second.serial == first.serial + 1 and ended.serial == second.serial
    assert abs(resumed.at - (1.0 + len(a) / RATE + 0.6)) <= 0.15
    assert len(ended.audio) > len(a) + len(b)

    # 2 s: the first turn is over before the second sentence starts
    events = turns(2.0)
    assert kinds(events) == ["SpeechStarted", "Paused", "TurnEnded"] * 2
    first_turn, second_turn = events[2][1], events[5][1]
    assert abs(events[3][1].at - (1.0 + len(a) / RATE + 2.0)) <= 0.1
    assert len(a) / RATE <= len(first_turn.audio) / RATE < len(a) / RATE + 0.6
    assert len(b) / RATE <= len(second_turn.audio) / RATE < len(b) / RATE + 0.6


@pytest.mark.parametrize("background", ["silence", "white noise -30 dBFS", "white noise -15 dBFS", "tone 1 kHz"])
def test_no_speech_gives_no_turn(vad: Any, background: str) -> None:
    seconds = 10.0
    if background == "silence":
        audio = np.zeros(int(seconds * RATE), np.float32)
    elif background.startswith("white"):
        audio = noise(seconds, float(background.split()[2]), seed=5)
    else:
        audio = (0.3 * np.sin(2 * np.pi * 1000 * np.arange(int(seconds * RATE)) / RATE)).astype(np.float32)
    detector = TurnDetector(vad)
    events = run(detector, audio, step=4000)
    assert all(isinstance(e, (SpeechStarted, SpeechDropped)) for _, e in events), events
    assert detector.state == "idle" and detector.utterance().size == 0


@needs_espeak
def test_a_burst_shorter_than_min_speech_is_dropped(vad: Any) -> None:
    a = spoken(SENTENCE_A)
    burst = a[int(1.5 * RATE):int(1.65 * RATE)]  # 150 ms of a word
    audio = np.concatenate([quiet(1.0), burst, quiet(2.0, 1)])
    events = run(TurnDetector(vad), audio)
    assert kinds(events) == ["SpeechStarted", "SpeechDropped"]
    dropped = events[1][1]
    assert dropped.at == events[0][1].at and dropped.speech_s * 1000 < TurnSettings().min_speech_ms
    # the same burst with no minimum is a turn: it is min_speech_ms that dropped it
    events = run(TurnDetector(vad, TurnSettings(min_speech_ms=0)), audio)
    assert kinds(events) == ["SpeechStarted", "Paused", "TurnEnded"]


@needs_espeak
def test_chunking_does_not_change_the_events(vad: Any) -> None:
    audio = np.concatenate([quiet(1.0), spoken(SENTENCE_A), quiet(0.6, 1), spoken(SENTENCE_B), quiet(2.0, 2),
                            spoken(SENTENCE_A)[:int(0.15 * RATE)], quiet(1.0, 3), spoken(SENTENCE_B), quiet(1.5, 4)])

    def events(step: int) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for _, event in run(TurnDetector(vad), audio, step=step):
            fields = {k: (v.tobytes() if isinstance(v, np.ndarray) else v) for k, v in vars(event).items()}
            out.append((type(event).__name__, fields))
        return out

    fine, coarse, odd = events(160), events(8000), events(977)
    assert fine == coarse == odd
    assert [k for k, _ in fine] == ["SpeechStarted", "Paused", "Resumed", "Paused", "TurnEnded",
                                    "SpeechStarted", "SpeechDropped", "SpeechStarted", "Paused", "TurnEnded"]


@needs_espeak
def test_end_turn_and_utterance(vad: Any) -> None:
    detector = TurnDetector(vad)
    assert detector.end_turn() is None  # nothing under way
    speech = spoken(SENTENCE_A)
    events = run(detector, np.concatenate([quiet(1.0), speech[:RATE]]))
    assert kinds(events) == ["SpeechStarted"] and detector.state == "speech"
    so_far = detector.utterance()
    assert RATE * 0.9 <= len(so_far) <= RATE * 1.4  # the speech so far with its prefix
    ended = detector.end_turn()  # a manual commit in mid-speech: all of it, forced
    assert isinstance(ended, TurnEnded) and ended.forced and detector.state == "idle"
    np.testing.assert_array_equal(ended.audio, so_far)
    assert detector.utterance().size == 0 and detector.end_turn() is None


@pytest.mark.parametrize("text, complete", [
    ("What is the capital of France?", True),
    ("Tell me about the moon.", True),
    ("Stop", True),
    ("It's mine", True),
    ("I want to go to", False),
    ("And then the", False),
    ("Tell me about", False),
    ("What is the capital of", False),
    ("I was thinking, um", False),
    ("Let me see,", False),
    ("Well...", False),
    ("Well…", False),
    ("The list:", False),
    ("So -", False),
    ("", False),
    ("   ", False),
    ("...", False),
    ("42", True),
    ("The answer is 42", True),  # a number is a word: not "is", the word before it
    ("I was born in 1990.", True),
    ("It costs about", False),
    ("Is it?", True),
    ("What about THE", False),
])
def test_looks_complete(text: str, complete: bool) -> None:
    assert looks_complete(text) is complete
