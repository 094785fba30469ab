"""Media decoding and encoding behind the parts: audio samples, video frames, WAV bytes.

Everything decodes through PyAV (FFmpeg), which reads WAV, FLAC, OGG/Opus, MP3, M4A and the audio
track inside any video container, and resamples in the same pass. Limits are enforced *while*
decoding — a tiny file that expands to hours of audio or thousands of frames is stopped as soon as it
crosses the limit, before the memory is spent.
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

from ..errors import EngineUnavailable, InputError, LimitExceeded
from .limits import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    import numpy as np

__all__ = ["VideoInfo", "check_wav_complete", "decode_audio", "encode_wav", "iter_audio", "iter_frames", "video_info"]


def _av() -> Any:
    try:
        import av
    except ImportError:
        raise EngineUnavailable("decoding audio and video needs PyAV", hint="pip install av") from None
    return av


def _open(data: bytes, name: str) -> Any:
    av = _av()
    try:
        return av.open(io.BytesIO(data))
    except Exception as exc:  # PyAV raises its own error tree (InvalidDataError, ...)
        raise InputError(f"{name} could not be decoded: {exc}", hint="check the file is complete and valid") from None


_UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # streaming writers leave the size unset when they cannot seek back


def check_wav_complete(data: bytes, name: str = "audio") -> None:
    """Refuse a RIFF/WAVE file whose `data` chunk promises more bytes than the file holds.

    FFmpeg quietly decodes what is there, so a cut-off recording would otherwise transcribe to a few
    words (or nothing) with no sign that most of it is missing. Sizes left unset by streaming writers
    (0 or 0xFFFFFFFF) are accepted as "until the end of the file"."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return
    pos, block_align, rate = 12, 0, 0
    while pos + 8 <= len(data):
        chunk, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        body = pos + 8
        if chunk == b"fmt " and size >= 16 and body + 16 <= len(data):
            rate = int.from_bytes(data[body + 4:body + 8], "little")
            block_align = int.from_bytes(data[body + 12:body + 14], "little")
        if chunk == b"data":
            held = len(data) - body
            if size in _UNKNOWN_SIZES or held >= size:
                return
            per_second = rate * block_align
            if per_second > 0:
                promised, found = f"{size / per_second:.2f} s", f"{held / per_second:.2f} s"
            else:
                promised, found = f"{size:,} bytes", f"{held:,} bytes"
            raise InputError(f"{name} is truncated: its WAV header promises {promised} of audio "
                             f"({size:,} bytes) but the file holds only {found} ({held:,} bytes)",
                             hint="the recording or download was cut off; use the complete file")
        pos = body + size + (size & 1)  # chunks are padded to an even size


def _resampled(data: bytes, rate: int | None, mono: bool, limits: Limits, name: str) -> Iterator[Any]:
    """The audio track as (rate, resampled float32 arrays of shape (channels, n)), decoded one container
    frame at a time, stopped as soon as it runs past `limits.max_audio_seconds`. The first item is the
    output rate."""
    check_wav_complete(data, name)
    av = _av()
    container = _open(data, name)
    try:
        streams = container.streams.audio
        if not streams:
            raise InputError(f"{name} has no audio track")
        stream = streams[0]
        out_rate = rate or stream.rate or stream.codec_context.sample_rate
        yield out_rate
        resampler = av.AudioResampler(format="fltp", layout="mono" if mono else stream.layout.name, rate=out_rate)
        max_samples = int(limits.max_audio_seconds * out_rate)
        total = 0
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    array = out.to_ndarray()
                    total += array.shape[-1]
                    if total > max_samples:
                        raise LimitExceeded(f"{name} is longer than the limit of {limits.max_audio_seconds:,.0f} s",
                                            hint="raise it with IMAGINE_MAX_AUDIO_SECONDS")
                    yield array
            for out in resampler.resample(None):
                yield out.to_ndarray()
        except av.FFmpegError as exc:
            raise InputError(f"{name} could not be decoded: {exc}", hint="check the file is complete and valid") from None
    finally:
        container.close()


def decode_audio(data: bytes, *, rate: int | None = 16000, mono: bool = True, limits: Limits = DEFAULT_LIMITS,
                 name: str = "audio") -> tuple["np.ndarray", int]:
    """Decode to float32 samples in [-1, 1] (shape (n,) if mono else (channels, n)) at `rate` Hz
    (None keeps the file's rate). Works on audio files and on the audio track of video files.

    This holds the whole recording; `iter_audio` reads long audio in blocks of bounded size."""
    import numpy as np

    arrays = _resampled(data, rate, mono, limits, name)
    out_rate = next(arrays)
    chunks = list(arrays)
    if not chunks:
        samples = np.zeros((1, 0), dtype=np.float32)
    else:
        samples = np.concatenate(chunks, axis=-1).astype(np.float32, copy=False)
    return (samples[0] if mono else samples), out_rate


def iter_audio(data: bytes, *, rate: int = 16000, block: int, limits: Limits = DEFAULT_LIMITS,
               name: str = "audio") -> Iterator["np.ndarray"]:
    """Mono float32 samples at `rate` Hz in blocks of exactly `block` samples (the last one shorter, never
    empty), decoded as they are needed: memory stays flat however long the recording is."""
    import numpy as np

    arrays = _resampled(data, rate, True, limits, name)
    next(arrays)
    buffer = np.empty(block, np.float32)
    filled = 0
    for array in arrays:
        samples = array[0]
        while len(samples):
            take = min(block - filled, len(samples))
            buffer[filled:filled + take] = samples[:take]
            filled, samples = filled + take, samples[take:]
            if filled == block:
                yield buffer.copy()
                filled = 0
    if filled:
        yield buffer[:filled].copy()


def encode_wav(samples: "np.ndarray", rate: int) -> bytes:
    """16-bit PCM WAV bytes from float samples in [-1, 1] ((n,) mono or (channels, n))."""
    import numpy as np

    array = np.asarray(samples, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    pcm = (np.clip(array, -1.0, 1.0) * 32767.0).round().astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wav:
        wav.setnchannels(array.shape[0])
        wav.setsampwidth(2)
        wav.setframerate(int(rate))
        wav.writeframes(pcm.T.tobytes())
    return buf.getvalue()


@dataclass(frozen=True)
class VideoInfo:
    duration: float  # seconds
    fps: float
    width: int
    height: int
    has_audio: bool


def video_info(data: bytes, name: str = "video") -> VideoInfo:
    container = _open(data, name)
    try:
        if not container.streams.video:
            raise InputError(f"{name} has no video track")
        stream = container.streams.video[0]
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        else:
            duration = 0.0
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        return VideoInfo(duration, fps, stream.codec_context.width, stream.codec_context.height,
                         bool(container.streams.audio))
    finally:
        container.close()


def iter_frames(data: bytes, *, every: float = 1.0, limits: Limits = DEFAULT_LIMITS,
                name: str = "video") -> Iterator[tuple[float, Any]]:
    """Yield (time in seconds, PIL image) for one frame every `every` seconds (the first at t=0)."""
    container = _open(data, name)
    try:
        if not container.streams.video:
            raise InputError(f"{name} has no video track")
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > limits.max_pixels:
            raise LimitExceeded(f"{name} frames are {width}x{height}, over the limit of {limits.max_pixels:,} pixels",
                                hint="raise it with IMAGINE_MAX_PIXELS")
        stream.thread_type = "AUTO"
        next_time, kept = 0.0, 0
        for frame in container.decode(stream):
            if frame.time is None or frame.time + 1e-6 < next_time:
                continue
            kept += 1
            if kept > limits.max_video_frames:
                raise LimitExceeded(f"{name} needs more than {limits.max_video_frames:,} sampled frames",
                                    hint="sample less often, or raise IMAGINE_MAX_VIDEO_FRAMES")
            yield float(frame.time), frame.to_image()
            next_time = frame.time + every
    finally:
        container.close()
