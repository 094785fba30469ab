"""The studio's flows in a real browser: an example flow run with live progress and its outputs listed, a
broken flow shown as a readable error, and "save as flow" after a chat turning into YAML the loader takes."""

from __future__ import annotations

import re

import yaml
from playwright.sync_api import expect

from imagine.flows import Flow
from imagine.studio.flows import flow_from_action
from tests.helpers.browser import needs_chromium, screenshot

pytestmark = needs_chromium


def _editor_text(page) -> str:
    return page.locator("#flows-yaml .cm-content").inner_text()


def _set_editor(page, text: str) -> None:
    content = page.locator("#flows-yaml .cm-content")
    content.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(text)


def test_bad_yaml_is_a_readable_error_and_the_page_goes_on(page, studio):
    page.goto(studio.url + "/studio/")
    page.get_by_role("tab", name="Flows").click()
    expect(page.locator("#flows-yaml .cm-content")).to_contain_text("name: speech-check")
    _set_editor(page, "name: broken\nsteps:\n  hear:\n    task: transcribe\n    inptu: x\n")
    page.locator("#flows-run").click()
    error = page.locator("#flows-error")
    expect(error).to_contain_text(re.compile(r"5:5: steps\.hear\.inptu: unknown field"), timeout=20_000)
    assert "/tmp" not in error.inner_text()  # the temp folder is not shown, the file's name is
    _set_editor(page, "steps: [unclosed\n")
    page.locator("#flows-check").click()
    expect(error).to_contain_text("not valid YAML", timeout=20_000)
    # the page still works: a valid flow checks fine
    _set_editor(page, "name: tiny\ninputs:\n  words: {list: [a, b]}\nfor_each: words\nsteps:\n"
                      "  score:\n    task: wer\n    input: \"${item}\"\n    reference: \"${item}\"\n")
    page.locator("#flows-check").click()
    expect(page.locator("#flows-progress")).to_contain_text("ok · 1 steps", timeout=20_000)
    expect(error).to_have_text("")


def test_run_an_example_flow_with_progress_and_outputs(page, studio, tmp_path):
    page.goto(studio.url + "/studio/")
    page.get_by_role("tab", name="Flows").click()
    example = page.locator("#flows-example input")
    expect(example).to_have_value("speech_check.yaml")
    page.locator("#flows-run").click()
    progress = page.locator("#flows-progress")
    expect(progress).to_contain_text(re.compile(r"done — run [\w-]+ \(3 done\)"), timeout=50_000)
    expect(progress).to_contain_text("3/3 items")
    outputs = page.locator("#flows-outputs")
    for name in ("heard.jsonl", "wer.jsonl", "manifest.json"):
        expect(outputs.locator("[role=gridcell] span.text").filter(has_text=re.compile(f"^{re.escape(name)}$"))
               ).to_have_count(1)
    expect(page.locator("#flows-preview")).to_contain_text("quick brown fox")
    outputs.locator("[role=gridcell] span.text").filter(has_text=re.compile(r"^audio/.*\.wav$")).first.click()
    expect(page.locator("#flows-audio")).to_be_visible()
    outputs.locator("[role=gridcell] span.text").filter(has_text=re.compile(r"^heard\.jsonl$")).click()
    expect(page.locator("#flows-audio")).to_be_hidden()
    expect(page.locator("#flows-preview")).to_contain_text("seven thirty")
    screenshot(page, "studio-flows", tmp_path)


def test_save_as_flow_after_a_chat_gives_yaml_the_loader_takes(page, studio, tmp_path):
    studio.mock().enqueue("Paris.")
    page.goto(studio.url + "/studio/")
    model = page.locator("#chat-model input")
    model.fill("mock")
    model.press("Enter")
    box = page.locator("#chat-input textarea")
    box.fill("What is the capital of France?")
    box.press("Enter")
    page.locator("#chat-log").get_by_text("Paris.").wait_for()
    page.get_by_role("tab", name="Flows").click()
    page.locator("#flows-save").click()
    expect(page.locator("#flows-yaml .cm-content")).to_contain_text("task: ask", timeout=20_000)
    text = _editor_text(page)
    assert "What is the capital of France?" in text and "mock:echo" in text
    expect(page.locator("#flows-download")).to_be_visible()
    path = tmp_path / "saved.yaml"
    path.write_text(text, encoding="utf-8")
    flow = Flow.load(path, client=studio.client)
    assert flow.spec.steps["ask"].model == "mock:echo" and flow.spec.for_each == "texts"
    # and it runs from the studio as it is: the mock echoes the saved prompt
    page.locator("#flows-run").click()
    expect(page.locator("#flows-progress")).to_contain_text("(1 done)", timeout=30_000)
    expect(page.locator("#flows-preview")).to_contain_text("What is the capital of France?")


def test_save_as_flow_saves_this_browsers_action_not_another_users(page, browser, studio):
    studio.mock().enqueue("Rome.")
    page.goto(studio.url + "/studio/")
    model = page.locator("#chat-model input")
    model.fill("mock")
    model.press("Enter")
    box = page.locator("#chat-input textarea")
    box.fill("What is the capital of Italy?")
    box.press("Enter")
    page.locator("#chat-log").get_by_text("Rome.").wait_for()
    # someone else, in their own browser, has done nothing yet: there is nothing of theirs to save
    other = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    try:
        other.set_default_timeout(60_000)
        other.goto(studio.url + "/studio/")
        other.get_by_role("tab", name="Flows").click()
        other.locator("#flows-save").click()
        expect(other.locator("#flows-error")).to_contain_text("nothing to save yet", timeout=20_000)
    finally:
        other.context.close()
    page.get_by_role("tab", name="Flows").click()
    page.locator("#flows-save").click()
    expect(page.locator("#flows-yaml .cm-content")).to_contain_text("capital of Italy", timeout=20_000)


def test_every_kind_of_action_saves_as_a_flow_that_loads(studio, tmp_path):
    actions = [
        {"task": "ask", "model": "mock", "prompt": "hi", "attachments": []},
        {"task": "ask", "model": "mock", "prompt": "what is in it?", "attachments": ["cat.png"]},
        {"task": "transcribe", "model": "whisper", "inputs": ["talk.wav"]},
        {"task": "speak", "model": "espeak", "prompt": "Hello there."},
        {"task": "see", "prompt": "Describe it.", "inputs": ["photo.jpg"]},
        {"task": "read_text", "model": "rapidocr", "inputs": ["scan.png"]},
        {"task": "embed", "model": "minilm", "prompt": "a sentence"},
        {"task": "ask", "models": ["mock", "mock:echo"], "prompt": "compare me", "attachments": []},
        {"task": "watch", "model": "", "options": {"every": 2.0, "scene_threshold": 0.3, "ocr": True,
                                                   "transcribe_audio": False}, "inputs": ["clip.mp4"]},
    ]
    for n, action in enumerate(actions):
        text = flow_from_action(action)
        yaml.safe_load(text)
        path = tmp_path / f"flow{n}.yaml"
        path.write_text(text, encoding="utf-8")
        flow = Flow.load(path, client=studio.client)
        assert list(flow.spec.steps) == [action["task"]], text


def test_old_studio_temp_files_are_swept_and_new_ones_kept(tmp_path):
    import os
    import time

    from imagine.studio.app import sweep_temp

    old_run = tmp_path / "flows" / "20250101-run"
    old_run.mkdir(parents=True)
    (old_run / "out.json").write_text("{}")
    stale, fresh = tmp_path / "aaa.png", tmp_path / "bbb.png"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"y")
    day_ago = time.time() - 2 * 24 * 3600
    for path in (old_run / "out.json", stale):
        os.utime(path, (day_ago, day_ago))
    assert sweep_temp(tmp_path) == 2
    assert fresh.exists() and not stale.exists() and not old_run.exists()
    assert sweep_temp(tmp_path / "missing") == 0
