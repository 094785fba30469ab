"""media/encode.py: every format this FFmpeg can write decodes back to audio of the same length and pitch."""

from __future__ import annotations

import numpy as np
import pytest

from imagine.errors import InputError
from imagine.media.decode import decode_audio
from imagine.media.encode import AUDIO_FORMATS, PCM_RATE, audio_formats, encode_audio

RATE = 22050


def tone(seconds: float = 1.0, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def pitch(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()])


@pytest.mark.parametrize("fmt", [f for f in AUDIO_FORMATS if f != "pcm"])
def test_round_trip_keeps_length_and_pitch(fmt):
    if audio_formats()[fmt] is not None:
        pytest.skip(f"{fmt}: {audio_formats()[fmt]}")
    samples, rate = decode_audio(encode_audio(tone(), RATE, fmt), rate=None)
    assert 0.98 < len(samples) / rate < 1.1  # lossy codecs pad to whole frames
    assert abs(pitch(samples, rate) - 440) < 5


def test_pcm_is_headerless_16_bit_at_24khz():
    data = encode_audio(tone(), RATE, "pcm")
    pcm = np.frombuffer(data, "<i2").astype(np.float32) / 32767
    assert len(pcm) == PCM_RATE and abs(pitch(pcm, PCM_RATE) - 440) < 5


def test_unknown_format_names_the_choices():
    with pytest.raises(InputError, match="unknown audio format 'midi'"):
        encode_audio(tone(), RATE, "midi")
