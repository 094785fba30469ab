"""`hf-speech`: speech recognition and speech synthesis with any transformers speech model.

A model is a hub id (`openai/whisper-tiny`, `facebook/wav2vec2-base-960h`, `facebook/mms-tts-eng`),
downloaded once into the Hugging Face cache, or a folder that `save_pretrained` wrote. There is no
default: the engine runs what it is pointed at (`-m hf-speech:MODEL`), and `auto` never picks it.

What runs follows from the model and from what the request wants. config.json's `architectures` (or
`model_type`) is looked up in transformers' own task tables: a CTC or speech-seq2seq model (Whisper,
wav2vec2, HuBERT, Moonshine, ...) recognises speech, a text-to-waveform model (VITS / MMS-TTS, Bark,
MusicGen, ...) speaks. `transcribe` (wants text) on a recogniser gives the text streamed, plus Segments
with timestamps where the model predicts them (Whisper: phrases; CTC: words); `speak` (wants audio) on a
synthesiser gives one WAV at the model's own sampling rate. A model of the wrong kind is an InputError
before any weights load. Audio (or a video's sound track) is decoded by imagine at the feature
extractor's sampling rate, with the configured limits, so the pipeline never resamples or reads files.

Synthesis samples noise from torch's global generator (VITS takes no generator argument), so a run
seeds it inside `torch.random.fork_rng` under the process-wide lock the transformers engine's sampling
also takes (`_hf.global_torch_rng`): the same `seed` gives the same audio, and the caller's global RNG
state is left as it was.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Literal

from pydantic import AliasChoices, Field

from ...engine import Engine, Request
from ...errors import EngineUnavailable, ImagineError, InputError, UpstreamError
from ...events import Done, Event, PartOut, TextDelta, Usage
from ...parts import DEFAULT_LIMITS, Audio, Limits, Modality, Segment, Segments, Text, Video
from .._support.cache import model_cache
from .._support.inputs import last_user, refuse_other_parts, user_parts
from ._hf import (HF_EXTRA_HINT, HFOptions, ModelSource, global_torch_rng, hub_kwargs, hub_load_error,
                  hub_model_missing, inspect_model, pick_device, pick_dtype, transformers_dtype_kwarg)

__all__ = ["TransformersSpeechEngine", "TransformersSpeechOptions", "speech_kinds"]

ASR, TTS = "asr", "tts"
PIPELINE_TASK = {ASR: "automatic-speech-recognition", TTS: "text-to-speech"}
MODEL_HINT = ("name a speech model: -m hf-speech:openai/whisper-tiny (speech to text), "
              "-m hf-speech:facebook/mms-tts-eng (text to speech), or a folder written by save_pretrained")


def speech_kinds(model_type: str | None, architectures: list[str] | None) -> set[str]:
    """{"asr", "tts"} ∩ what transformers' task tables say this model can do (by architecture, else by
    model_type). Imports transformers (and so torch): call it only when the engine is about to run."""
    from transformers.models.auto import modeling_auto as auto

    def names(table: Any) -> tuple[set[str], set[str]]:
        classes: set[str] = set()
        for value in table.values():
            classes.update(value if isinstance(value, (list, tuple)) else [value])
        return set(table), classes

    asr_types, asr_classes = names({**auto.MODEL_FOR_CTC_MAPPING_NAMES, **auto.MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES})
    tts_types, tts_classes = names(auto.MODEL_FOR_TEXT_TO_WAVEFORM_MAPPING_NAMES)
    kinds = set()
    if architectures:
        kinds |= {ASR} if set(architectures) & asr_classes else set()
        kinds |= {TTS} if set(architectures) & tts_classes else set()
    elif model_type:
        kinds |= {ASR} if model_type in asr_types else set()
        kinds |= {TTS} if model_type in tts_types else set()
    return kinds


def _check_kind(kinds: set[str], wanted: str | None, ref: str, model_type: str | None,
                architectures: list[str] | None) -> None:
    what = ", ".join(architectures or []) or model_type or "unknown"
    if not kinds:
        raise InputError(f"{ref} is a {what} model, not a speech recognition or text-to-speech model",
                         hint="hf-speech runs Whisper/wav2vec2-style recognisers and VITS-style synthesisers; "
                              "use -m transformers:MODEL for text models")
    if wanted is not None and wanted not in kinds:
        have = "a text-to-speech model, so it cannot transcribe" if wanted == ASR else \
            "a speech recognition model, so it cannot speak"
        raise InputError(f"{ref} ({what}) is {have}",
                         hint="use `imagine speak` with a text-to-speech model, `imagine transcribe` with a "
                              "recogniser")


@dataclass
class _Loaded:
    """A transformers pipeline with what the engine needs to know about it."""
    pipe: Any
    kind: str
    model_type: str
    device: str
    lock: threading.Lock = field(default_factory=threading.Lock)  # pipelines keep per-call state

    @property
    def components(self) -> dict[str, Any]:  # lets the shared cache count the parameters
        return {"model": self.pipe.model}


class TransformersSpeechOptions(HFOptions):
    language: str | None = Field(default=None, max_length=40,
                                 description="Whisper: spoken language (en, de, ...); unset = detect")
    task: Literal["transcribe", "translate"] | None = Field(
        default=None, description="Whisper: transcribe, or translate into English")
    timestamps: bool = Field(default=True, description="segments with times (Whisper phrases, CTC words)")
    word_timestamps: bool = Field(default=False, description="Whisper: one segment per word (needs the "
                                  "model's alignment_heads); CTC models always give words")
    chunk_length_s: float | None = Field(default=None, gt=0, le=600,
                                         description="split long audio into chunks of this many seconds")
    max_tokens: int | None = Field(default=None, ge=1, le=4096,
                                   validation_alias=AliasChoices("max_tokens", "max_new_tokens"),
                                   description="seq2seq recognisers: tokens to generate at most")
    seed: int | None = Field(default=None, ge=0, description="synthesis: same seed, same audio")


class TransformersSpeechEngine(Engine[TransformersSpeechOptions]):
    id = "hf-speech"
    locality = "local"
    inputs = frozenset({Modality.AUDIO, Modality.VIDEO, Modality.TEXT})
    outputs = frozenset({Modality.TEXT, Modality.SEGMENTS, Modality.AUDIO})
    features = frozenset({"timestamps", "seed"})
    default_model = ""
    model_hint = MODEL_HINT
    description = "Speech to text (Whisper, wav2vec2, ...) and text to speech (VITS/MMS-TTS, ...) with transformers"
    requires = ("torch", "transformers")
    extra = "hf"
    package = "transformers"
    auto_select = False  # no default model: only when named

    Options = TransformersSpeechOptions

    # -- models -----------------------------------------------------------------------------------
    def check_model(self, model: str) -> None:
        source = inspect_model(model, allow_pickle=True)  # pickle is judged in stream, with the option
        if source.local:
            if source.kind != "model":
                raise InputError(f"{source.ref} is a diffusers pipeline, not a speech model", hint=MODEL_HINT)
            _check_kind(speech_kinds(source.model_type, source.config.get("architectures")), None, source.ref,
                        source.model_type, source.config.get("architectures"))
        elif (missing := hub_model_missing(source.ref, self.id)) is not None:
            raise missing

    def explain_misfit(self, model: str, needed: frozenset[Modality], want: Modality) -> None:
        source = inspect_model(model, allow_pickle=True)
        if source.local:
            architectures = source.config.get("architectures")
            _check_kind(speech_kinds(source.model_type, architectures), TTS if want == Modality.AUDIO else ASR,
                        source.ref, source.model_type, architectures)

    def capabilities(self, model: str) -> tuple[frozenset[Modality], frozenset[Modality], frozenset[str]]:
        """A local folder's real kind, so the router explains a misfit; hub ids keep the full set."""
        try:
            source = inspect_model(model, allow_pickle=True)
            kinds = speech_kinds(source.model_type, source.config.get("architectures")) if source.local else set()
        except (ImagineError, ImportError):
            kinds = set()
        if kinds == {ASR}:
            return self.inputs, frozenset({Modality.TEXT, Modality.SEGMENTS}), frozenset({"timestamps"})
        if kinds == {TTS}:
            return frozenset({Modality.TEXT}), frozenset({Modality.AUDIO}), frozenset({"seed"})
        return self.inputs, self.outputs, self.features

    def load(self, model: str, kind: str, device: str = "auto", dtype: str = "auto",
             allow_pickle: bool = False) -> _Loaded:
        """The pipeline doing `kind` ("asr" or "tts") with `model`, kept in the shared model cache."""
        source = inspect_model(model, allow_pickle=allow_pickle)
        if source.local:
            architectures = source.config.get("architectures")
            _check_kind(speech_kinds(source.model_type, architectures), kind, source.ref, source.model_type,
                        architectures)
        elif (missing := hub_model_missing(source.ref, self.id)) is not None:
            raise missing
        where = pick_device(device)
        torch_dtype = pick_dtype(dtype, where)
        key = (self.id, kind, source.ref, where, str(torch_dtype), allow_pickle)
        return model_cache().get(key, lambda: self._create(source, kind, where, torch_dtype, allow_pickle))  # type: ignore[no-any-return]

    def _create(self, source: ModelSource, kind: str, device: str, dtype: Any, allow_pickle: bool) -> _Loaded:
        try:
            from transformers import AutoConfig, pipeline
        except ImportError as exc:
            raise EngineUnavailable(f"hf-speech needs transformers: {exc}", hint=HF_EXTRA_HINT) from None
        try:
            config = AutoConfig.from_pretrained(source.ref)
            architectures = getattr(config, "architectures", None)
            _check_kind(speech_kinds(config.model_type, architectures), kind, source.ref, config.model_type,
                        architectures)  # before a hub download of the weights
            build: Any = pipeline  # typed per literal task name; ours is chosen at run time
            pipe = build(PIPELINE_TASK[kind], model=source.ref, device=device,
                         model_kwargs=hub_kwargs(source, allow_pickle), **{transformers_dtype_kwarg(): dtype})
        except ImagineError:
            raise
        except (OSError, ValueError, KeyError) as exc:
            raise hub_load_error(source, self.id, exc) from None
        return _Loaded(pipe, kind, config.model_type, device)

    # -- the request ------------------------------------------------------------------------------
    @staticmethod
    def _kind(request: Request) -> str:
        """What the request asks for: speech (want audio) or its text (want text or segments)."""
        if request.want == Modality.AUDIO:
            return TTS
        if request.want in (Modality.TEXT, Modality.SEGMENTS):
            return ASR
        raise InputError(f"hf-speech gives text (speech recognition) or audio (speech synthesis), not "
                         f"{request.want.value}", hint="use transcribe or speak")

    @staticmethod
    def _inputs(request: Request, kind: str) -> Audio | Video | str:
        """The one audio/video part to transcribe, or the text to speak, from the last user message."""
        message = last_user(request)
        refuse_other_parts(message, (Audio, Video, Text), engine="hf-speech",
                           takes="audio (to transcribe) or text (to speak)",
                           hint="attach an audio or video file, or give text")
        if kind == TTS:
            if message is not None and any(isinstance(p, (Audio, Video)) for p in message.parts):
                raise InputError("speech synthesis takes text, but the request holds audio",
                                 hint="use transcribe for audio, speak for text")
            text = message.text.strip() if message else ""
            if not text:
                raise InputError("nothing to speak: the text is empty")
            return text
        return user_parts(request, (Audio, Video), engine="hf-speech", needs="audio or video", one=True,
                          hint="attach an audio (WAV, FLAC, MP3, OGG) or video (MP4, WebM) file")[0]

    # -- recognition ------------------------------------------------------------------------------
    def _transcribe(self, loaded: _Loaded, part: Audio | Video, opts: TransformersSpeechOptions,
                    limits: Limits = DEFAULT_LIMITS) -> tuple[str, list[Segment], float]:
        """(text, segments, seconds of audio). Blocking: runs in a worker thread."""
        pipe = loaded.pipe
        rate = int(getattr(pipe.feature_extractor, "sampling_rate", 16000))
        samples, _ = part.samples(rate, limits=limits)
        duration = len(samples) / rate
        if not len(samples):
            raise InputError(f"{part.name or 'the audio'} holds no samples")
        whisper = loaded.model_type == "whisper"
        ctc = "ctc" in str(getattr(pipe, "type", ""))  # "ctc" or "ctc_with_lm"; Whisper is "seq2seq_whisper"
        if (opts.language or opts.task) and not whisper:
            raise InputError(f"the language and task options are for Whisper models, not {loaded.model_type}",
                             hint="drop -o language / -o task")
        kwargs: dict[str, Any] = {}
        generate: dict[str, Any] = {}
        if opts.language:
            generate["language"] = opts.language
        if opts.task:
            generate["task"] = opts.task
        if opts.max_tokens and not ctc:
            generate["max_new_tokens"] = opts.max_tokens
        if generate:
            kwargs["generate_kwargs"] = generate
        can_time = ctc or (whisper and getattr(pipe.model.generation_config, "no_timestamps_token_id", None) is not None)
        if (opts.timestamps or opts.word_timestamps) and can_time:
            kwargs["return_timestamps"] = "word" if ctc or opts.word_timestamps else True
        chunk = opts.chunk_length_s
        if chunk is None and whisper and duration > 30 and "return_timestamps" not in kwargs:
            chunk = 30.0  # Whisper's window; long-form decoding without timestamps needs chunks
        if chunk:
            kwargs["chunk_length_s"] = chunk
        try:
            with loaded.lock:
                out = pipe({"raw": samples, "sampling_rate": rate}, **kwargs)
        except ValueError as exc:  # e.g. a language the model does not know
            raise InputError(f"hf-speech could not transcribe: {str(exc).splitlines()[0][:200]}") from None
        text = str(out.get("text", "")).strip()
        return text, self._segments(out.get("chunks"), text, duration), duration

    @staticmethod
    def _segments(chunks: Any, text: str, duration: float) -> list[Segment]:
        """The pipeline's chunks as Segments: plain floats clamped to the audio (Whisper may leave the last
        end open, or overshoot on its 20 ms grid); without chunks, one segment for the whole text."""
        def at(value: Any, default: float) -> float:
            return round(min(max(float(value if value is not None else default), 0.0), duration), 3)

        if not chunks:
            return [Segment(0.0, round(duration, 3), text)] if text else []
        items, previous = [], 0.0
        for chunk in chunks:
            start, end = (tuple(chunk.get("timestamp") or (None, None)) + (None, None))[:2]
            start_s = at(start, previous)
            end_s = max(at(end, duration), start_s)
            piece = str(chunk.get("text", "")).strip()
            if piece:
                items.append(Segment(start_s, end_s, piece))
            previous = end_s
        return items

    # -- synthesis --------------------------------------------------------------------------------
    @staticmethod
    def _speak(loaded: _Loaded, text: str, seed: int) -> tuple[Any, int]:
        """(float32 mono samples, sampling rate). Blocking: runs in a worker thread."""
        import numpy as np

        with global_torch_rng(seed, loaded.device), loaded.lock:  # synthesis samples from torch's global RNG
            out = loaded.pipe(text)
        samples = np.asarray(out["audio"], dtype=np.float32)
        samples = samples.reshape(-1) if samples.ndim <= 1 or 1 in samples.shape else samples.mean(axis=0)
        return samples, int(out["sampling_rate"])

    # -- the one method ---------------------------------------------------------------------------
    async def stream(self, request: Request[TransformersSpeechOptions]) -> AsyncIterator[Event]:
        opts = request.options
        kind = self._kind(request)
        source = self._inputs(request, kind)
        loaded = await asyncio.to_thread(self.load, request.model, kind, opts.device, opts.dtype, opts.allow_pickle)
        if isinstance(source, str):
            seed = opts.seed if opts.seed is not None else secrets.randbits(31)
            samples, rate = await asyncio.to_thread(self._speak, loaded, source, seed)
            if not len(samples):
                raise UpstreamError(f"{request.model} produced no audio")
            yield PartOut(Audio.from_samples(samples, rate, name="speech.wav"))
            yield Usage(input_tokens=len(source), cost=0.0,
                        extra={"seconds": round(len(samples) / rate, 3), "seed": seed})
            yield Done("stop")
            return
        text, segments, duration = await asyncio.to_thread(self._transcribe, loaded, source, opts, request.limits)
        if text:
            yield TextDelta(text)
        yield PartOut(Segments(segments))
        yield Usage(cost=0.0, extra={"audio_seconds": round(duration, 3)})
        yield Done("stop")
