"""The example flows run end to end, offline, on the bundled engines (small inputs, a few seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imagine.flows import Flow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "flows"


def _can(engine_id: str) -> bool:
    from imagine import get_registry

    return get_registry().engine_class(engine_id).unavailable_reason() is None


def test_speech_check_speaks_transcribes_and_scores(tmp_path):
    if not (_can("espeak") and _can("whisper")):
        pytest.skip("espeak-ng or faster-whisper is not installed")
    result = Flow.load(EXAMPLES / "speech_check.yaml").run(out=tmp_path)
    assert result.status == "done" and result.manifest["counts"] == {"done": 3}
    rows = [json.loads(line) for line in (tmp_path / "wer.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(0 <= r["wer"] <= 1 for r in rows)
    assert sum(r["wer"] for r in rows) / 3 < 0.7, "whisper hears most of espeak's words"
    item = result.items[1]
    assert item["steps"]["say"]["engine"].startswith("espeak:")
    assert item["steps"]["hear"]["engine"].startswith("whisper:") and item["steps"]["hear"]["log_id"]
    assert (tmp_path / "audio" / "0001.wav").read_bytes()[:4] == b"RIFF"


def test_podcast_demo_uses_the_podcast_flow_as_a_step(tmp_path):
    if not (_can("espeak") and _can("whisper") and _can("llama-cpp")):
        pytest.skip("the bundled speech engines or llama.cpp are not installed")
    result = Flow.load(EXAMPLES / "podcast_demo.yaml").run(out=tmp_path)
    assert result.status == "done"
    steps = result.items[0]["steps"]["podcast"]["steps"]
    assert set(steps) == {"transcript", "summary", "spoken"} and steps["spoken"]["log_id"]
    assert "tea" in (tmp_path / "tea" / "transcript.txt").read_text().lower()
    assert (tmp_path / "tea" / "summary.txt").read_text().strip()
    assert (tmp_path / "tea" / "summary.wav").read_bytes()[:4] == b"RIFF"
