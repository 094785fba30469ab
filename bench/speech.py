"""Speech speed: whisper through `imagine.tasks.transcribe` vs raw faster-whisper on the same audio, model
and options, in one run (goal: imagine >= 0.95 of raw speed); and espeak's real-time factor (goal >= 50x).

The audio is 10 sentences spoken by espeak (about 30 s). Runs alternate so machine noise hits both sides.

    .venv/bin/python bench/speech.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("IMAGINE_HOME", tempfile.mkdtemp(prefix="imagine-bench-"))

import numpy as np  # noqa: E402

from imagine import Audio, get_registry  # noqa: E402
from imagine.tasks import speak, transcribe  # noqa: E402

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "My phone number is five five five, one two three four.",
    "We meet at seven o'clock on Monday morning.",
    "Doctor Smith arrived in London last week.",
    "The library closes at nine in the evening.",
    "The weather today is sunny, with a light breeze.",
    "Can you open the window, please?",
    "There are twelve apples and three oranges on the table.",
    "Good morning, my name is Peter and I live in Paris.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    # espeak: synthesis speed (after one warm-up call that starts its helper process)
    speak("warm up", log=False).complete()
    t0 = time.perf_counter()
    clips = [next(p for p in speak(s, log=False).parts if isinstance(p, Audio)) for s in SENTENCES]
    synth = time.perf_counter() - t0
    pieces = [c.samples(16000)[0] for c in clips]
    gap = np.zeros(8000, dtype=np.float32)
    samples = np.concatenate([x for p in pieces for x in (p, gap)])
    seconds = len(samples) / 16000
    spoken = sum(len(p) for p in pieces) / 16000
    print(f"espeak   : {spoken:.1f} s of speech in {synth:.2f} s = {spoken / synth:.0f}x real time (goal >= 50x)")

    audio = Audio.from_samples(samples, 16000)
    samples, _ = audio.samples(16000)  # raw gets exactly what imagine decodes from the WAV
    engine = get_registry().engine("whisper")
    model = engine.load("tiny.en")  # the same loaded WhisperModel serves both sides
    opts = engine.parse_options({})
    transcribe(audio, log=False).text()  # warm both paths
    list(model.transcribe(samples, language="en", beam_size=opts.beam_size)[0])

    raw_times, ours_times = [], []
    for i in range(args.runs):
        for side in (("raw", "imagine") if i % 2 == 0 else ("imagine", "raw")):
            t0 = time.perf_counter()
            if side == "raw":
                segments, _ = model.transcribe(samples, language="en", beam_size=opts.beam_size,
                                               temperature=opts.temperature)
                raw_text = " ".join(s.text.strip() for s in segments)
                raw_times.append(time.perf_counter() - t0)
            else:
                ours_text = transcribe(audio, log=False).text()
                ours_times.append(time.perf_counter() - t0)
    raw, ours = statistics.median(raw_times), statistics.median(ours_times)
    same = "identical" if raw_text.split() == ours_text.split() else "DIFFERENT"
    print(f"whisper  : {seconds:.1f} s of audio, tiny.en int8, beam {opts.beam_size}, {args.runs} runs each, text {same}")
    print(f"  raw faster-whisper : {raw:.2f} s = {seconds / raw:.1f}x real time")
    print(f"  imagine.transcribe : {ours:.2f} s = {seconds / ours:.1f}x real time  (decode from WAV included)")
    print(f"  speed ratio imagine/raw : {raw / ours:.3f}  (goal >= 0.95)")


if __name__ == "__main__":
    main()
