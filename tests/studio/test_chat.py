"""The studio's chat in a real browser: a message sent, a reply streamed in, details shown."""

from __future__ import annotations

from tests.helpers.browser import needs_chromium, screenshot

pytestmark = needs_chromium


def test_page_loads_and_a_chat_message_gets_a_streamed_reply(page, studio, tmp_path):
    studio.mock().enqueue(["Hello ", "from ", "the ", "studio."])
    page.goto(studio.url + "/studio/")
    page.get_by_role("tab", name="Chat").wait_for()
    model = page.locator("#chat-model input")
    model.fill("mock")
    model.press("Enter")
    box = page.locator("#chat-input textarea")
    box.fill("Say hello")
    box.press("Enter")
    page.locator("#chat-log").get_by_text("Hello from the studio.").wait_for()
    assert studio.mock().requests[-1].messages[-1].text == "Say hello"
    screenshot(page, "studio-chat", tmp_path)
