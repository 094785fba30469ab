"""The studio's history in a real browser: logged calls listed, searched, opened, re-run on another model."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.helpers.browser import needs_chromium, screenshot

pytestmark = needs_chromium


def test_history_lists_opens_and_reruns_a_logged_response(page, studio, tmp_path):
    mock = studio.mock()
    for prompt in ("hello", "what is a haiku", "name three rivers"):
        mock.enqueue(f"answer to {prompt}")
        studio.client.ask(prompt, "mock").text()
    page.goto(studio.url + "/studio/")
    page.get_by_role("tab", name="History").click()
    table = page.locator("#history-table")

    def cell(text):
        return table.locator("[role=gridcell] span.text").filter(has_text=re.compile(f"^{re.escape(text)}$")).first
    cell("name three rivers").wait_for()
    cell("answer to hello").wait_for()

    # the search keeps the rows that match, in prompt or answer
    search = page.locator("#history-search textarea")
    search.fill("haiku")
    search.press("Enter")
    page.locator("#history-count").get_by_text("match").wait_for()
    assert table.locator("[role=gridcell] span.text").filter(has_text="name three rivers").count() == 0
    cell("what is a haiku").wait_for()
    search.fill("")
    page.locator("#history-refresh").click()
    cell("name three rivers").wait_for()

    # open one: input, output, provenance
    cell("answer to hello").click()
    expect(page.locator("#history-input textarea")).to_have_value("hello", timeout=20_000)
    expect(page.locator("#history-output textarea")).to_have_value("answer to hello")
    expect(page.locator("#history-title")).to_contain_text("mock:echo")

    # re-run it on another model name: the mock echoes the replayed prompt
    model = page.locator("#history-model input")
    model.fill("mock")
    model.press("Enter")
    page.locator("#history-rerun").click()
    new = page.locator("#history-new textarea")
    expect(new).to_have_value("hello", timeout=20_000)
    expect(page.locator("#history-output textarea")).to_have_value("answer to hello")
    assert mock.requests[-1].messages[-1].text == "hello"

    # an unknown model is a readable line; the panel stays
    model.fill("no-such-engine:x")
    model.press("Enter")
    page.locator("#history-rerun").click()
    expect(new).to_have_value(re.compile("^⚠️ .*no-such-engine"), timeout=20_000)
    expect(page.locator("#history-output textarea")).to_have_value("answer to hello")
    model.fill("mock")
    model.press("Enter")
    page.locator("#history-rerun").click()
    expect(new).to_have_value("hello", timeout=20_000)
    screenshot(page, "studio-history", tmp_path)
