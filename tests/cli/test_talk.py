"""`imagine talk` through real subprocesses and the bundled models (Silero, Whisper tiny.en, SmolLM2, Piper):
a two-turn conversation from a file, the microphone path through a stand-in sounddevice, one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from ..helpers.cli import assert_one_line_error, run
from ..helpers.speech import RATE, needs_espeak, speech, trim, wav_part, wer

FIRST, SECOND = "What is the capital of France?", "What color is the sky on a sunny day?"
LLM = ("-o", "temperature=0", "-o", "seed=1", "-o", "max_tokens=40")

# A stand-in for sounddevice: the "microphone" plays the WAV named by TALK_MIC in real time, then silence;
# the "speaker" drains what talk queues and, when closed, writes how many samples it played to TALK_SPK.
FAKE_SOUNDDEVICE = '''
import os, threading, time, wave
import numpy as np

def query_devices(kind=None):
    return {"name": "fake " + str(kind)}

class _Stream:
    def __init__(self, samplerate, channels, dtype, callback, blocksize=None):
        self.rate, self.callback, self.block = samplerate, callback, blocksize or int(samplerate * 0.02)
        self.stop, self.played = threading.Event(), 0
    def __enter__(self):
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        return self
    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        if isinstance(self, OutputStream):
            open(os.environ["TALK_SPK"], "w").write(str(self.played))
    def run(self):
        start, n = time.monotonic(), 0
        while not self.stop.is_set():
            self.step(n)
            n += self.block
            time.sleep(max(0, start + n / self.rate - time.monotonic()))

class InputStream(_Stream):
    def step(self, n):
        if not hasattr(self, "wav"):
            w = wave.open(os.environ["TALK_MIC"])
            self.wav = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32767
        chunk = self.wav[n:n + self.block]
        self.callback(np.pad(chunk, (0, self.block - len(chunk))).reshape(-1, 1), self.block, None, None)

class OutputStream(_Stream):
    def step(self, n):
        out = np.zeros((self.block, 1), np.float32)
        self.callback(out, self.block, None, None)
        self.played += int(np.count_nonzero(out))
'''


def _conversation(path: Path, *sentences: str, gap: float = 6.0) -> list[tuple[float, float]]:
    """A WAV of `sentences` with `gap` seconds between them (time for the reply); returns each one's span."""
    pieces, spans, at = [np.zeros(int(0.5 * RATE), np.float32)], [], 0.5
    for i, sentence in enumerate(sentences):
        said = trim(speech(sentence))
        spans.append((at, at + len(said) / RATE))
        pause = gap if i < len(sentences) - 1 else 0.5
        pieces += [said, np.zeros(int(pause * RATE), np.float32)]
        at += len(said) / RATE + pause
    path.write_bytes(wav_part(np.concatenate(pieces)).data)
    return spans


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as w:
        assert w.getnchannels() == 2
        data = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2).astype(np.float32) / 32767
        return data, w.getframerate()


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x ** 2))) if len(x) else 0.0


@needs_espeak
@pytest.mark.llm
def test_talk_from_a_file(tmp_path, imagine_home):
    """Two turns: each transcribed right and answered, and the -O recording holds both sides in place."""
    said, out = tmp_path / "said.wav", tmp_path / "heard.wav"
    spans = _conversation(said, FIRST, SECOND)
    proc = run("talk", "--in", str(said), "-O", str(out), "--fast", "--json", *LLM, home=imagine_home)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    turns = [e["item"]["text"] for e in events if e["type"] == "turn_committed"]
    assert len(turns) == 2, turns
    for reference, heard in zip((FIRST, SECOND), turns):
        assert wer(reference, heard) <= 0.15, (reference, heard)
    done = [e for e in events if e["type"] == "reply_done"]
    assert len(done) == 2 and all(e["item"]["text"] and e["status"] in ("completed", "cancelled") for e in done)
    assert done[1]["status"] == "completed" and done[1]["timings"]["first_audio_out"] > 0
    audio = [e for e in events if e["type"] == "reply_audio"]
    assert audio and "pcm" not in audio[0] and all(e["bytes"] > 0 for e in audio)
    # each reply is heard after the speech it answers, and the recording carries it on the right channel
    starts = [min(e["plays_at"] for e in audio if e["response_id"] == d["response_id"]) for d in done]
    assert spans[0][1] < starts[0] < spans[1][0] and spans[1][1] < starts[1]
    heard_wav, rate = _read_wav(out)
    end = max(e["plays_at"] + e["seconds"] for e in audio)
    assert len(heard_wav) / rate >= max(end, spans[-1][1]) - 0.05
    person, assistant = heard_wav[:, 0], heard_wav[:, 1]
    first_said = person[int(spans[0][0] * rate):int(spans[0][1] * rate)]
    first_reply = assistant[int(starts[0] * rate):int((starts[0] + 1.0) * rate)]
    assert _rms(first_said) > 0.01 and _rms(assistant[:int(spans[0][1] * rate)]) == 0.0
    assert _rms(first_reply) > 0.01


@needs_espeak
@pytest.mark.llm
def test_talk_through_the_microphone(tmp_path, imagine_home):
    """The sounddevice path, with a stand-in device: the turn is heard, the reply played; Ctrl-C ends it."""
    fake, said, played = tmp_path / "fake", tmp_path / "said.wav", tmp_path / "played.txt"
    fake.mkdir()
    (fake / "sounddevice.py").write_text(FAKE_SOUNDDEVICE)
    _conversation(said, FIRST)
    env = {**os.environ, "IMAGINE_HOME": str(imagine_home), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(fake),
           "TALK_MIC": str(said), "TALK_SPK": str(played)}
    proc = subprocess.Popen([sys.executable, "-m", "imagine", "talk", "--json", *LLM], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        types = []
        assert proc.stdout is not None
        for line in proc.stdout:
            types.append(json.loads(line)["type"])
            if types[-1] == "reply_done":
                break
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert types[0] == "speech_started" and "turn_committed" in types and "reply_audio" in types
    assert int(played.read_text()) > 0.5 * 24000  # at least half a second of the reply reached the speaker


def test_talk_errors_are_one_line(tmp_path, imagine_home):
    assert_one_line_error(run("talk", "--in", str(tmp_path / "nope.wav"), home=imagine_home), "file not found")
    text = tmp_path / "notes.txt"
    text.write_text("not a recording")
    assert_one_line_error(run("talk", "--in", str(text), home=imagine_home), "not audio")
    # no microphone: sounddevice missing, installed without PortAudio, or no input device
    for name, body in (("missing", "raise ImportError('No module named sounddevice')"),
                       ("no-portaudio", "raise OSError('PortAudio library not found')"),
                       ("no-device", "def query_devices(kind=None):\n    raise ValueError('no ' + kind)")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "sounddevice.py").write_text(body + "\n")
        proc = run("talk", home=imagine_home, env={"PYTHONPATH": str(tmp_path / name)})
        assert_one_line_error(proc, "no microphone", "--in FILE")
        if name != "no-device":
            assert "pip install sounddevice" in proc.stderr
