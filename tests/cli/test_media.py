"""The media commands through real subprocesses: speak, transcribe, vad, read, embed, watch."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ..helpers.cli import assert_one_line_error, run
from ..helpers.media import make_video, slide


@pytest.fixture
def spoken_wav(tmp_path, imagine_home):
    wav = tmp_path / "speech.wav"
    proc = run("speak", "-m", "espeak", "--voice", "en-us", "-o", "rate=160", "Good morning, this is a test.",
               "-O", str(wav), home=imagine_home)
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout
    return wav


def test_transcribe_formats(spoken_wav, imagine_home):
    plain = run("transcribe", str(spoken_wav), home=imagine_home)
    assert plain.returncode == 0 and "morning" in plain.stdout.lower()
    data = json.loads(run("transcribe", str(spoken_wav), "--format", "json", "--words", home=imagine_home).stdout)
    assert data["language"] == "en" and data["segments"] and data["segments"][0]["meta"]["words"]
    vtt = run("transcribe", str(spoken_wav), "--format", "vtt", home=imagine_home).stdout
    assert vtt.startswith("WEBVTT") and "-->" in vtt


def test_vad_lists_speech(spoken_wav, imagine_home):
    rows = json.loads(run("vad", str(spoken_wav), "--json", home=imagine_home).stdout)
    assert len(rows) >= 1 and rows[0]["start"] < rows[-1]["end"]


def test_read_and_embed(tmp_path, imagine_home):
    img = tmp_path / "sign.png"
    slide("Open daily", (230, 230, 230)).save(img)
    proc = run("read", str(img), home=imagine_home)
    assert proc.returncode == 0 and proc.stdout.strip() == "Open daily"
    lines = run("embed", "first text", "second text", home=imagine_home).stdout.splitlines()
    vectors = [json.loads(line) for line in lines]
    assert len(vectors) == 2 and len(vectors[0]) == 384
    assert math.isclose(sum(v * v for v in vectors[0]), 1.0, rel_tol=1e-3)


def test_watch_prints_a_timeline(tmp_path, imagine_home):
    video = tmp_path / "slides.mp4"
    video.write_bytes(make_video([(1.0, slide("Alpha", (200, 50, 50))), (1.0, slide("Beta", (50, 50, 200)))],
                                 np.zeros(32000, dtype=np.float32)))
    proc = run("watch", str(video), home=imagine_home)
    assert proc.returncode == 0, proc.stderr
    assert "scene 1: Alpha" in proc.stdout and "scene 2: Beta" in proc.stdout


def test_media_bad_input(tmp_path, imagine_home):
    img = tmp_path / "pic.png"
    slide("x", (0, 0, 0)).save(img)
    assert_one_line_error(run("transcribe", str(img), home=imagine_home), "transcribe needs audio or video")
    assert_one_line_error(run("read", str(tmp_path / "missing.png"), home=imagine_home), "file not found")
    assert_one_line_error(run("speak", "hi", "--voice", "nosuchvoice", "-O", str(tmp_path / "x.wav"), home=imagine_home),
                          "nosuchvoice")
    assert_one_line_error(run("vad", str(img), home=imagine_home), "needs audio or video")
