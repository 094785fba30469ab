"""The studio's chat in a real browser: a streamed reply, the bundled model, the details of a reply, a
conversation reloaded from the log, and bad input answered in the chat without losing the session."""

from __future__ import annotations

import time

from tests.helpers.browser import needs_chromium, screenshot
from tests.helpers.media import png_bytes

pytestmark = needs_chromium


def open_chat(page, studio, model: str, options: str = "") -> None:
    page.goto(studio.url + "/studio/")
    page.get_by_role("tab", name="Chat").wait_for()
    box = page.locator("#chat-model input")
    box.fill(model)
    box.press("Enter")
    if options:
        page.locator("#chat-options textarea").fill(options)


def send(page, text: str, files: list[str] = ()) -> None:
    if files:
        page.locator("#chat-input input[type=file]").set_input_files(list(files))
    box = page.locator("#chat-input textarea")
    box.fill(text)
    box.press("Enter")


def chat_text(page) -> str:
    return page.locator("#chat-log").inner_text()


def test_a_reply_streams_into_the_page(page, studio, tmp_path):
    studio.mock().enqueue(["Hello ", "from ", "the ", "studio."])
    open_chat(page, studio, "mock", "delay=0.4")
    send(page, "Say hello")
    page.locator("#chat-log").get_by_text("Hello from", exact=False).wait_for()
    partial = chat_text(page)
    page.locator("#chat-log").get_by_text("Hello from the studio.").wait_for()
    assert "studio." not in partial  # seen before the last delta arrived: streamed, not all at once
    assert studio.mock().requests[-1].messages[-1].text == "Say hello"


def test_the_bundled_model_answers_and_the_details_say_who(page, studio, tmp_path):
    open_chat(page, studio, "auto", "max_tokens=24, temperature=0")
    page.get_by_text("Details of the last reply").click()  # open: a closed accordion is not rendered
    send(page, "Name a colour.")
    page.locator("#chat-details").get_by_text("llama-cpp", exact=False).first.wait_for(timeout=120_000)
    rows = studio.client.store.recent(5)
    assert rows[0]["engine"] == "llama-cpp" and rows[0]["output_text"].strip()
    assert rows[0]["output_text"].strip()[:20] in chat_text(page)
    screenshot(page, "studio-chat", tmp_path)


def test_a_conversation_is_reloaded_from_the_log(page, studio):
    studio.mock().enqueue("First answer.")
    open_chat(page, studio, "mock")
    send(page, "first question")
    page.locator("#chat-log").get_by_text("First answer.").wait_for()
    conversation = studio.client.store.recent(1)[0]["conversation_id"]
    page.goto(studio.url + "/studio/")  # a new visit: an empty chat
    picker = page.locator("#chat-conversations input")
    picker.fill(conversation)
    picker.press("Enter")
    page.locator("#chat-log").get_by_text("first question").wait_for()
    assert "First answer." in chat_text(page)


def test_bad_input_is_a_readable_line_and_the_chat_goes_on(page, studio, tmp_path):
    open_chat(page, studio, "mock")
    notes = tmp_path / "notes.txt"
    notes.write_text("not media")
    page.locator("#chat-input input[type=file]").set_input_files([str(notes)])
    page.get_by_text("Invalid file type: notes.txt", exact=False).wait_for()  # refused by name, at upload
    picture = tmp_path / "red.png"
    picture.write_bytes(png_bytes())
    open_chat(page, studio, "llama-cpp")  # a text-only model given a picture: the engine says why not
    send(page, "describe it", [str(picture)])
    deadline = time.monotonic() + 60
    while chat_text(page).count("⚠️") < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "⚠️" in chat_text(page) and "image" in chat_text(page).lower()
    studio.mock().enqueue("Still here.")
    open_chat(page, studio, "mock")
    send(page, "are you there?")
    page.locator("#chat-log").get_by_text("Still here.").wait_for()
