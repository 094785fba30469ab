"""Encode samples into the audio formats clients ask for: WAV, raw PCM, MP3 and Opus (in Ogg), AAC and
FLAC.

WAV and PCM need nothing but numpy; the compressed formats go through PyAV, whose FFmpeg build decides
what exists (MP3 needs libmp3lame or FFmpeg's own mp3 encoder). `audio_formats()` says what this machine
can write, so a caller refuses an unavailable format up front instead of failing half way."""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from .decode import encode_wav

if TYPE_CHECKING:
    import numpy as np

PCM_RATE = 24000  # raw PCM has no header to say its rate; OpenAI's is 16-bit mono at 24 kHz

__all__ = ["AUDIO_FORMATS", "PCM_RATE", "AudioFormat", "audio_formats", "encode_audio"]


@dataclass(frozen=True)
class AudioFormat:
    """One output format: its MIME type, PyAV's container and encoder names (None: written by hand), and
    the sample rates the encoder takes (None: any)."""

    name: str
    mime: str
    container: str | None = None
    codecs: tuple[str, ...] = ()
    rates: tuple[int, ...] | None = None


AUDIO_FORMATS: dict[str, AudioFormat] = {f.name: f for f in (
    AudioFormat("wav", "audio/wav"),
    AudioFormat("pcm", "audio/pcm", rates=(PCM_RATE,)),  # headerless: OpenAI's clients assume 24 kHz
    AudioFormat("mp3", "audio/mpeg", "mp3", ("libmp3lame", "mp3"), (44100, 48000, 32000, 22050, 24000, 16000)),
    AudioFormat("opus", "audio/ogg", "ogg", ("libopus", "opus"), (48000, 24000, 16000, 12000, 8000)),
    AudioFormat("aac", "audio/aac", "adts", ("aac",), None),
    AudioFormat("flac", "audio/flac", "flac", ("flac",), None),
)}


def _encoder(fmt: AudioFormat) -> str | None:
    """The first of the format's encoders this FFmpeg build has."""
    import av

    for name in fmt.codecs:
        try:
            av.codec.Codec(name, "w")
        except Exception:  # av raises UnknownCodecError (or ValueError in older versions)
            continue
        return name
    return None


@functools.lru_cache(maxsize=1)
def audio_formats() -> dict[str, str | None]:
    """{format: None when it can be written here, else why not}; computed once per process."""
    out: dict[str, str | None] = {}
    for fmt in AUDIO_FORMATS.values():
        if not fmt.codecs:
            out[fmt.name] = None
            continue
        try:
            found = _encoder(fmt)
        except ImportError:
            out[fmt.name] = "PyAV is not installed"
            continue
        out[fmt.name] = None if found else f"this FFmpeg build has no {' or '.join(fmt.codecs)} encoder"
    return out


def _resample(samples: "np.ndarray", rate: int, to: int) -> "np.ndarray":
    """Linear resampling: enough for speech handed to a lossy encoder that needs a rate it supports."""
    import numpy as np

    if rate == to or len(samples) == 0:
        return samples
    n = max(1, int(round(len(samples) * to / rate)))
    return np.interp(np.arange(n) * (rate / to), np.arange(len(samples)), samples).astype(np.float32)


def encode_audio(samples: "np.ndarray", rate: int, format: str) -> bytes:
    """Mono float32 samples in [-1, 1] at `rate` Hz as a file in `format` (a key of AUDIO_FORMATS)."""
    import numpy as np

    fmt = AUDIO_FORMATS.get(format)
    if fmt is None:
        raise InputError(f"unknown audio format {format!r}", hint="one of " + ", ".join(AUDIO_FORMATS))
    mono = np.asarray(samples, dtype=np.float32)
    if mono.ndim > 1:
        mono = mono.mean(axis=0)
    if fmt.name == "wav":
        return encode_wav(mono, rate)
    if fmt.name == "pcm":
        mono = _resample(mono, rate, PCM_RATE)
        return (np.clip(mono, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()
    why = audio_formats()[fmt.name]
    if why is not None:
        raise InputError(f"cannot write {fmt.name}: {why}", hint="ask for wav or pcm")
    return _encode_av(mono, rate, fmt)


def _encode_av(samples: "np.ndarray", rate: int, fmt: AudioFormat) -> bytes:
    import av
    import numpy as np

    out_rate = rate if fmt.rates is None or rate in fmt.rates else min(fmt.rates, key=lambda r: (r < rate, abs(r - rate)))
    samples = _resample(samples, rate, out_rate)
    codec = _encoder(fmt)
    assert codec is not None
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt.container) as container:
        stream: Any = container.add_stream(codec, rate=out_rate)
        stream.layout = "mono"
        if fmt.name == "mp3":
            stream.bit_rate = 64_000
        sample_format = stream.codec_context.format.name if stream.codec_context.format else "fltp"
        size = stream.codec_context.frame_size or 1024
        for first in range(0, len(samples), size):
            piece = samples[first:first + size]
            if len(piece) < size and stream.codec_context.frame_size:
                piece = np.pad(piece, (0, size - len(piece)))  # fixed-size encoders need whole frames
            frame = av.AudioFrame.from_ndarray(piece[None, :].astype(np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = out_rate, first
            if sample_format != "fltp":
                frame = _reformat(frame, sample_format, out_rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buf.getvalue()


def _reformat(frame: Any, sample_format: str, rate: int) -> Any:
    """The frame in the encoder's sample format (libmp3lame takes s16p or fltp, flac s16 or s32)."""
    import av

    resampler = av.AudioResampler(format=sample_format, layout="mono", rate=rate)
    out = resampler.resample(frame)
    return out[0]
