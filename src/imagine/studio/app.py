"""The studio page: one Gradio Blocks with a tab per activity — chat, compare, tasks, history, flows.

Each tab lives in its own module with a `build(ctx)` that lays out its components inside the tab;
`StudioContext` is what they share: the Client, the models to offer, and what the person just did (so
"save as flow" can turn it into YAML). The theme uses the system's fonts: nothing is fetched from a CDN.
"""

from __future__ import annotations

import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..parts import Modality

__all__ = ["CSS", "TEMP_DIR", "THEME", "StudioContext", "build", "sweep_temp"]

CSS = """
.imagine-header h1 { margin: 0; font-size: 1.5rem; }
.imagine-header p { margin: 0.2rem 0 0; opacity: 0.75; }
.imagine-error { color: #b42318; font-weight: 600; }
.imagine-meta { font-size: 0.85rem; opacity: 0.85; }
footer { display: none !important; }
"""


def _theme() -> Any:
    import gradio as gr

    system: list[Any] = [gr.themes.Font("system-ui"), gr.themes.Font("-apple-system"), gr.themes.Font("Segoe UI"),
                         "sans-serif"]
    mono: list[Any] = [gr.themes.Font("ui-monospace"), gr.themes.Font("SFMono-Regular"), "monospace"]
    return gr.themes.Soft(primary_hue="indigo", secondary_hue="slate", font=system, font_mono=mono)


THEME: Any = None  # set by build(); mount() passes it to Gradio
MAX_SESSIONS = 1000  # browser sessions whose last action is kept
TEMP_DIR = Path(tempfile.gettempdir()) / "imagine-studio"  # media handed to Gradio, flow runs and saved flows
TEMP_MAX_AGE_S = 24 * 3600  # what is older goes (the log keeps every part; these are only copies to show)


def sweep_temp(root: Path = TEMP_DIR, max_age_s: float = TEMP_MAX_AGE_S) -> int:
    """Delete files under `root` last touched more than `max_age_s` ago, then folders left empty; the
    number of files deleted. Runs when a studio starts and hourly with Gradio's own cache clean-up."""
    if not root.is_dir():
        return 0
    cutoff = time.time() - max_age_s
    removed = 0
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):  # deepest first
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        except OSError:  # another studio removed it first, or it is in use: leave it
            continue
    return removed


@dataclass
class StudioContext:
    """What the tabs share."""

    client: Any
    path: str = "/studio"
    # what "save as flow" turns into YAML: each browser session's last action, newest sessions kept
    actions: "OrderedDict[str, dict[str, Any]]" = field(default_factory=OrderedDict)

    @staticmethod
    def _session() -> str:
        """The browser session of the event being handled (Gradio sets the request for each event)."""
        from gradio.context import LocalContext

        request = LocalContext.request.get(None)
        return str(getattr(request, "session_hash", None) or "")

    def remember(self, **action: Any) -> None:
        """Record this session's last action (what "save as flow" will turn into a flow)."""
        key = self._session()
        self.actions[key] = action
        self.actions.move_to_end(key)
        while len(self.actions) > MAX_SESSIONS:
            self.actions.popitem(last=False)

    def last_action(self) -> dict[str, Any]:
        """This session's last action ({} when it has done nothing yet)."""
        return dict(self.actions.get(self._session(), {}))

    def models(self, want: Modality = Modality.TEXT, inputs: tuple[Modality, ...] = (Modality.TEXT,)) -> list[str]:
        """ENGINE:MODEL choices that can answer `want` from `inputs`, available here, aliases first."""
        registry = self.client.registry
        refs: list[str] = []
        for engine_id in registry.capable(set(inputs), want):
            try:
                engine = registry.engine(engine_id)
            except Exception:  # an engine that cannot load here is not offered
                continue
            model = engine.default_model
            refs.append(f"{engine_id}:{model}" if model else engine_id)
        aliases = ["auto", "local"] if want is Modality.TEXT else []
        return aliases + [r for r in refs if r not in aliases]


def build(client: Any, path: str = "/studio") -> Any:
    """The studio's Blocks for `client`."""
    import gradio as gr

    from . import chat, compare, flows, history, tasks

    global THEME
    THEME = _theme()
    ctx = StudioContext(client, path)
    sweep_temp()
    # Gradio's own upload / output cache: checked hourly, files older than a day deleted
    with gr.Blocks(title="imagine studio", analytics_enabled=False,
                   delete_cache=(3600, int(TEMP_MAX_AGE_S))) as blocks:
        with gr.Row(elem_classes="imagine-header"):
            gr.Markdown("# imagine studio\nTry models on text, images, audio and video; compare them; keep "
                        "what works. Everything here is logged like any other call.")
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                chat.build(ctx)
            with gr.Tab("Compare", id="compare"):
                compare.build(ctx)
            with gr.Tab("Tasks", id="tasks"):
                tasks.build(ctx)
            with gr.Tab("History", id="history"):
                history.build(ctx)
            with gr.Tab("Flows", id="flows"):
                flows.build(ctx)
    return blocks
