"""The studio page: one Gradio Blocks with a tab per activity — chat, compare, tasks, history, flows.

Each tab lives in its own module with a `build(ctx)` that lays out its components inside the tab;
`StudioContext` is what they share: the Client, the models to offer, and what the person just did (so
"save as flow" can turn it into YAML). The theme uses the system's fonts: nothing is fetched from a CDN.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ..parts import Modality

__all__ = ["CSS", "THEME", "StudioContext", "build"]

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
    with gr.Blocks(title="imagine studio", analytics_enabled=False) as blocks:
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
