"""The example flows run end to end, offline, on the bundled engines (small inputs, a few seconds)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

import pytest

from imagine.flows import Flow
from imagine.flows.steps import wer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "flows"


def need(*engine_ids: str) -> None:
    """Skip, naming the engine and what to install, unless every engine can run here."""
    from imagine import get_registry

    for engine_id in engine_ids:
        reason = get_registry().engine_class(engine_id).unavailable_reason()
        if reason is not None:
            pytest.skip(f"engine {engine_id} {reason}")


def example_script(name: str) -> ModuleType:
    """A script from examples/flows (make_inputs, search) imported as a module, as a user would run it."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_speech_check_speaks_transcribes_and_scores(tmp_path):
    need("espeak", "whisper")
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
    need("espeak", "whisper", "llama-cpp")
    result = Flow.load(EXAMPLES / "podcast_demo.yaml").run(out=tmp_path)
    assert result.status == "done"
    steps = result.items[0]["steps"]["podcast"]["steps"]
    assert set(steps) == {"transcript", "summary", "spoken"} and steps["spoken"]["log_id"]
    assert "tea" in (tmp_path / "tea" / "transcript.txt").read_text().lower()
    assert (tmp_path / "tea" / "summary.txt").read_text().strip()
    assert (tmp_path / "tea" / "summary.wav").read_bytes()[:4] == b"RIFF"


def test_screenshots_become_a_searchable_jsonl(tmp_path):
    need("rapidocr", "minilm")
    make = example_script("make_inputs")
    folder = tmp_path / "shots"
    make.make_screenshots(folder, seed=3)
    result = Flow.load(EXAMPLES / "screenshots.yaml").run({"images": str(folder)}, out=tmp_path / "out")
    assert result.status == "done" and result.manifest["counts"] == {"done": len(make.SCREENSHOTS)}

    rows = {r["name"]: r for r in map(json.loads, (tmp_path / "out" / "index.jsonl").read_text().splitlines())}
    assert set(rows) == set(make.SCREENSHOTS), "one row per image"
    assert "ERROR 42" in rows["error"]["text"]
    for name, drawn in make.SCREENSHOTS.items():
        assert Path(rows[name]["path"]) == folder / f"{name}.png"
        assert wer(drawn, rows[name]["text"]) <= 0.25, (drawn, rows[name]["text"])
    from imagine import Vector, embed

    dim = len(next(p for p in embed("probe", "minilm", log=False).parts if isinstance(p, Vector)))
    assert {len(r["vector"]) for r in rows.values()} == {dim}
    assert (tmp_path / "out" / "text" / "invoice.txt").read_text() == rows["invoice"]["text"]
    steps = result.items[0]["steps"]
    assert steps["ocr"]["engine"].startswith("rapidocr:") and steps["vector"]["engine"].startswith("minilm:")

    search = example_script("search")  # the index answers a question phrased in other words
    best = search.search(search.load(tmp_path / "out" / "index.jsonl"), "the server would not let me connect")
    assert Path(best[0][1]["path"]).name == "error.png" and best[0][0] > best[1][0]


def test_lecture_video_becomes_timestamped_notes(tmp_path):
    need("espeak", "whisper", "rapidocr", "llama-cpp")
    make = example_script("make_inputs")
    video = make.make_lecture(tmp_path / "lecture.mp4", seed=1)
    result = Flow.load(EXAMPLES / "lecture.yaml").run({"video": str(video)}, out=tmp_path / "out")
    assert result.status == "done", result.items[0]["error"]
    assert result.items[0]["steps"]["summary"]["engine"].startswith("llama-cpp:")

    segments = json.loads((tmp_path / "out" / "timeline.json").read_text())["items"]
    notes = (tmp_path / "out" / "notes.md").read_text()
    summary, _, timeline = notes.partition("## Timeline")
    assert summary.removeprefix("# Notes").strip(), "the LLM wrote a summary above the timeline"
    start = 0.0
    for seconds, caption, said in make.LECTURE:
        shown = [s for s in segments if s["text"] == caption]
        assert shown and abs(shown[0]["start"] - start) <= 0.5, (caption, segments)
        heard = min(segments, key=lambda s: wer(said, s["text"]))
        assert wer(said, heard["text"]) <= 0.34 and abs(heard["start"] - start) <= 0.8, (said, segments)
        for segment in (shown[0], heard):  # each line of the notes: [mm:ss.mmm - mm:ss.mmm] kind: text
            stamp = f"{int(segment['start'] // 60):02d}:{segment['start'] % 60:06.3f}"
            assert re.search(rf"^\[{re.escape(stamp)} - \d\d:\d\d\.\d{{3}}\] [\w ]+: {re.escape(segment['text'])}$",
                             timeline, re.MULTILINE), (stamp, timeline)
        start += seconds
