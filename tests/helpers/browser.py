"""Headless Chromium for the studio tests: Debian's /usr/bin/chromium driven by Playwright.

`.ci/run` installs Debian's `chromium` when it is missing; a machine without it skips the browser tests
with that reason. Screenshots go to a temp folder, and also to docs/screenshots/ when
IMAGINE_SCREENSHOTS=1 (how the ones in the README were made)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest

CHROMIUM = os.environ.get("IMAGINE_CHROMIUM", "/usr/bin/chromium")
DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]

needs_chromium = pytest.mark.skipif(not (Path(CHROMIUM).exists() or shutil.which("chromium")),
                                    reason="no Chromium at /usr/bin/chromium (Debian: apt install chromium)")


def launch() -> Iterator[Any]:
    """A Playwright browser (one per module: starting Chromium costs ~1 s)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
                                    headless=True, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page: Any, name: str, tmp: Path) -> Path:
    """Save a full-page PNG as `name`.png; also into docs/screenshots when IMAGINE_SCREENSHOTS=1."""
    path = tmp / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("IMAGINE_SCREENSHOTS", "").strip() in ("1", "true", "yes"):
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS / f"{name}.png")
    return path
