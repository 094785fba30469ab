"""Decoding audio and video through PyAV, with limits enforced while decoding."""

from __future__ import annotations

import io
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image as PILImage

from imagine import Audio, Image, InputError, LimitExceeded, Video, load_part
from imagine.parts import Limits

from ..helpers.media import make_video, slide


def tone(seconds: float, rate: int = 16000, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def flac_bytes(samples: np.ndarray, rate: int) -> bytes:
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="flac") as container:
        stream = container.add_stream("flac", rate=rate)
        stream.layout = "mono"
        pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16)[None, :]
        for start in range(0, pcm.shape[1], 4096):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[:, start:start + 4096]), format="s16",
                                               layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def test_wav_round_trip_and_resampling():
    audio = Audio.from_samples(tone(1.0, 22050), 22050)
    assert audio.mime == "audio/wav"
    samples, rate = audio.samples(rate=None)
    assert rate == 22050 and abs(len(samples) - 22050) <= 1
    down, rate16 = audio.samples(16000)
    assert rate16 == 16000 and abs(len(down) - 16000) < 64
    assert abs(float(np.sqrt(np.mean(down ** 2))) - 0.3 / np.sqrt(2)) < 0.01  # the tone survives resampling


def test_flac_is_sniffed_and_decoded():
    data = flac_bytes(tone(0.5), 16000)
    part = load_part(data)
    assert isinstance(part, Audio) and part.mime == "audio/flac"
    samples, _ = part.samples()
    assert abs(len(samples) - 8000) < 64


def test_audio_bomb_is_stopped_while_decoding():
    data = flac_bytes(np.zeros(16000 * 600, dtype=np.float32), 16000)  # 10 minutes of silence
    assert len(data) < 200_000  # tiny on disk ...
    with pytest.raises(LimitExceeded, match="IMAGINE_MAX_AUDIO_SECONDS"):
        Audio(data).samples(limits=Limits(max_audio_seconds=30))  # ... refused at 30 s, not after 10 min


def test_image_bomb_is_refused_before_decoding():
    buf = io.BytesIO()
    PILImage.new("L", (10_000, 9_000)).save(buf, format="PNG")  # 90 MP of black, a few hundred KB
    with pytest.raises(LimitExceeded, match="IMAGINE_MAX_PIXELS"):
        load_part(buf.getvalue())


def test_video_frames_audio_and_info():
    data = make_video([(1.0, slide("One", (200, 40, 40))), (1.0, slide("Two", (40, 40, 200)))], tone(2.0))
    video = load_part(data)
    assert isinstance(video, Video)
    info = video.info()
    assert abs(info.duration - 2.0) < 0.15 and info.has_audio and (info.width, info.height) == (640, 360)
    frames = list(video.frames(0.5))
    assert [round(t, 1) for t, _ in frames] == [0.0, 0.5, 1.0, 1.5]
    first, last = frames[0][1], frames[-1][1]
    assert first.getpixel((5, 5))[0] > 150 and last.getpixel((5, 5))[2] > 150  # red slide, then blue
    track = video.audio()
    assert isinstance(track, Audio) and abs(track.duration - 2.0) < 0.1


def test_video_frame_limit_and_silent_video():
    data = make_video([(1.0, slide("A", (0, 0, 0)))])
    video = Video(data)
    assert video.audio() is None
    with pytest.raises(LimitExceeded, match="IMAGINE_MAX_VIDEO_FRAMES"):
        list(video.frames(0.1, limits=Limits(max_video_frames=3)))
    with pytest.raises(InputError, match="no audio track"):
        video.samples()


def test_corrupt_media_is_a_clear_error():
    data = make_video([(1.0, slide("A", (0, 0, 0)))])
    with pytest.raises(InputError, match="could not be decoded|no video track"):
        list(Video(data[:200]).frames())
    with pytest.raises(InputError, match="could not be decoded"):
        Audio(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk").samples()
    assert isinstance(Image(_png()), Image)


def _png() -> bytes:
    buf = io.BytesIO()
    slide("x", (1, 2, 3)).save(buf, format="PNG")
    return buf.getvalue()


def test_a_wav_cut_short_says_how_much_is_missing():
    full = Audio.from_samples(np.zeros(16000, np.float32), 16000).data  # 1 s, 16-bit mono
    with pytest.raises(InputError, match=r"promises 1.00 s .* only 0.50 s"):
        Audio(full[:44 + 16000], name="cut.wav").samples()
    assert len(Audio(full).samples()[0]) == 16000  # the complete file still decodes
    # a streaming writer that could not seek back leaves the size unset: read to the end of the file
    for unset in (b"\x00\x00\x00\x00", b"\xff\xff\xff\xff"):
        streamed = full[:40] + unset + full[44:44 + 16000]
        assert len(Audio(streamed).samples()[0]) == 8000
