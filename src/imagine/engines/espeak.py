"""`espeak`: offline text to speech through libespeak-ng, the build shipped in the `espeakng-loader` wheel.

The model is the synthesiser itself (`espeak-ng`); the voice is an option. A voice may be named by its
espeak name ("English (Great Britain)"), identifier ("gmw/en"), file name ("en-US") or language code
("en-gb"), optionally with a variant ("en-us+f3"). Output is a 22,050 Hz mono 16-bit WAV part.

Why a helper process: libespeak-ng keeps synthesis state in C globals (pitch-flutter phase, wave phase,
echo buffer, noise generator) that carry over from one utterance to the next, so speaking the same text
twice in one process gives slightly different samples. For output that depends only on the request, the
library is initialised once in a small helper process that never speaks itself; each request runs in a
fork of it, which starts from the same pristine state (and a crash there cannot take this process down).
Where fork is missing (Windows) the library runs in-process instead, serialised by a lock.
"""

from __future__ import annotations

import asyncio
import ctypes
import difflib
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO, Any, AsyncIterator, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from ..engine import Engine, Request
from ..errors import EngineUnavailable, InputError, UpstreamError
from ..events import Done, Event, PartOut, Usage, pcm_delta
from ..parts import Audio, Modality
from ._support.inputs import last_user

__all__ = ["EspeakEngine", "EspeakOptions"]

MODEL = "espeak-ng"
AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_DONT_EXIT = 0x8000  # without it a missing data folder calls exit(1) on the whole process
CHARS_UTF8 = 1
POS_CHARACTER = 1
RATE, VOLUME, PITCH, WORDGAP = 1, 2, 3, 7  # espeak_PARAMETER
NOISE_SEED = 1  # breathy and klatt voices draw noise from a generator seeded by the clock at start-up
MAX_GAP_UNITS = 30_000  # a sanity bound; pauses grow linearly up to here (10 s needs ~7,600 at 350 wpm)
GENDERS = {1: "male", 2: "female"}


class _Voice(ctypes.Structure):
    """espeak_VOICE from speak_lib.h; `languages` is packed bytes, so it is read by address."""

    _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_void_p), ("identifier", ctypes.c_char_p),
                ("gender", ctypes.c_ubyte), ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte),
                ("xx1", ctypes.c_ubyte), ("score", ctypes.c_int), ("spare", ctypes.c_void_p)]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


def _data_path() -> str:
    import espeakng_loader

    try:
        path = espeakng_loader.get_data_path()
    except RuntimeError as exc:
        raise EngineUnavailable(f"espeak-ng data is missing: {exc}", hint="pip install --force-reinstall espeakng-loader") from None
    if not (Path(path) / "phontab").is_file():
        raise EngineUnavailable(f"espeak-ng data at {path} is incomplete (no phontab)",
                                hint="pip install --force-reinstall espeakng-loader")
    return path


class _Espeak:
    """libespeak-ng loaded with ctypes and initialised: at most one per process."""

    def __init__(self) -> None:
        import espeakng_loader

        data = _data_path()
        try:
            lib = ctypes.CDLL(espeakng_loader.get_library_path())
        except OSError as exc:
            raise EngineUnavailable(f"libespeak-ng could not be loaded: {exc}",
                                    hint="pip install --force-reinstall espeakng-loader") from None
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        self.lib = lib
        self.rate = int(lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data.encode(), INITIALIZE_DONT_EXIT))
        if self.rate <= 0:
            raise EngineUnavailable(f"espeak_Initialize failed ({self.rate}) with data at {data}")
        self._chunks: list[bytes] = []
        self._callback = _SynthCallback(self._collect)  # kept here: the library holds only a raw pointer
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav: Any, count: int, events: Any) -> int:
        """Called by espeak_Synth for each block of samples (and once with NULL at the end); 0 = go on."""
        if wav and count > 0:
            self._chunks.append(ctypes.string_at(wav, count * 2))
        return 0

    def voices(self) -> list[dict[str, Any]]:
        """Every voice espeak lists (variants and mbrola voices excluded), languages with priorities."""
        found = []
        table = self.lib.espeak_ListVoices(None)
        for i in range(100_000):
            if not table[i]:
                break
            voice = table[i].contents
            languages, at = [], voice.languages
            while at and (priority := ctypes.string_at(at, 1)[0]) != 0:
                language = ctypes.string_at(at + 1)  # NUL-terminated after the priority byte
                languages.append([priority, language.decode("utf-8", "replace")])
                at += len(language) + 2
            found.append({"name": (voice.name or b"").decode("utf-8", "replace"),
                          "identifier": (voice.identifier or b"").decode("utf-8", "replace"),
                          "languages": languages, "gender": int(voice.gender)})
        return found

    def speak(self, text: str, voice: str, rate: int, pitch: int, volume: int, gap_ms: int) -> bytes:
        """16-bit little-endian mono PCM for `text`; the voice must already be resolved."""
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise LookupError(f"espeak could not load voice {voice!r}")
        for param, value in ((RATE, rate), (PITCH, pitch), (VOLUME, volume)):
            self.lib.espeak_SetParameter(param, value, 0)
        self.lib.espeak_SetParameter(WORDGAP, self._gap_units(gap_ms), 0)
        if hasattr(self.lib, "espeak_ng_SetRandSeed"):
            self.lib.espeak_ng_SetRandSeed(ctypes.c_long(NOISE_SEED))
        return self._synth(text)

    def _synth(self, text: str) -> bytes:
        self._chunks = []
        data = text.encode("utf-8") + b"\0"
        status = self.lib.espeak_Synth(data, len(data), 0, POS_CHARACTER, 0, CHARS_UTF8, None, None)
        if status != 0:
            raise RuntimeError(f"espeak_Synth returned error {status}")
        pcm, self._chunks = b"".join(self._chunks), []
        return pcm

    def _gap_units(self, gap_ms: int) -> int:
        """espeak's word gap is in 10 ms steps only at 175 wpm and shrinks non-linearly as the rate rises
        (to a sixth at 350 wpm), so measure the pause it adds at this voice and rate, and solve for gap_ms."""
        if gap_ms <= 0:
            return 0
        added = []
        for units in (0, 10, 60):
            self.lib.espeak_SetParameter(WORDGAP, units, 0)
            added.append(len(self._synth("a")) * 500 / self.rate)  # one word, one gap (after it); bytes -> ms
        slope, fixed = (added[2] - added[1]) / 50, added[1] - added[0]
        if slope <= 0:
            return max(1, round(gap_ms / 10))
        return max(1, min(MAX_GAP_UNITS, round(10 + (gap_ms - fixed) / slope)))


def _dispatch(espeak: _Espeak, request: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """Answer one request: a header and a body. Shared by the forked child and the in-process path."""
    try:
        if request["op"] == "voices":
            return {"ok": True, "voices": espeak.voices()}, b""
        return {"ok": True}, espeak.speak(**request["args"])
    except LookupError as exc:
        return {"ok": False, "kind": "InputError", "message": str(exc)}, b""
    except Exception as exc:
        return {"ok": False, "kind": "UpstreamError", "message": f"{type(exc).__name__}: {exc}"}, b""


def _in_fork(espeak: _Espeak, request: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """Run `_dispatch` in a child forked from the never-speaking helper, so each request starts fresh."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: answer, hand the bytes back, leave without running any Python clean-up
        try:
            os.close(read_fd)
            header, body = _dispatch(espeak, request)
            with os.fdopen(write_fd, "wb") as fh:
                fh.write(json.dumps(header).encode() + b"\n" + body)
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as fh:
        blob = fh.read()
    _, status = os.waitpid(pid, 0)
    line, _, body = blob.partition(b"\n")
    if not line:
        return {"ok": False, "kind": "UpstreamError", "message": f"the espeak process died (wait status {status})"}, b""
    return json.loads(line), body


def _send(out: IO[bytes], header: dict[str, Any], body: bytes = b"") -> None:
    out.write(json.dumps({**header, "bytes": len(body)}).encode() + b"\n" + body)
    out.flush()


def _serve() -> None:
    """Main loop of the helper process: initialise once, then answer JSON lines on stdin in forks."""
    out = os.fdopen(os.dup(1), "wb")  # the protocol gets a private copy of stdout;
    os.dup2(2, 1)  # stray prints (Python or C) go to stderr instead of corrupting it
    try:
        espeak = _Espeak()
    except Exception as exc:
        _send(out, {"ok": False, "kind": "EngineUnavailable", "message": str(exc)})
        return
    _send(out, {"ok": True, "rate": espeak.rate})
    for line in sys.stdin.buffer:
        _send(out, *_in_fork(espeak, json.loads(line)))


class _Helper:
    """The parent's end of the helper process; callers hold EspeakEngine._lock around `call`."""

    def __init__(self) -> None:
        self.stderr = tempfile.TemporaryFile()  # a file, not a pipe: nobody has to drain it
        root = str(Path(__file__).resolve().parents[2])  # the folder holding the `imagine` package
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from imagine.engines.espeak import _serve; _serve()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, env=env)
        hello, _ = self._receive()
        self.rate = int(hello["rate"])

    def _receive(self) -> tuple[dict[str, Any], bytes]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            self.stderr.seek(0)
            tail = self.stderr.read().decode("utf-8", "replace").strip().splitlines()[-3:]
            raise UpstreamError(f"the espeak helper process exited ({self.proc.returncode})"
                                + (f": {' / '.join(tail)}" if tail else ""))
        header = json.loads(line)
        body = self.proc.stdout.read(header["bytes"]) if header["bytes"] else b""
        if len(body) != header["bytes"]:
            raise UpstreamError(f"the espeak helper process sent {len(body)} of {header['bytes']} bytes")
        if not header["ok"] and header.get("kind") == "EngineUnavailable":
            raise EngineUnavailable(header["message"])
        return header, body

    def call(self, request: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # it died: _receive reports why, from its stderr
        return self._receive()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


class EspeakOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    voice: str = Field(default="en-us", min_length=1, max_length=50,
                       description="name, identifier or language code, optionally +variant (en-us+f3)")
    rate: int = Field(default=175, ge=80, le=450, description="words per minute")
    pitch: int = Field(default=50, ge=0, le=99, description="base pitch, 50 = the voice's normal")
    volume: int = Field(default=100, ge=0, le=200, description="amplitude, 100 = normal")
    gap_ms: int = Field(default=0, ge=0, le=10_000, description="extra pause between words, in ms")


class EspeakEngine(Engine[EspeakOptions]):
    id = "espeak"
    locality = "local"
    inputs = frozenset({Modality.TEXT})
    outputs = frozenset({Modality.AUDIO})
    features = frozenset({"voices"})
    default_model = MODEL
    description = "Offline text to speech with espeak-ng (100+ languages; robotic but tiny and instant)"
    requires = ("espeakng_loader",)
    extra = "speech"
    package = "espeakng-loader"

    Options = EspeakOptions

    _lock: ClassVar[threading.Lock] = threading.Lock()  # one request at a time: the library is not thread-safe
    _helper: ClassVar[_Helper | None] = None
    _local: ClassVar[_Espeak | None] = None  # used where os.fork is missing
    _voices: ClassVar[list[dict[str, Any]] | None] = None  # with language priorities, as the library gives them

    def check_model(self, model: str) -> None:
        if model != MODEL:
            raise InputError(f"espeak has one model, {MODEL!r}, not {model!r}",
                             hint=f"pick a voice with -o voice={model} (list them with `imagine speak --voices`)")

    # -- the library, wherever it runs ------------------------------------------------------------
    @classmethod
    def _call(cls, request: dict[str, Any]) -> tuple[dict[str, Any], bytes, int]:
        """Send one request to the library (blocking): (header, body, sample rate)."""
        with cls._lock:
            if hasattr(os, "fork") and sys.executable:
                if cls._helper is None or not cls._helper.alive:
                    cls._helper = _Helper()
                header, body = cls._helper.call(request)
                rate = cls._helper.rate
            else:
                if cls._local is None:
                    cls._local = _Espeak()
                header, body = _dispatch(cls._local, request)
                rate = cls._local.rate
        if not header["ok"]:
            raise (InputError if header.get("kind") == "InputError" else UpstreamError)(header["message"])
        return header, body, rate

    @classmethod
    def _voice_table(cls) -> list[dict[str, Any]]:
        if cls._voices is None:
            cls._voices = cls._call({"op": "voices"})[0]["voices"]
        return cls._voices

    def list_voices(self) -> list[dict[str, Any]]:
        """Every voice: {"name", "identifier", "languages", "gender"}; any of the first three selects it."""
        return [{"name": v["name"], "identifier": v["identifier"], "languages": [lang for _, lang in v["languages"]],
                 "gender": GENDERS.get(v["gender"], "unknown")} for v in self._voice_table()]

    def list_variants(self) -> list[str]:
        """Voice variants (pitch, formants, breathiness) that a voice takes as a suffix: en-us+f3."""
        return sorted(p.name for p in (Path(_data_path()) / "voices" / "!v").iterdir() if p.is_file())

    def resolve_voice(self, wanted: str) -> str:
        """The identifier(+variant) espeak should load for `wanted`, or an InputError with close matches.

        Resolved here rather than by espeak, which accepts identifiers but not language codes such as
        en-gb, and silently ignores a variant it cannot find."""
        base, plus, variant = wanted.strip().partition("+")
        key, voices = base.strip().lower(), self._voice_table()
        found = (next((v for v in voices if v["identifier"].lower() == key), None)
                 or next((v for v in voices if v["name"].lower() == key), None)
                 or next((v for v in voices if v["identifier"].lower().rsplit("/", 1)[-1] == key), None))
        if found is None:
            ranked = [(prio, i) for i, v in enumerate(voices) for prio, lang in v["languages"] if lang.lower() == key]
            found = voices[min(ranked)[1]] if ranked else None
        if found is None:
            names = [s for v in voices for s in (v["name"], v["identifier"], *(lang for _, lang in v["languages"]))]
            raise self._unknown(f"unknown espeak voice {base.strip()!r}", key, names)
        if not plus:
            return str(found["identifier"])
        variants = {name.lower(): name for name in self.list_variants()}
        if variant.strip().lower() not in variants:
            raise self._unknown(f"unknown espeak voice variant {variant.strip()!r} in {wanted!r}",
                                variant.strip().lower(), list(variants.values()))
        return f"{found['identifier']}+{variants[variant.strip().lower()]}"

    @staticmethod
    def _unknown(message: str, key: str, choices: list[str]) -> InputError:
        by_lower = {c.lower(): c for c in reversed(choices)}
        close = [by_lower[c] for c in difflib.get_close_matches(key, list(by_lower), n=4, cutoff=0.5)]
        hint = f"close matches: {', '.join(close)}; " if close else ""
        return InputError(message, hint=f"{hint}run `imagine speak --voices` to list them all")

    # -- the one method ---------------------------------------------------------------------------
    async def stream(self, request: Request[EspeakOptions]) -> AsyncIterator[Event]:
        opts = request.options
        message = last_user(request, or_last=True)
        text = message.text.replace("\0", " ").strip() if message else ""  # a NUL would end the C string early
        if not text:
            raise InputError("nothing to speak: the text is empty")
        voice = await asyncio.to_thread(self.resolve_voice, opts.voice)
        args = dict(text=text, voice=voice, rate=opts.rate, pitch=opts.pitch, volume=opts.volume,
                    gap_ms=opts.gap_ms)
        _, pcm, rate = await asyncio.to_thread(self._call, {"op": "speak", "args": args})
        if not pcm:
            raise UpstreamError(f"espeak produced no audio for voice {voice!r}")
        import numpy as np

        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32767.0  # exact round trip to WAV
        sound = np.flatnonzero(samples)
        if len(sound):  # espeak puts the word gap after the last word too: keep 10 ms of it, as without one
            samples = samples[:sound[-1] + 1 + rate // 100]
        yield pcm_delta(samples, rate)  # all at once: espeak-ng makes the whole text in one call
        yield PartOut(Audio.from_samples(samples, rate, name="speech.wav"))
        yield Usage(input_tokens=len(text), output_tokens=0, cost=0.0, extra={"seconds": len(samples) / rate})
        yield Done("stop")
