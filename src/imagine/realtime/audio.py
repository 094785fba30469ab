"""Audio plumbing for the voice loop: 16-bit PCM, streaming resampling, and the listener's playout clock.

The loop hears at 16 kHz (what Silero VAD and Whisper take), speaks at the voice's rate (22,050 Hz for
Piper's joe) and talks to clients at theirs (24 kHz for the OpenAI Realtime API). Resampling keeps
filter state from chunk to chunk (libswresample through PyAV, a core dependency), so chunk edges do not
click. The playout clock answers "how much of the reply has the person heard by now?", which is what
barge-in keeps of an interrupted reply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..events import from_pcm16, to_pcm16  # the one PCM encoding, shared with PartDelta

__all__ = ["Playout", "Resampler", "from_pcm16", "spoken_prefix", "to_pcm16"]


class Resampler:
    """Mono float32 audio from `source` Hz to `target` Hz, fed in chunks of any size.

    Output lags the input by the filter's few samples; `flush()` returns them at the end of a piece."""

    def __init__(self, source: int, target: int) -> None:
        self.source, self.target = int(source), int(target)
        self._resampler: Any = None
        self._pts = 0

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        samples = np.asarray(samples, np.float32).reshape(-1)
        if self.source == self.target or not len(samples):
            return samples
        import av

        if self._resampler is None:
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=self.target)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate, frame.pts = self.source, self._pts
        self._pts += len(samples)
        return self._join(self._resampler.resample(frame))

    def flush(self) -> np.ndarray:
        """What the filter still holds; the resampler then starts afresh."""
        if self._resampler is None:
            return np.zeros(0, np.float32)
        out = self._join(self._resampler.resample(None))
        self._resampler, self._pts = None, 0
        return out

    @staticmethod
    def _join(frames: list[Any]) -> np.ndarray:
        if not frames:
            return np.zeros(0, np.float32)
        return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.float32, copy=False)


@dataclass
class _Piece:
    start: float  # listener's clock, seconds
    seconds: float
    sentence: int  # which sentence of the reply this audio speaks


@dataclass
class Playout:
    """When the listener hears each piece of reply audio, on a monotonic clock: a piece plays from the
    moment it arrives, or when the piece before it ends if that is later (the client's play queue)."""

    pieces: list[_Piece] = field(default_factory=list)

    @property
    def end(self) -> float:
        return self.pieces[-1].start + self.pieces[-1].seconds if self.pieces else 0.0

    def push(self, seconds: float, now: float, sentence: int = 0) -> None:
        self.pieces.append(_Piece(max(now, self.end), seconds, sentence))

    def playing(self, now: float) -> bool:
        return bool(self.pieces) and now < self.end

    def heard(self, now: float) -> dict[int, float]:
        """Seconds heard of each sentence by `now`."""
        out: dict[int, float] = {}
        for piece in self.pieces:
            if piece.start >= now:
                break
            out[piece.sentence] = out.get(piece.sentence, 0.0) + min(piece.seconds, now - piece.start)
        return out

    def heard_seconds(self, now: float) -> float:
        return sum(self.heard(now).values())


def spoken_prefix(sentences: list[tuple[str, float]], heard: dict[int, float]) -> str:
    """The words of a reply the listener has heard: whole sentences heard to the end, then the words of
    a sentence heard in part, in proportion to the share of its audio that played (speech is close
    enough to even-paced for this; a word cut in the middle is counted as not heard)."""
    words: list[str] = []
    for index, (text, seconds) in enumerate(sentences):
        got = heard.get(index, 0.0)
        if got <= 0:
            break
        sentence_words = text.split()
        if seconds <= 0 or got >= seconds - 1e-6:
            words += sentence_words
            continue
        words += sentence_words[: int(len(sentence_words) * got / seconds)]
        break
    return re.sub(r"\s+", " ", " ".join(words)).strip()
