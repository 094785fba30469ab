"""espeak speaks, whisper listens: the offline speech engines checked against each other.
(Piper, the default voice, has its own round trip in test_piper.py; the CLI one here uses the default.)"""

from __future__ import annotations

import pytest

import imagine
from imagine import Audio, Segments
from imagine.tasks import speak, transcribe

from .helpers.speech import wer

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


def test_round_trip_word_error_rate():
    references, hypotheses = [], []
    for sentence in SENTENCES:
        audio = next(p for p in speak(sentence, "espeak").parts if isinstance(p, Audio))
        heard = transcribe(audio, temperature=0).text()
        references.append(sentence)
        hypotheses.append(heard)
    rate = wer(" ".join(references), " ".join(hypotheses))
    detail = "\n".join(f"{r!r} -> {h!r}" for r, h in zip(references, hypotheses))
    assert rate <= 0.15, f"WER {rate:.3f}\n{detail}"


def test_round_trip_through_the_cli(tmp_path, imagine_home):
    import os
    import subprocess
    import sys

    env = {**os.environ, "IMAGINE_HOME": str(imagine_home)}
    wav = tmp_path / "hello.wav"
    cli = [sys.executable, "-m", "imagine"]
    # Piper samples generator and duration noise on every call; with both at 0 the same text gives the same
    # audio, so what Whisper hears (and how it writes "one two three") does not change from run to run
    spoken = subprocess.run([*cli, "speak", "Hello from imagine, one two three.", "-o", "noise_scale=0",
                             "-o", "noise_w_scale=0", "-O", str(wav)],
                            capture_output=True, text=True, env=env, timeout=120)
    assert spoken.returncode == 0, spoken.stderr
    assert wav.read_bytes()[:4] == b"RIFF"
    srt = subprocess.run([*cli, "transcribe", str(wav), "--format", "srt"], capture_output=True, text=True,
                         env=env, timeout=300)
    assert srt.returncode == 0, srt.stderr
    assert srt.stdout.startswith("1\n00:00:0") and "-->" in srt.stdout
    # the text of every cue (Whisper may cut the sentence in two), without cue numbers and timings
    said = " ".join(line for line in srt.stdout.splitlines()
                    if line.strip() and not line.strip().isdigit() and "-->" not in line)
    assert wer("hello from imagine one two three", said) <= 0.34
