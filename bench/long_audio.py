"""Long audio: peak memory and time of `imagine transcribe` and `imagine vad` on 10 min, 1 h and 4 h of audio,
beside the baseline of handing the whole file to faster-whisper (`WhisperModel.transcribe(path)` and
`faster_whisper.vad.get_speech_timestamps` on the fully decoded samples), in one run. Goal: imagine's
peak RSS stays flat with duration (< 1 GiB at 4 h) and its time grows linearly.

The audio is a FLAC of digital silence with one spoken sentence (Piper, the default voice) every minute,
so there is speech to transcribe all the way through and the file stays small. Each measurement is a
child process; its peak RSS comes from `wait4`.

    .venv/bin/python bench/long_audio.py [--minutes 10 60 240] [--baseline-max 60] [--only transcribe|vad]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("IMAGINE_HOME", tempfile.mkdtemp(prefix="imagine-bench-"))

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.helpers.media import write_long_flac  # noqa: E402  (the long-audio tests' own generator)
from tests.helpers.rss import run_measured  # noqa: E402  (one clean peak-RSS measure for tests and benches)

RATE = 16000
SENTENCES = ["The quick brown fox jumps over the lazy dog.", "We meet at seven o'clock on Monday morning.",
             "The library closes at nine in the evening.", "Can you open the window, please?"]


def sentences() -> list[np.ndarray]:
    from imagine import Audio
    from imagine.tasks import speak

    clips = []
    for text in SENTENCES:
        part = next(p for p in speak(text, log=False).parts if isinstance(p, Audio))
        clips.append(part.samples(RATE)[0])
    return clips


BASELINE_TRANSCRIBE = """
import sys
from faster_whisper import WhisperModel
from imagine.engines.whisper import bundled_tiny_en_path
model = WhisperModel(str(bundled_tiny_en_path()), device="cpu", compute_type="int8", cpu_threads=4)
segments, _ = model.transcribe(sys.argv[1], language="en", beam_size=5)
print(sum(1 for _ in segments), "segments")
"""

BASELINE_VAD = """
import sys
from faster_whisper.audio import decode_audio
from faster_whisper.vad import get_speech_timestamps
print(len(get_speech_timestamps(decode_audio(sys.argv[1]))), "segments")
"""


def measure(argv: list[str]) -> tuple[float, float, str]:
    """(seconds, peak RSS in MiB, last output line) of a child process, measured by the tests' launcher (a
    child forked from this process would start its peak-RSS record at this process's size)."""
    t0 = time.perf_counter()
    run = run_measured(argv, timeout=7200)
    taken = time.perf_counter() - t0
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{run.stderr[-2000:]}")
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    return taken, run.peak_mb, (lines[-1] if lines else "")[:60]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=int, nargs="+", default=[10, 60, 240])
    parser.add_argument("--baseline-max", type=int, default=60, help="skip the baseline above this many minutes "
                        "(it holds the whole recording in memory: about 3.5 GB per hour for transcribe)")
    parser.add_argument("--only", choices=["transcribe", "vad"])
    args = parser.parse_args()
    imagine = [sys.executable, "-m", "imagine"]
    clips = sentences()
    print(f"{'job':<11}{'audio':>7}  {'imagine s':>10}{'MiB':>8}  {'baseline s':>11}{'MiB':>8}  {'time x':>7}{'RSS x':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            path = Path(tmp) / f"{minutes}min.flac"
            write_long_flac(path, minutes, clips, rate=RATE)
            jobs = {"transcribe": (imagine + ["transcribe", str(path)], BASELINE_TRANSCRIBE),
                    "vad": (imagine + ["vad", str(path)], BASELINE_VAD)}
            for job, (argv, baseline) in jobs.items():
                if args.only and job != args.only:
                    continue
                seconds, rss, _ = measure(argv)
                row = f"{job:<11}{minutes:>5}m  {seconds:>10.1f}{rss:>8.0f}"
                if minutes <= args.baseline_max:
                    b_seconds, b_rss, _ = measure([sys.executable, "-c", baseline, str(path)])
                    row += f"  {b_seconds:>11.1f}{b_rss:>8.0f}  {b_seconds / seconds:>7.2f}{b_rss / rss:>7.2f}"
                print(row, flush=True)


if __name__ == "__main__":
    main()
