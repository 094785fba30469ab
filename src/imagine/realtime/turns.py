"""Turn detection: where the person's speech starts and when their turn is over, from streaming audio.

Silero VAD scores each 32 ms chunk (16 kHz, 512 samples) as the audio arrives; its LSTM state carries
across chunks. A run of speech chunks `onset_ms` long starts speech (and interrupts a reply playing).
Once speech is followed by `pause_ms` of silence the detector reports a pause with the utterance so far,
so the loop can transcribe it while the silence goes on; the turn ends after `silence_ms` of silence if
that transcript reads as finished (`looks_complete`), and after `max_silence_ms` whatever it reads.
Speech shorter than `min_speech_ms` in all (a cough, a click, noise Silero half-believes) is dropped,
never a turn. The detector counts samples, not wall time: the same audio gives the same turns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Paused", "Resumed", "SpeechDropped", "SpeechStarted", "TurnDetector", "TurnEnded", "TurnEvent",
           "TurnSettings", "looks_complete"]

RATE = 16000
CHUNK = 512  # Silero's chunk at 16 kHz: 32 ms
CHUNK_S = CHUNK / RATE


class TurnSettings(BaseModel):
    """Server VAD settings (the Realtime API's `turn_detection`, plus imagine's end-of-turn check)."""

    model_config = ConfigDict(extra="forbid")
    threshold: float = Field(default=0.5, gt=0, lt=1, description="Silero speech probability that counts as speech")
    prefix_padding_ms: int = Field(default=300, ge=0, le=2000, description="audio kept from before speech began")
    onset_ms: int = Field(default=64, ge=32, le=1000, description="speech this long starts a turn and "
                          "interrupts a reply")
    pause_ms: int = Field(default=256, ge=64, le=5000, description="silence after which the utterance is "
                          "transcribed, to judge whether it is finished")
    silence_ms: int = Field(default=500, ge=64, le=10000, description="silence that ends a turn that reads "
                            "as finished")
    max_silence_ms: int = Field(default=1200, ge=64, le=20000, description="silence that ends any turn")
    min_speech_ms: int = Field(default=250, ge=0, le=5000, description="less speech than this is not a turn")
    max_turn_s: float = Field(default=30.0, gt=1, le=600, description="a turn this long ends at the next pause")


@dataclass(frozen=True)
class SpeechStarted:
    at: float  # seconds of input audio at the first speech chunk


@dataclass(frozen=True)
class Paused:
    at: float  # where the silence began
    audio: np.ndarray  # the utterance so far, 16 kHz
    serial: int  # which pause of the turn this is: a transcript for an older one is stale


@dataclass(frozen=True)
class Resumed:
    at: float


@dataclass(frozen=True)
class SpeechDropped:
    at: float
    speech_s: float


@dataclass(frozen=True)
class TurnEnded:
    at: float  # where the final silence began (the end of speech)
    audio: np.ndarray  # the whole utterance with its prefix padding and a little trailing silence
    serial: int  # the pause this ending belongs to
    speech_s: float
    forced: bool  # ended by max_silence_ms (or max_turn_s), not by a finished-sounding transcript


TurnEvent = Union[SpeechStarted, Paused, Resumed, SpeechDropped, TurnEnded]

_CONTINUATIONS = {"and", "but", "or", "so", "because", "that", "which", "who", "the", "a", "an", "to", "of",
                  "in", "on", "with", "for", "if", "then", "um", "uh", "er", "like", "my", "your", "is", "are",
                  "was", "were", "about", "what", "when", "where", "how", "why", "as", "at", "from", "by"}


def looks_complete(transcript: str) -> bool:
    """A cheap end-of-utterance check on a transcript: not empty, not ending in a comma, a dash, an
    ellipsis or a word that leads into more ("and", "the", "um", ...)."""
    text = transcript.strip()
    if not text or text.endswith((",", "-", "...", "…", ";", ":")):
        return False
    words = re.findall(r"[\w']+", text.lower())  # a number is a word too: "born in 1990" is finished
    return bool(words) and words[-1] not in _CONTINUATIONS


class TurnDetector:
    """Feed 16 kHz float32 audio; get turn events. `complete(serial, yes)` tells it what the transcript of
    pause `serial` reads as; the turn then ends at `silence_ms` (or at once, if that much has passed)."""

    def __init__(self, model: Any, settings: TurnSettings | None = None) -> None:
        from ..engines.silero_vad import VadStream

        self.settings = settings or TurnSettings()
        self.vad = VadStream(model)
        self._pending = np.zeros(0, np.float32)  # samples not yet a whole chunk
        self._chunks = 0  # chunks scored so far (the clock)
        self._serial = 0  # pauses so far, over all turns: a transcript of an older pause is stale
        self._reset()

    def _reset(self) -> None:
        self.state = "idle"  # idle -> speech <-> paused -> idle
        self._history: list[np.ndarray] = []  # recent chunks while idle (prefix padding)
        self._utterance: list[np.ndarray] = []
        self._run = 0  # consecutive speech chunks (idle, paused) or silence chunks (speech, paused)
        self._speech_chunks = 0
        self._start_chunk = 0
        self._silence_from = 0  # chunk where the current silence began
        self._complete: bool | None = None  # what the transcript of the current pause reads as

    @property
    def now(self) -> float:
        return self._chunks * CHUNK_S

    @property
    def silence_s(self) -> float:
        return (self._chunks - self._silence_from) * CHUNK_S if self.state == "paused" else 0.0

    def utterance(self) -> np.ndarray:
        """The speech under way so far (empty when idle): for partial transcripts."""
        return np.concatenate(self._utterance) if self.state != "idle" and self._utterance else np.zeros(0, np.float32)

    def feed(self, samples: np.ndarray) -> list[TurnEvent]:
        samples = np.concatenate([self._pending, np.asarray(samples, np.float32).reshape(-1)])
        whole = len(samples) // CHUNK * CHUNK
        self._pending = samples[whole:]
        if not whole:
            return []
        chunks = samples[:whole].reshape(-1, CHUNK)
        probs = self.vad.feed(samples[:whole])
        events: list[TurnEvent] = []
        for chunk, prob in zip(chunks, probs):
            self._chunks += 1
            events += self._step(chunk, float(prob))
        return events

    def complete(self, serial: int, yes: bool) -> TurnEvent | None:
        """The transcript of pause `serial` reads as finished (`yes`) or not; ends the turn now if
        it is finished and `silence_ms` of silence has already passed."""
        if self.state != "paused" or serial != self._serial:
            return None
        self._complete = yes
        if yes and self.silence_s * 1000 >= self.settings.silence_ms:
            return self._end(forced=False)
        return None

    def end_turn(self) -> TurnEvent | None:
        """End the turn now (a client's manual commit); None when no speech is under way."""
        if self.state == "idle":
            return None
        if self.state == "speech":
            self._silence_from = self._chunks
        return self._end(forced=True)

    # -- the state machine, one 32 ms chunk at a time ---------------------------------------------------
    def _step(self, chunk: np.ndarray, prob: float) -> list[TurnEvent]:
        s = self.settings
        speech = prob >= s.threshold
        silence = prob < s.threshold - 0.15
        onset_chunks = max(1, round(s.onset_ms / 1000 / CHUNK_S))
        if self.state == "idle":
            self._history.append(chunk)
            keep = round(s.prefix_padding_ms / 1000 / CHUNK_S) + onset_chunks
            del self._history[:-keep]
            self._run = self._run + 1 if speech else 0
            if self._run >= onset_chunks:
                self.state, self._utterance = "speech", list(self._history)
                self._speech_chunks, self._start_chunk = self._run, self._chunks - self._run
                self._run = 0
                return [SpeechStarted(self._start_chunk * CHUNK_S)]
            return []
        self._utterance.append(chunk)
        if self.state == "speech":
            self._speech_chunks += speech
            self._run = self._run + 1 if silence else 0
            if self._run * CHUNK_S * 1000 >= s.pause_ms:
                self._silence_from = self._chunks - self._run
                if self._speech_chunks * CHUNK_S * 1000 < s.min_speech_ms:
                    return [self._drop()]
                self.state, self._run, self._complete = "paused", 0, None
                self._serial += 1
                return [Paused(self._silence_from * CHUNK_S, self._audio(), self._serial)]
            return []
        # paused: speech again resumes the turn; enough silence ends it
        self._run = self._run + 1 if speech else 0
        if self._run >= onset_chunks:
            self.state, self._speech_chunks, self._run = "speech", self._speech_chunks + self._run, 0
            return [Resumed((self._chunks - onset_chunks) * CHUNK_S)]
        silence_ms = self.silence_s * 1000
        too_long = (self._chunks - self._start_chunk) * CHUNK_S >= s.max_turn_s
        if silence_ms >= s.max_silence_ms or too_long:
            return [self._end(forced=True)]
        if self._complete and silence_ms >= s.silence_ms:
            return [self._end(forced=False)]
        return []

    def _audio(self) -> np.ndarray:
        """The utterance with at most 200 ms of the silence after it."""
        kept = len(self._utterance) - max(0, (self._chunks - self._silence_from) - round(0.2 / CHUNK_S))
        return np.concatenate(self._utterance[:max(1, kept)]) if self._utterance else np.zeros(0, np.float32)

    def _drop(self) -> SpeechDropped:
        event = SpeechDropped(self._start_chunk * CHUNK_S, self._speech_chunks * CHUNK_S)
        self._reset()
        return event

    def _end(self, forced: bool) -> TurnEnded:
        event = TurnEnded(self._silence_from * CHUNK_S, self._audio(), self._serial,
                          self._speech_chunks * CHUNK_S, forced)
        self._reset()
        return event
