"""The studio page (issue 18): time from opening /studio/ to an interactive page, and the page's weight,
beside a baseline measured in the same run: the smallest Gradio page (one textbox) on the same server.

Headless Debian Chromium through Playwright, a fresh browser context per load (a cold cache: what a
first visit costs); interactive = the chat input accepts typing. Weight = bytes of every response the
page loaded, as sent (gzip-encoded where the server compresses). The ratio says what imagine's five tabs cost over Gradio itself.

    .venv/bin/python bench/studio_page.py [--loads 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.browser import launch  # noqa: E402
from tests.helpers.server import served  # noqa: E402


def load(browser: object, url: str, ready: str) -> tuple[float, int, int]:
    """(seconds to interactive, bytes, requests) of one cold load of `url`."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    page = context.new_page()
    sizes: list[int] = []

    def count(request: object) -> None:
        try:  # bytes on the wire: the encoded (gzip) body and the headers
            sent = request.sizes()  # type: ignore[attr-defined]
            sizes.append(int(sent["responseBodySize"]) + int(sent["responseHeadersSize"]))
        except Exception:  # a stream still open (the queue's events) has no final size
            pass

    page.on("requestfinished", count)
    start = time.perf_counter()
    page.goto(url)
    page.locator(ready).first.wait_for(state="visible", timeout=120_000)
    page.locator(ready).first.fill("ok")
    seconds = time.perf_counter() - start
    page.wait_for_timeout(1500)  # what loads just after (Gradio keeps a connection open: no "network idle")
    context.close()
    return seconds, sum(sizes), len(sizes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loads", type=int, default=5)
    args = parser.parse_args()
    import gradio as gr

    with tempfile.TemporaryDirectory() as home, served(Path(home), studio=True) as server:
        with gr.Blocks() as tiny:
            gr.Textbox(elem_id="tiny-input")
        gr.mount_gradio_app(server.app, tiny, path="/tiny", ssr_mode=False)
        from imagine.studio.mount import _compress

        _compress(server.app, "/tiny")  # compressed like the studio: the same terms for both
        for browser in launch():
            load(browser, server.url + "/studio/", "#chat-input textarea")  # warm the server's first render
            studio = [load(browser, server.url + "/studio/", "#chat-input textarea") for _ in range(args.loads)]
            baseline = [load(browser, server.url + "/tiny/", "#tiny-input textarea") for _ in range(args.loads)]
    for name, runs in (("imagine studio", studio), ("baseline: one-textbox Gradio page", baseline)):
        secs = [r[0] for r in runs]
        print(f"{name:36s} interactive p50 {statistics.median(secs) * 1000:6.0f} ms (min {min(secs) * 1000:.0f}), "
              f"{runs[0][1] / 1024:7.0f} KiB in {runs[0][2]} responses")
    ratio = statistics.median(r[0] for r in studio) / statistics.median(r[0] for r in baseline)
    print(f"studio / baseline: {ratio:.2f}x the time, {studio[0][1] / max(1, baseline[0][1]):.2f}x the bytes")


if __name__ == "__main__":
    main()
