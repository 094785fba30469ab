"""The voice loop's audio plumbing: 16-bit PCM, the streaming resampler, the listener's playout clock."""

from __future__ import annotations

import numpy as np
import pytest

from imagine.realtime.audio import Playout, Resampler, from_pcm16, spoken_prefix, to_pcm16

pytest.importorskip("av")


def sine(hz: float, rate: int, seconds: float, level: float = 0.5) -> np.ndarray:
    return (level * np.sin(2 * np.pi * hz * np.arange(int(rate * seconds)) / rate)).astype(np.float32)


def peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def resample_chunked(samples: np.ndarray, source: int, target: int, sizes: list[int]) -> np.ndarray:
    resampler, out, first, i = Resampler(source, target), [], 0, 0
    while first < len(samples):
        size = sizes[i % len(sizes)]
        out.append(resampler(samples[first:first + size]))
        first, i = first + size, i + 1
    out.append(resampler.flush())
    return np.concatenate(out)


@pytest.mark.parametrize("source, target", [(22050, 24000), (24000, 16000), (16000, 24000), (48000, 16000)])
def test_chunked_resampling_matches_one_shot(source: int, target: int) -> None:
    audio = sine(440, source, 2.0) + sine(1234, source, 2.0, 0.2)
    whole = Resampler(source, target)
    one_shot = np.concatenate([whole(audio), whole.flush()])
    expected = len(audio) * target / source
    assert abs(len(one_shot) - expected) <= 4
    for sizes in ([source // 50], [160], [1, 7, 333, 4096]):  # 20 ms frames, 10 ms at 16 kHz, ragged
        chunked = resample_chunked(audio, source, target, sizes)
        assert abs(len(chunked) - len(one_shot)) <= 4, sizes
        n = min(len(chunked), len(one_shot)) - 64
        # the same filter over the same samples: the same output, not just the same pitch
        np.testing.assert_allclose(chunked[64:n], one_shot[64:n], atol=1e-3)


@pytest.mark.parametrize("source, target", [(22050, 24000), (24000, 16000)])
def test_a_sine_keeps_its_pitch(source: int, target: int) -> None:
    out = resample_chunked(sine(440, source, 2.0), source, target, [source // 50])
    assert abs(peak_hz(out, target) - 440) <= 2  # FFT bins are 0.5 Hz wide over 2 s
    # and its level: no clicks at the chunk edges, no loss
    body = out[target // 10:-target // 10]
    assert 0.45 <= np.abs(body).max() <= 0.55
    assert np.abs(np.diff(body)).max() <= 2 * np.pi * 440 / target * 0.5 * 1.1


def test_resampler_passes_through_and_starts_afresh_after_flush() -> None:
    same = Resampler(24000, 24000)
    audio = sine(300, 24000, 0.1)
    assert same(audio) is not None and np.array_equal(same(audio), audio)
    assert same.flush().size == 0
    r = Resampler(22050, 24000)
    assert r(np.zeros(0, np.float32)).size == 0
    first = np.concatenate([r(audio[:2205]), r.flush()])
    second = np.concatenate([r(audio[:2205]), r.flush()])  # a new piece after flush: the same output
    np.testing.assert_array_equal(first, second)
    assert r.flush().size == 0


def test_pcm16_round_trip() -> None:
    audio = np.concatenate([sine(440, 24000, 0.5), np.array([1.0, -1.0, 0.0, 1.5, -2.0], np.float32)])
    data = to_pcm16(audio)
    assert isinstance(data, bytes) and len(data) == 2 * len(audio)
    back = from_pcm16(data)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back[:-5], audio[:-5], atol=1 / 32767)
    np.testing.assert_allclose(back[-5:], [1.0, -1.0, 0.0, 1.0, -1.0], atol=1e-6)  # clipped to full scale
    assert np.frombuffer(data[-4:], "<i2").tolist() == [32767, -32767]  # little-endian
    assert from_pcm16(data + b"\x01").shape == back.shape  # a trailing odd byte is dropped
    assert from_pcm16(b"").size == 0 and to_pcm16(np.zeros(0, np.float32)) == b""


def test_playout_queues_pieces_that_arrive_faster_than_real_time() -> None:
    playout = Playout()
    assert not playout.playing(0.0) and playout.end == 0.0 and playout.heard(5.0) == {}
    # four 0.5 s pieces handed over at once at t=10: they play back to back
    for i in range(4):
        playout.push(0.5, now=10.0, sentence=i // 2)
    assert [p.start for p in playout.pieces] == [10.0, 10.5, 11.0, 11.5]
    assert playout.end == 12.0
    assert playout.playing(11.9) and not playout.playing(12.0)
    assert playout.heard(9.0) == {} and playout.heard(10.0) == {}
    assert playout.heard(10.25) == pytest.approx({0: 0.25})
    assert playout.heard(10.75) == pytest.approx({0: 0.75})
    assert playout.heard(11.2) == pytest.approx({0: 1.0, 1: 0.2})
    assert playout.heard(30.0) == pytest.approx({0: 1.0, 1: 1.0})
    assert playout.heard_seconds(11.2) == pytest.approx(1.2)
    # a piece that arrives after the queue ran dry plays when it arrives, not at the old end
    playout.push(0.5, now=20.0, sentence=2)
    assert playout.pieces[-1].start == 20.0 and playout.end == 20.5
    assert playout.heard(19.0) == pytest.approx({0: 1.0, 1: 1.0})
    assert playout.heard(20.1) == pytest.approx({0: 1.0, 1: 1.0, 2: 0.1})
    # one that arrives while the queue still plays waits its turn
    playout.push(1.0, now=20.2, sentence=2)
    assert playout.pieces[-1].start == 20.5 and playout.end == 21.5
    assert playout.heard(21.0) == pytest.approx({0: 1.0, 1: 1.0, 2: 1.0})


def test_spoken_prefix() -> None:
    sentences = [("The dragon slept.", 1.5), ("It woke up at dawn and flew away.", 2.0), ("The end.", 1.0)]
    assert spoken_prefix(sentences, {}) == ""
    assert spoken_prefix(sentences, {0: 0.0}) == ""
    assert spoken_prefix(sentences, {0: 1.5}) == "The dragon slept."  # a whole sentence
    assert spoken_prefix(sentences, {0: 1.5, 1: 2.0, 2: 1.0}) == " ".join(t for t, _ in sentences)
    # part of a sentence: its words in proportion to the share of its audio heard, a cut word not counted
    assert spoken_prefix(sentences, {0: 1.5, 1: 1.0}) == "The dragon slept. It woke up at"  # 8 words, half
    assert spoken_prefix(sentences, {0: 1.5, 1: 0.2}) == "The dragon slept."  # 0.8 of a word
    assert spoken_prefix(sentences, {0: 0.75}) == "The"  # 3 words, half: one and a half -> one
    assert spoken_prefix(sentences, {0: 1.4999999}) == "The dragon slept."  # heard to the end, rounding aside
    # nothing after a sentence heard in part, and nothing after one not heard at all
    assert spoken_prefix(sentences, {0: 1.0, 1: 2.0}) == "The dragon"
    assert spoken_prefix(sentences, {1: 2.0}) == ""
    # a sentence of unknown length counts as heard once any of it played
    assert spoken_prefix([("No audio length.", 0.0)], {0: 0.1}) == "No audio length."


def test_playout_and_spoken_prefix_together() -> None:
    """What barge-in keeps: the words heard by the moment the person spoke."""
    sentences = [("Once upon a time.", 1.0), ("A dragon lived in a cave by the sea.", 2.0)]
    playout = Playout()
    t0 = 100.0
    for index, (_, seconds) in enumerate(sentences):
        for k in range(int(seconds / 0.1)):  # 100 ms deltas handed out ahead of time
            playout.push(0.1, now=t0 + 0.05 * (10 * index + k), sentence=index)
    assert playout.end == pytest.approx(t0 + 3.0)
    assert spoken_prefix(sentences, playout.heard(t0 + 0.5)) == "Once upon"
    assert spoken_prefix(sentences, playout.heard(t0 + 2.0)) == "Once upon a time. A dragon lived in"
    assert spoken_prefix(sentences, playout.heard(t0 + 5.0)) == "Once upon a time. A dragon lived in a cave by the sea."
