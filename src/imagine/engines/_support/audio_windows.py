"""Long recordings in windows of bounded length, so a speech model's memory stays flat with duration.

Speech models hold the whole input at once (Whisper's log-mel spectrogram of two hours of audio is
gigabytes), so a long recording is cut into windows and each window is handed over on its own. Where
the cuts go decides what the model hears:

- with speech spans from a VAD, a window gathers neighbouring speech and ends at a pause; a long
  stretch without speech is never decoded at all (time grows with the speech, not the silence);
- without them, fixed-length windows are cut at the quietest moment near each nominal end.

Windows are read from a stream of decoded blocks (`Audio.blocks`), keeping in memory only the blocks
that the current window touches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Iterator

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Window", "fixed_windows", "read_windows", "speech_windows"]

Window = tuple[int, int]  # [start, end) in samples


def speech_windows(spans: list[Window], total: int, *, rate: int, longest_s: float, gap_s: float,
                   edge_s: float) -> list[Window]:
    """Windows around speech: consecutive spans join while the pause between them is at most `gap_s` and
    the window stays within `longest_s`; each window keeps `edge_s` of audio around its speech (never
    past the midpoint to its neighbour). A span longer than `longest_s` is cut into pieces."""
    longest, gap, edge = int(longest_s * rate), int(gap_s * rate), int(edge_s * rate)
    pieces: list[Window] = []
    for start, end in spans:
        while end - start > longest:
            pieces.append((start, start + longest))
            start += longest
        pieces.append((start, end))
    groups: list[list[int]] = []
    for start, end in pieces:
        if groups and start - groups[-1][1] <= gap and end - groups[-1][0] <= longest:
            groups[-1][1] = end
        else:
            groups.append([start, end])
    windows = []
    for i, (start, end) in enumerate(groups):
        low = 0 if i == 0 else (groups[i - 1][1] + start) // 2
        high = total if i == len(groups) - 1 else (end + groups[i + 1][0]) // 2
        windows.append((max(low, start - edge), min(high, end + edge)))
    return windows


def fixed_windows(energy: "np.ndarray", total: int, *, rate: int, frame: int, longest_s: float,
                  search_s: float) -> list[Window]:
    """Windows of at most `longest_s` covering the whole recording, each cut at the quietest frame
    (`energy`: loudness per frame of `frame` samples) in the last `search_s` before its nominal end, so
    a cut rarely falls inside a word."""
    import numpy as np

    longest, search = int(longest_s * rate), int(search_s * rate)
    windows, start = [], 0
    while total - start > longest:
        first, last = (start + longest - search) // frame, (start + longest) // frame
        quiet = energy[first:last]
        cut = (first + int(np.argmin(quiet))) * frame if len(quiet) else start + longest
        cut = cut if cut > start else start + longest
        windows.append((start, cut))
        start = cut
    if total > start:
        windows.append((start, total))
    return windows


def read_windows(blocks: Iterable["np.ndarray"], windows: list[Window]) -> Iterator[tuple[int, "np.ndarray"]]:
    """(start, samples) of each window, in order, from consecutive blocks of samples: only the blocks the
    current window overlaps are held. Windows must be sorted and must not overlap."""
    import numpy as np

    source = iter(blocks)
    held: list[tuple[int, np.ndarray]] = []  # (first sample, block)
    read_to = 0  # samples read from the source so far
    for start, end in windows:
        while read_to < end:
            block = next(source, None)
            if block is None:
                break
            held.append((read_to, block))
            read_to += len(block)
        held = [(first, block) for first, block in held if first + len(block) > start]
        pieces = [block[max(0, start - first):max(0, end - first)] for first, block in held if first < end]
        yield start, (np.concatenate(pieces) if pieces else np.zeros(0, np.float32))
