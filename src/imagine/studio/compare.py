"""Studio tab: compare (being built)."""

from __future__ import annotations

from .app import StudioContext

__all__ = ["build"]


def build(ctx: StudioContext) -> None:
    import gradio as gr

    gr.Markdown("Coming soon.")
