"""Cutting long recordings into windows (engines/_support/audio_windows.py): where the cuts go, and reading
windows from a stream of blocks without holding the recording."""

from __future__ import annotations

import numpy as np

from imagine.engines._support.audio_windows import fixed_windows, read_windows, speech_windows

RATE = 100  # samples per second: small numbers keep the cases readable


def test_speech_close_together_shares_a_window_and_long_silence_is_skipped() -> None:
    spans = [(1_000, 1_300), (1_500, 1_800), (9_000, 9_200)]  # 10 s, 15 s, 90 s
    windows = speech_windows(spans, 12_000, rate=RATE, longest_s=60, gap_s=5, edge_s=1)
    assert windows == [(900, 1_900), (8_900, 9_300)]  # one pause of 2 s joins; 72 s of silence is never read


def test_a_window_never_grows_past_the_longest_and_edges_stop_halfway_to_the_neighbour() -> None:
    spans = [(0, 2_500), (2_550, 5_000)]  # 25 s and 24.5 s with 0.5 s between: too long for one 30 s window
    windows = speech_windows(spans, 6_000, rate=RATE, longest_s=30, gap_s=5, edge_s=1)
    assert windows == [(0, 2_525), (2_525, 5_100)]
    long_span = speech_windows([(0, 10_000)], 10_000, rate=RATE, longest_s=30, gap_s=5, edge_s=1)
    assert all(end - start <= 30 * RATE + 2 * RATE for start, end in long_span)
    assert long_span[0][0] == 0 and long_span[-1][1] == 10_000
    assert all(a[1] == b[0] for a, b in zip(long_span, long_span[1:]))  # pieces touch: nothing skipped


def test_no_speech_means_no_windows() -> None:
    assert speech_windows([], 10_000, rate=RATE, longest_s=30, gap_s=5, edge_s=1) == []


def test_fixed_windows_cover_everything_and_cut_at_the_quietest_frame() -> None:
    frame = 10
    energy = np.zeros(1_000)  # 100 s of 0.1 s frames, loud everywhere...
    energy[:] = -10
    energy[270] = -80  # ...but quiet at 27.0 s and 55.5 s
    energy[555] = -80
    windows = fixed_windows(energy, 10_000, rate=RATE, frame=frame, longest_s=30, search_s=5)
    assert windows[0] == (0, 2_700) and windows[1] == (2_700, 5_550)
    assert windows[-1][1] == 10_000 and all(a[1] == b[0] for a, b in zip(windows, windows[1:]))
    assert all(end - start <= 30 * RATE for start, end in windows)
    assert fixed_windows(energy, 1_000, rate=RATE, frame=frame, longest_s=30, search_s=5) == [(0, 1_000)]


def test_read_windows_gives_exact_samples_from_blocks_and_holds_few() -> None:
    audio = np.arange(10_000, dtype=np.float32)
    read = []

    def blocks():
        for first in range(0, len(audio), 700):
            read.append(first)
            yield audio[first:first + 700]

    windows = [(50, 120), (650, 1_450), (1_400 + 100, 1_500 + 10), (9_990, 10_000)]
    got = list(read_windows(blocks(), windows))
    for (start, end), (first, samples) in zip(windows, got):
        assert first == start and np.array_equal(samples, audio[start:end])
    assert len(got) == len(windows)
    assert read == list(range(0, 10_000, 700))  # each block decoded once, in order


def test_read_windows_stops_at_the_end_of_the_audio() -> None:
    got = list(read_windows(iter([np.ones(10, np.float32)]), [(5, 50)]))
    assert got[0][0] == 5 and len(got[0][1]) == 5
