"""One server with the studio per test module, on the bundled engines, and one headless Chromium."""

from __future__ import annotations

import pytest

pytest.importorskip("gradio", reason="the studio needs Gradio: pip install 'imagine[studio]'")
pytest.importorskip("playwright", reason="the studio tests need Playwright: pip install 'imagine[test]'")

from tests.helpers.browser import launch, needs_chromium  # noqa: E402
from tests.helpers.server import served  # noqa: E402

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    with served(tmp_path_factory.mktemp("studio"), studio=True) as s:
        yield s


@pytest.fixture(scope="module")
def browser():
    yield from launch()


@pytest.fixture
def page(browser, studio):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    context.close()
