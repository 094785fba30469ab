"""`watch`: a clip made here (slides with text + spoken audio) becomes one timestamped timeline."""

from __future__ import annotations

import numpy as np
import pytest

from imagine import Audio, Video
from imagine.tasks import speak
from imagine.timeline import timeline_text, watch

from .helpers.media import make_video, slide
from .helpers.speech import wer

RATE = 16000
SLIDES = [(3.0, "Welcome", (200, 60, 60)), (3.0, "Results 2026", (60, 140, 60)), (2.0, "Thank you", (60, 60, 200))]
SPEECH = [(0.5, "Hello and welcome to the show."), (3.6, "Here are the results for this year.")]


def spoken(text: str) -> np.ndarray:
    audio = next(p for p in speak(text, "espeak", log=False).parts if isinstance(p, Audio))  # deterministic
    samples, _ = audio.samples(RATE)
    return samples


@pytest.fixture(scope="module")
def clip() -> Video:
    total = sum(seconds for seconds, _, _ in SLIDES)
    track = np.zeros(int(total * RATE), dtype=np.float32)
    for start, text in SPEECH:
        voice = spoken(text)
        begin = int(start * RATE)
        track[begin:begin + len(voice)] = voice[: len(track) - begin]
    frames = [(seconds, slide(text, colour)) for seconds, text, colour in SLIDES]
    return Video(make_video(frames, track, rate=RATE), name="talk.mp4")


def test_timeline_has_scenes_with_their_text_and_the_speech(clip):
    timeline = watch(clip, every=0.5)
    scenes = [s for s in timeline.items if s.meta["kind"] == "scene"]
    speech = [s for s in timeline.items if s.meta["kind"] == "speech"]

    starts = [0.0, 3.0, 6.0]
    assert len(scenes) == 3, timeline_text(timeline)
    for scene, start, (_, text, _) in zip(scenes, starts, SLIDES):
        assert abs(scene.start - start) <= 0.5
        assert scene.text == text, timeline_text(timeline)
    assert abs(scenes[-1].end - 8.0) <= 0.5

    assert len(speech) >= 2, timeline_text(timeline)
    for start, text in SPEECH:
        match = min(speech, key=lambda s: abs(s.start - start))
        assert abs(match.start - start) <= 0.5, timeline_text(timeline)
        assert wer(text, match.text) <= 0.34, timeline_text(timeline)
    assert [s.start for s in timeline.items] == sorted(s.start for s in timeline.items)


def test_timeline_text_and_progress(clip):
    calls = []
    timeline = watch(clip, every=1.0, transcribe_audio=False, progress=lambda d, t, label: calls.append((d, t)))
    text = timeline_text(timeline)
    assert "scene 1: Welcome" in text and "[00:00.000 - " in text
    assert calls and calls[-1][0] <= calls[-1][1]
    assert all(s.meta["kind"] == "scene" for s in timeline.items)


def test_watch_refuses_non_video(tmp_path):
    from imagine import InputError

    with pytest.raises(InputError, match="watch needs video"):
        watch(Audio.from_samples(np.zeros(1600, dtype=np.float32), RATE))
