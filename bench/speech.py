"""Speech speed: whisper through `imagine.tasks.transcribe` vs raw faster-whisper on the same audio, model
and options, in one run (goal: imagine >= 0.95 of raw speed); espeak's real-time factor (goal >= 50x); and
Piper's (the default voice): real-time factor (goal >= 10x) and time to first audio for a one-sentence
request after warm-up (goal <= 150 ms), beside espeak's, plus the first sentence of a streamed paragraph.

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

from imagine import Audio, Message, Modality, PartOut, get_registry  # noqa: E402
from imagine.engine import Request  # noqa: E402
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


def synthesis_speed(engine: str) -> tuple[float, float]:
    """(seconds of speech, seconds taken) for SENTENCES spoken one request each, after a warm-up call."""
    speak("warm up", engine, log=False).complete()
    t0 = time.perf_counter()
    clips = [next(p for p in speak(s, engine, log=False).parts if isinstance(p, Audio)) for s in SENTENCES]
    taken = time.perf_counter() - t0
    return sum(c.duration for c in clips), taken


def time_to_first_audio(engine: str, runs: int) -> float:
    """Median seconds from calling `speak` to holding audio, one sentence per request (warm)."""
    times = []
    for i in range(runs):
        t0 = time.perf_counter()
        for event in speak(SENTENCES[i % len(SENTENCES)], engine, log=False).events():
            if isinstance(event, PartOut):
                times.append(time.perf_counter() - t0)
    return statistics.median(times)


def piper_streamed(runs: int) -> tuple[float, float]:
    """Median (first sentence, whole) seconds for a five-sentence paragraph through `stream_audio`."""
    from imagine._bridge import run_sync

    engine = get_registry().engine("piper")
    paragraph = " ".join(SENTENCES[:5])
    request = Request(messages=(Message.user(paragraph),), model="joe", options=engine.parse_options({}),
                      want=Modality.AUDIO)

    async def once() -> tuple[float, float]:
        t0 = time.perf_counter()
        first = None
        async for _ in engine.stream_audio(request):
            first = first or time.perf_counter() - t0
        return first or 0.0, time.perf_counter() - t0

    pairs = [run_sync(once()) for _ in range(runs)]
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    # synthesis speed (after one warm-up call: espeak starts its helper process, piper loads its voice)
    for engine_id, goal in (("espeak", 50), ("piper", 10)):
        spoken, synth = synthesis_speed(engine_id)
        print(f"{engine_id:<9}: {spoken:.1f} s of speech in {synth:.2f} s = {spoken / synth:.0f}x real time "
              f"(goal >= {goal}x)")
    ttfa = {engine_id: time_to_first_audio(engine_id, 2 * args.runs) for engine_id in ("espeak", "piper")}
    print(f"time to first audio, one sentence per request, median of {2 * args.runs}: "
          f"piper {ttfa['piper'] * 1000:.0f} ms (goal <= 150 ms), espeak {ttfa['espeak'] * 1000:.0f} ms")
    first, whole = piper_streamed(args.runs)
    print(f"piper streamed, five sentences: first sentence after {first * 1000:.0f} ms, all after "
          f"{whole * 1000:.0f} ms")

    # whisper: the same audio through imagine and through raw faster-whisper (espeak speaks it)
    clips = [next(p for p in speak(s, "espeak", log=False).parts if isinstance(p, Audio)) for s in SENTENCES]
    pieces = [c.samples(16000)[0] for c in clips]
    gap = np.zeros(8000, dtype=np.float32)
    samples = np.concatenate([x for p in pieces for x in (p, gap)])
    seconds = len(samples) / 16000

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
