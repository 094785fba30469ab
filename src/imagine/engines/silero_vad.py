"""`silero-vad`: where the speech is, from the Silero VAD ONNX model run by onnxruntime (no torch).

Model names: `silero-vad-v6` (the default: the model file faster-whisper ships in its assets folder,
so it works offline), or a path to another Silero VAD `.onnx` export — faster-whisper's (inputs
`input`, `h`, `c`: many chunks per call) or the upstream snakers4 one (`input`, `state`, `sr`: one
chunk per call).

The model scores 32 ms chunks (512 samples at 16 kHz, each seen with the 64 samples before it) for
the probability of speech, carrying its LSTM state from chunk to chunk. Chunks go in blocks, so memory
stays flat and a cancelled request stops between blocks. The probabilities become segments with the
algorithm of silero-vad's `get_speech_timestamps` (as faster-whisper has it): speech starts at
`threshold`, ends after `min_silence_ms` below `threshold - 0.15`, short bursts are dropped, long runs
are split at a pause, and each segment is padded by `speech_pad_ms`.
"""

from __future__ import annotations

import asyncio
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Iterable

from pydantic import BaseModel, ConfigDict, Field

from ..engine import Engine, Request
from ..errors import InputError
from ..events import Done, Event, PartOut, Usage
from ..parts import Audio, Modality, Segment, Segments, Video
from ._support.assets import require_asset
from ._support.cache import file_bytes, model_cache
from ._support.inputs import user_parts
from ._support.model_refs import parse_model_ref

if TYPE_CHECKING:
    import numpy as np

__all__ = ["AudioScan", "SileroVadEngine", "SileroVadOptions", "VadStream", "bundled_model_path", "frame_energy_db",
           "load_model", "scan_audio", "speech_probabilities", "speech_spans", "tighten_edges"]

BUNDLED = "silero-vad-v6"
RATE = 16000
CHUNK = 512  # samples the model scores at once at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous chunk the model sees in front of each chunk
BLOCK = 1000  # chunks per model call and per decoded block (32 s: a whole number of 10 ms energy frames too)
MAX_SPLIT_PAUSE = RATE * 98 // 1000  # a pause this long is a place to split an over-long segment


def bundled_model_path() -> Path:
    """faster-whisper's copy of the Silero VAD v6 model, found without importing faster-whisper."""
    return require_asset("faster_whisper", "assets/silero_vad_v6.onnx", accept=Path.is_file,
                         what="the bundled Silero VAD model",
                         install="pip install 'imagine[speech]', or give a path to a Silero VAD .onnx file")


FRAME = RATE // 100  # 10 ms energy frames for edge tightening


def frame_energy_db(samples: "np.ndarray") -> "np.ndarray":
    """Loudness in dB of each whole 10 ms frame (a last partial frame is left out)."""
    import numpy as np

    frames = samples[: len(samples) // FRAME * FRAME].reshape(-1, FRAME).astype(np.float64)
    return 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12) if len(frames) else np.zeros(0)


def tighten_edges(energy: "np.ndarray", spans: list[tuple[int, int]], pad: int,
                  margin_db: float = 10.0, below_peak_db: float = 40.0) -> list[tuple[int, int]]:
    """Move each span's edges in to the first and last 10 ms frame that is clearly louder than the
    background (`energy`: `frame_energy_db` of the whole audio), keeping `pad` samples around them.
    Silero's probability lags ~150 ms behind the end of speech in noise; the signal energy does not.
    Spans only ever shrink."""
    import numpy as np

    if not spans or len(energy) == 0:
        return spans
    floor = float(np.percentile(energy, 10))
    tightened = []
    for s, e in spans:
        first, last = s // FRAME, min(len(energy), -(-e // FRAME))
        inside = energy[first:last]
        if inside.size == 0:
            tightened.append((s, e))
            continue
        threshold = max(floor + margin_db, float(np.percentile(inside, 95)) - below_peak_db)
        loud = np.flatnonzero(inside > threshold)
        if loud.size == 0:
            tightened.append((s, e))
            continue
        start = max(s, (first + int(loud[0])) * FRAME - pad)
        end = min(e, (first + int(loud[-1]) + 1) * FRAME + pad)
        tightened.append((start, end) if end > start else (s, e))
    return tightened


class _Model:
    """An onnxruntime session behind one call: (chunks with context, state) -> (probabilities, state)."""

    def __init__(self, session: Any, path: Path) -> None:
        names = {i.name for i in session.get_inputs()}
        if {"input", "h", "c"} <= names:
            self.batched = True  # faster-whisper's export: the LSTM runs along the first axis
        elif {"input", "state", "sr"} <= names:
            self.batched = False  # the upstream export: the first axis is a batch of separate streams
        else:
            raise InputError(f"{path} is not a Silero VAD model (its inputs are {', '.join(sorted(names))})",
                             hint="give a Silero VAD .onnx export with inputs input/h/c or input/state/sr")
        self.session = session

    def initial_state(self) -> Any:
        import numpy as np

        if self.batched:
            return np.zeros((1, 1, 128), np.float32), np.zeros((1, 1, 128), np.float32)
        return np.zeros((2, 1, 128), np.float32)

    def __call__(self, x: "np.ndarray", state: Any) -> tuple["np.ndarray", Any]:
        import numpy as np

        if self.batched:
            probs, h, c = self.session.run(None, {"input": x, "h": state[0], "c": state[1]})
            return np.asarray(probs, np.float32).reshape(-1), (h, c)
        sr = np.array(RATE, dtype=np.int64)
        out = np.empty(len(x), np.float32)
        for i in range(len(x)):
            prob, state = self.session.run(None, {"input": x[i:i + 1], "state": state, "sr": sr})
            out[i] = float(np.asarray(prob).reshape(-1)[0])
        return out, state


class VadStream:
    """Speech probabilities of audio fed block by block: the model's state and the 64 samples of context
    carry from one block to the next, so the result does not depend on how the audio was cut."""

    def __init__(self, model: Any) -> None:
        import numpy as np

        self.model, self.state = model, model.initial_state()
        self.context = np.zeros(CONTEXT, np.float32)  # the first chunk is preceded by silence

    def feed(self, samples: "np.ndarray") -> "np.ndarray":
        """One probability per 512-sample chunk; only the last block may be a partial chunk (zero-padded)."""
        import numpy as np

        if not len(samples):
            return np.zeros(0, np.float32)
        chunks = np.pad(np.asarray(samples, np.float32), (0, -len(samples) % CHUNK)).reshape(-1, CHUNK)
        before = np.concatenate([self.context[None, :], chunks[:-1, -CONTEXT:]])
        probs, self.state = self.model(np.concatenate([before, chunks], axis=1), self.state)
        self.context = chunks[-1, -CONTEXT:]
        return probs


def speech_probabilities(model: Any, samples: "np.ndarray", stop: threading.Event | None = None) -> "np.ndarray":
    """One speech probability per 512-sample chunk of 16 kHz audio (the last chunk zero-padded)."""
    import numpy as np

    stream, out, step = VadStream(model), [], BLOCK * CHUNK
    for first in range(0, len(samples), step):
        if stop is not None and stop.is_set():
            break
        out.append(stream.feed(samples[first:first + step]))
    return np.concatenate(out) if out else np.zeros(0, np.float32)


@dataclass
class AudioScan:
    """What one streaming pass over a recording learns, in memory that grows ~3000x slower than the audio:
    its length, Silero's speech probability per 32 ms chunk (None without a model) and the loudness of
    each 10 ms frame."""

    total: int  # samples
    probs: "np.ndarray | None"
    energy: "np.ndarray"

    @property
    def seconds(self) -> float:
        return self.total / RATE


def scan_audio(blocks: Iterable["np.ndarray"], model: Any | None, stop: threading.Event | None = None,
               progress: Callable[[float], None] | None = None) -> AudioScan:
    """One pass over 16 kHz `blocks` (each BLOCK * CHUNK samples but the last, as `Audio.blocks` gives
    them); `progress` hears the seconds read so far after each block."""
    import numpy as np

    stream = VadStream(model) if model is not None else None
    probs, energy, total = [], [], 0
    for block in blocks:
        if stop is not None and stop.is_set():
            break
        if stream is not None:
            probs.append(stream.feed(block))
        energy.append(frame_energy_db(block))
        total += len(block)
        if progress is not None:
            progress(total / RATE)
    joined = np.concatenate(probs) if probs else np.zeros(0, np.float32)
    return AudioScan(total, joined if stream is not None else None,
                     np.concatenate(energy) if energy else np.zeros(0))


def speech_spans(probs: "np.ndarray", total: int, *, threshold: float = 0.5, min_speech_ms: int = 250,
                 min_silence_ms: int = 300, speech_pad_ms: int = 30,
                 max_speech_s: float | None = None) -> list[tuple[int, int]]:
    """Speech (start, end) in samples from chunk probabilities; `total` is the audio length in samples."""
    low = max(threshold - 0.15, 0.01)  # hysteresis: once speaking, only this ends it
    min_speech = RATE * min_speech_ms / 1000
    min_silence = RATE * min_silence_ms / 1000
    pad = RATE * speech_pad_ms // 1000
    max_speech = RATE * max_speech_s - CHUNK - 2 * pad if max_speech_s else math.inf

    spans: list[tuple[int, int]] = []
    speaking = False
    start = 0
    silence_from = 0  # where the current pause began (0: not in a pause)
    split_at = 0  # the end of the last pause long enough to split an over-long segment at
    resume_at = 0  # where speech resumed after that pause
    for i, prob in enumerate(probs):
        pos = i * CHUNK
        if prob >= threshold and silence_from:  # the pause was too short: keep going
            silence_from = 0
            if resume_at < split_at:
                resume_at = pos
        if prob >= threshold and not speaking:
            speaking, start = True, pos
            continue
        if speaking and pos - start > max_speech:
            if split_at:  # cut at the last pause; go on from where speech resumed, if it has
                spans.append((start, split_at))
                speaking = resume_at >= split_at
                start = resume_at
            else:  # no pause to cut at: cut here
                spans.append((start, pos))
                speaking = False
            split_at = resume_at = silence_from = 0
            if not speaking:
                continue
        if prob < low and speaking:
            silence_from = silence_from or pos
            if pos - silence_from > MAX_SPLIT_PAUSE:
                split_at = silence_from
            if pos - silence_from < min_silence:
                continue
            if silence_from - start > min_speech:
                spans.append((start, silence_from))
            speaking = False
            split_at = resume_at = silence_from = 0
    if speaking and total - start > min_speech:
        spans.append((start, total))

    padded = []
    for i, (s, e) in enumerate(spans):  # pad, sharing a gap shorter than two pads at its middle
        before = pad if i == 0 else min(pad, (s - spans[i - 1][1]) // 2)
        after = pad if i == len(spans) - 1 else min(pad, (spans[i + 1][0] - e) // 2)
        padded.append((max(0, s - before), min(total, e + after)))
    return padded


def load_model(path: Path) -> _Model:
    """The onnxruntime session for the Silero VAD file at `path`, created once per process (the shared
    model cache; it is small: ~2 MB). Whisper's speech gate shares it."""
    path = path.resolve()

    def create() -> _Model:
        import onnxruntime

        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = 1  # a tiny sequential model: threads only add overhead
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            session = onnxruntime.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for bad files
            raise InputError(f"{path} is not a loadable ONNX model: {exc}", hint="give a Silero VAD .onnx file") from None
        return _Model(session, path)

    return model_cache().get(("silero-vad", str(path)), create, size=file_bytes(path))


class SileroVadOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    threshold: float = Field(default=0.5, ge=0, le=1, description="speech probability that starts speech")
    min_speech_ms: int = Field(default=250, ge=0, description="shorter bursts are dropped")
    min_silence_ms: int = Field(default=300, ge=0, description="a pause this long ends a segment")
    speech_pad_ms: int = Field(default=30, ge=0, description="added before and after each segment")
    tighten: bool = Field(default=True, description="pull edges in to where the signal rises above "
                                                    "the background (Silero's ends lag in noise)")
    max_speech_s: float | None = Field(default=None, gt=0, description="split longer segments at a pause")


class SileroVadEngine(Engine[SileroVadOptions]):
    id = "silero-vad"
    locality = "local"
    inputs = frozenset({Modality.AUDIO, Modality.VIDEO})
    outputs = frozenset({Modality.SEGMENTS})
    features = frozenset({"timestamps"})
    default_model = BUNDLED
    description = "Speech regions with the Silero VAD ONNX model (bundled with faster-whisper, offline)"
    requires = ("onnxruntime",)
    extra = "speech"
    package = "onnxruntime"

    Options = SileroVadOptions

    def _path(self, model: str) -> Path:
        ref = parse_model_ref(model, bundled=(BUNDLED,), hub=False, bare="path")
        if ref.is_bundled:
            return bundled_model_path()
        path = ref.path
        if not path.exists():
            raise InputError(f"Silero VAD model not found: {path}",
                             hint=f"use {BUNDLED} (the default) or a path to a Silero VAD .onnx file")
        if not path.is_file():
            raise InputError(f"{path} is a folder; silero-vad needs the .onnx file itself")
        return path

    def check_model(self, model: str) -> None:
        self.load(model)

    def load(self, model: str) -> _Model:
        return load_model(self._path(model))

    @staticmethod
    def _input(request: Request) -> Audio | Video:
        media = user_parts(request, (Audio, Video), engine="silero-vad", needs="audio or video", one=True,
                           hint="attach one audio (WAV, FLAC, MP3, OGG) or video (MP4, WebM) file")
        return media[0]

    async def stream(self, request: Request[SileroVadOptions]) -> AsyncIterator[Event]:
        import numpy as np

        opts = request.options
        part = self._input(request)
        model = await asyncio.to_thread(self.load, request.model)
        blocks = part.blocks(RATE, BLOCK * CHUNK, limits=request.limits)  # decoded as the scan reads them
        stop = threading.Event()
        worker = asyncio.get_running_loop().run_in_executor(None, scan_audio, blocks, model, stop)
        try:
            scan = await asyncio.shield(worker)
        finally:
            stop.set()  # a cancelled request stops the worker at the next block
            if not worker.done():
                await asyncio.wait([worker])
        probs = scan.probs if scan.probs is not None else np.zeros(0, np.float32)
        spans = speech_spans(probs, scan.total, threshold=opts.threshold, min_speech_ms=opts.min_speech_ms,
                             min_silence_ms=opts.min_silence_ms, speech_pad_ms=opts.speech_pad_ms,
                             max_speech_s=opts.max_speech_s)
        if opts.tighten:
            spans = tighten_edges(scan.energy, spans, RATE * opts.speech_pad_ms // 1000)
        items = []
        for s, e in spans:  # e > s always, so each span covers at least one chunk
            mean = float(np.mean(probs[s // CHUNK:-(-e // CHUNK)]))
            items.append(Segment(round(s / RATE, 3), round(e / RATE, 3), "speech",
                                 meta={"probability": round(mean, 3)}))
        yield PartOut(Segments(items))
        yield Usage(cost=0.0, extra={"audio_seconds": round(scan.seconds, 3)})
        yield Done("stop")
