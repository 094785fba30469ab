"""Bad and hostile media: clear errors, a healthy process, bounded memory (peak RSS measured in a child)."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import wave
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from ..helpers.cli import assert_one_line_error, run


def png_header_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid-looking PNG whose header claims width x height pixels, with one tiny compressed row."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + \
        chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def hour_of_silence(tmp_path_factory) -> Path:
    """One hour of silence as FLAC: a few hundred KB that decode to 230 MB of float32 at 16 kHz."""
    import av

    path = tmp_path_factory.mktemp("bombs") / "hour.flac"
    rate, block = 8000, 8000 * 10
    zeros = np.zeros((1, block), dtype=np.int16)
    with av.open(str(path), "w", format="flac") as container:
        stream = container.add_stream("flac", rate=rate)
        stream.layout = "mono"
        for i in range(360):
            frame = av.AudioFrame.from_ndarray(zeros, format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, i * block, Fraction(1, rate)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_empty_truncated_and_renamed_files(tmp_path, imagine_home):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    assert_one_line_error(run("transcribe", str(empty), home=imagine_home), "empty.wav is empty")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000), w.writeframes(b"\x01\x00" * 16000)
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(buf.getvalue()[:30])  # the header is cut short
    proc = run("transcribe", str(truncated), home=imagine_home)
    assert_one_line_error(proc, "truncated.wav")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(buf.getvalue()[:44 + 8000])  # the header promises 1 s; a quarter of it is there
    assert_one_line_error(run("transcribe", str(cut), home=imagine_home), "cut.wav is truncated",
                          "promises 1.00 s", "only 0.25 s")
    renamed = tmp_path / "notes.wav"
    renamed.write_text("these are meeting notes, not audio")
    assert_one_line_error(run("transcribe", str(renamed), home=imagine_home), "transcribe needs audio or video, got text")


def test_png_header_bomb_is_refused(tmp_path, imagine_home):
    bomb = tmp_path / "huge.png"
    bomb.write_bytes(png_header_bomb())
    assert bomb.stat().st_size < 2000
    assert_one_line_error(run("read", str(bomb), home=imagine_home), "10000000000 pixels", "IMAGINE_MAX_PIXELS")


PEAK = """
import resource, sys
import imagine
from imagine import LimitExceeded
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    {call}
    print("NO ERROR")
except LimitExceeded as exc:
    print("LIMIT", exc)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("PEAK_MB", (after - before) / 1024)
"""


def peak(call: str, home: Path, **env: str) -> tuple[str, float]:
    proc = subprocess.run([sys.executable, "-c", PEAK.format(call=call)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "IMAGINE_HOME": str(home), **env})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    return lines[0], float(lines[-1].split()[1])


def test_hour_of_silence_stops_at_the_limit_with_bounded_memory(hour_of_silence, imagine_home):
    assert hour_of_silence.stat().st_size < 2_000_000
    outcome, grown = peak(f"imagine.Audio({str(hour_of_silence)!r}).samples(limits="
                          "imagine.get_settings().part_limits())", imagine_home, IMAGINE_MAX_AUDIO_SECONDS="600")
    assert outcome.startswith("LIMIT") and "IMAGINE_MAX_AUDIO_SECONDS" in outcome
    assert grown < 120, f"peak RSS grew {grown:.0f} MB"  # 600 s of 16 kHz float32 is 38 MB; the hour is 230 MB
    proc = run("transcribe", str(hour_of_silence), home=imagine_home, env={"IMAGINE_MAX_AUDIO_SECONDS": "600"})
    assert_one_line_error(proc, "longer than the limit of 600 s")


def test_png_bomb_memory_stays_bounded(tmp_path, imagine_home):
    bomb = tmp_path / "huge.png"
    bomb.write_bytes(png_header_bomb())
    outcome, grown = peak(f"imagine.load_part({str(bomb)!r})", imagine_home)
    assert outcome.startswith("LIMIT") and grown < 50, (outcome, grown)
