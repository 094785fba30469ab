"""The studio under the server's limits: an upload over the body cap is refused with a readable message
naming the size, and the page keeps working. A server of its own with a 1 MiB cap."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.helpers.browser import needs_chromium, screenshot
from tests.helpers.server import served

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    with served(tmp_path_factory.mktemp("studio-small"), studio=True, max_body_bytes=1 << 20) as s:
        yield s


def test_an_upload_over_the_cap_is_refused_readably_and_the_chat_goes_on(browser, small, tmp_path):
    noise = (np.random.default_rng(0).random((1000, 1000, 3)) * 255).astype(np.uint8)
    big = tmp_path / "big.png"
    Image.fromarray(noise).save(big)  # ~3 MB of incompressible pixels: over the 1 MiB cap
    assert big.stat().st_size > 2 << 20
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.set_default_timeout(60_000)
    page.goto(small.url + "/studio/")
    page.get_by_role("tab", name="Chat").wait_for()
    page.locator("#chat-input input[type=file]").set_input_files([str(big)])
    page.get_by_text("maximum allowed size", exact=False).first.wait_for()  # Gradio's toast names the file
    assert "Traceback" not in page.content()
    screenshot(page, "studio-upload-too-large", tmp_path)
    small.mock().enqueue("Still working.")
    model = page.locator("#chat-model input")
    model.fill("mock")
    model.press("Enter")
    box = page.locator("#chat-input textarea")
    box.fill("hello")
    box.press("Enter")
    page.locator("#chat-log").get_by_text("Still working.").wait_for()
