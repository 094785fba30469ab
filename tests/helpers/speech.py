"""Speech for the speech-engine tests: sentences synthesised with espeak-ng, trimmed to known bounds.

Synthesis runs in a child process — the `espeak-ng` command when the system has it, else a few lines of
ctypes over the library in the `espeakng_loader` wheel — so the tests never share libespeak-ng's
process-wide state with the espeak engine, and depend on nothing but espeak-ng itself.
"""

from __future__ import annotations

import functools
import io
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

RATE = 16000

# The child-process fallback: synthesise argv[1] with voice argv[2] at argv[3] words per minute, WAV to stdout.
_CTYPES_SYNTH = r"""
import array, ctypes, io, sys, wave
import espeakng_loader
lib = ctypes.CDLL(espeakng_loader.get_library_path())
pcm = array.array("h")
@ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
def on_audio(wav, count, events):
    if wav and count > 0:
        pcm.extend(wav[:count])
    return 0
rate = lib.espeak_Initialize(0x01, 0, espeakng_loader.get_data_path().encode(), 0)  # 0x01: retrieval mode
if rate <= 0:
    sys.exit("espeak_Initialize failed")
lib.espeak_SetSynthCallback(on_audio)
if lib.espeak_SetVoiceByName(sys.argv[2].encode()) != 0:
    sys.exit("unknown voice " + sys.argv[2])
lib.espeak_SetParameter(1, int(sys.argv[3]), 0)  # 1: espeakRATE, words per minute
text = sys.argv[1].encode()
lib.espeak_Synth(ctypes.c_char_p(text), ctypes.c_size_t(len(text) + 1), 0, 0, 0, 0, None, None)
lib.espeak_Synchronize()
buf = io.BytesIO()
with wave.open(buf, "wb") as w:
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(rate); w.writeframes(pcm.tobytes())
sys.stdout.buffer.write(buf.getvalue())
"""


def have_espeak() -> bool:
    if shutil.which("espeak-ng"):
        return True
    try:
        import espeakng_loader  # noqa: F401
    except ImportError:
        return False
    return True


needs_espeak = pytest.mark.skipif(not have_espeak(), reason="needs espeak-ng (apt install espeak-ng, or "
                                                             "pip install espeakng-loader)")


@functools.lru_cache(maxsize=None)
def synth_wav(text: str, voice: str = "en-us", wpm: int = 140) -> bytes:
    """WAV bytes of `text` spoken by espeak-ng (cached: synthesis is deterministic)."""
    binary = shutil.which("espeak-ng")
    if binary:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "speech.wav"
            subprocess.run([binary, "-v", voice, "-s", str(wpm), "-w", str(out), text], check=True,
                           capture_output=True, timeout=60)
            return out.read_bytes()
    done = subprocess.run([sys.executable, "-c", _CTYPES_SYNTH, text, voice, str(wpm)], capture_output=True,
                          timeout=60)
    if done.returncode != 0 or not done.stdout:
        raise RuntimeError(f"espeak-ng synthesis failed: {done.stderr.decode(errors='replace')[-500:]}")
    return done.stdout


def speech(text: str, voice: str = "en-us", wpm: int = 140) -> np.ndarray:
    """`text` spoken at 16 kHz, float32 mono, as imagine's own decoder resamples it."""
    from imagine import Audio

    samples, rate = Audio(synth_wav(text, voice, wpm)).samples(RATE)
    assert rate == RATE
    return samples


def trim(samples: np.ndarray, level: float = 0.01) -> np.ndarray:
    """`samples` without the leading and trailing stretch quieter than `level`, so speech starts at
    sample 0 and ends at the last sample: the true boundaries are then known exactly."""
    loud = np.flatnonzero(np.abs(samples) > level)
    return samples[loud[0]:loud[-1] + 1] if len(loud) else samples[:0]


def noise(seconds: float, dbfs: float = -50.0, seed: int = 0) -> np.ndarray:
    """Gaussian noise whose RMS is `dbfs` below full scale."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(seconds * RATE)) * 10 ** (dbfs / 20)).astype(np.float32)


def wav_part(samples: np.ndarray, name: str = "speech.wav") -> Any:
    """An imagine Audio part (16-bit WAV) of 16 kHz samples."""
    from imagine import Audio

    return Audio.from_samples(samples, RATE, name=name)


def video_with_sound(samples: np.ndarray, container: str = "mp4", fps: int = 10) -> bytes:
    """A video of black frames with `samples` as its sound track, encoded with PyAV:
    mp4 = MPEG-4 part 2 video + AAC, webm = VP8 + Opus."""
    import av

    video_codec, audio_codec, audio_rate = {"mp4": ("mpeg4", "aac", RATE),
                                             "webm": ("libvpx", "libopus", 48000)}[container]
    if audio_rate != RATE:  # Opus only takes 48 kHz: resample with a plain linear interpolation
        n = int(len(samples) * audio_rate / RATE)
        samples = np.interp(np.arange(n) * RATE / audio_rate, np.arange(len(samples)), samples).astype(np.float32)
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        vstream: Any = out.add_stream(video_codec, rate=fps)
        vstream.width, vstream.height, vstream.pix_fmt = 64, 64, "yuv420p"
        astream: Any = out.add_stream(audio_codec, rate=audio_rate)
        astream.layout = "mono"
        black = np.zeros((64, 64, 3), np.uint8)
        for _ in range(int(len(samples) / audio_rate * fps) + 1):
            out.mux(vstream.encode(av.VideoFrame.from_ndarray(black, format="rgb24")))
        out.mux(vstream.encode(None))
        size = astream.codec_context.frame_size or 1024
        for first in range(0, len(samples), size):
            piece = np.pad(samples[first:first + size], (0, max(0, first + size - len(samples))))
            sound = av.AudioFrame.from_ndarray(piece[None, :].astype(np.float32), format="fltp", layout="mono")
            sound.sample_rate, sound.pts = audio_rate, first
            out.mux(astream.encode(sound))
        out.mux(astream.encode(None))
    return buf.getvalue()


_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen " \
        "sixteen seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def _spell(number: int) -> str:
    """English words for 0..9999, so that "12" and "twelve" count as the same word sequence."""
    if number < 20:
        return _ONES[number]
    if number < 100:
        tens, ones = divmod(number, 10)
        return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")
    if number < 1000:
        hundreds, rest = divmod(number, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {_spell(rest)}" if rest else "")
    thousands, rest = divmod(number, 1000)
    return f"{_spell(thousands)} thousand" + (f" {_spell(rest)}" if rest else "")


def _words(text: str, spell_numbers: bool = True) -> list[str]:
    """Lower-case words without punctuation; with `spell_numbers`, numbers written in digits are spelled out
    (Whisper's English normaliser does the same), so a transcript is not penalised for "7" for "seven"."""
    if spell_numbers:
        text = re.sub(r"\d+", lambda m: f" {_spell(int(m.group()))} " if len(m.group()) <= 4 else m.group(), text)
    return re.sub(r"[^\w\s']", " ", text.lower()).replace("'", "").split()


def wer(reference: str, hypothesis: str, *, spell_numbers: bool = True) -> float:
    """Word error rate: word-level edit distance over the reference length, ignoring case and punctuation
    (and, unless `spell_numbers` is off, how numbers are written)."""
    ref, hyp = _words(reference, spell_numbers), _words(hypothesis, spell_numbers)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / max(1, len(ref))
