"""Choosing the first tool by meaning, for models whose own choice is unreliable.

The bundled SmolLM2-135M writes valid calls under a grammar (15 of 16 weather prompts with the call
forced) but, left to choose, opened a call on none of them, and asked "is this about the weather? yes or
no" it scored weather and unrelated questions alike. What does separate them is meaning: MiniLM puts
"What's the weather in Paris?" at a cosine of 0.25-0.46 from `get_weather: Get the current weather in a
city.`, and 20 unrelated requests at most 0.29 from it (`bench/tool_calls.py` prints the figures).

So for an engine marked `weak_tool_choice` (llama.cpp), the agent loop embeds the request and each tool's
name and description once; when the closest tool is at least `THRESHOLD` away in cosine, the first model
call is made with `tool_choice` set to that tool (the grammar then writes its arguments), and after that the
model chooses as usual. Below the threshold the model's own choice stands. This is the tool-retrieval step
agent frameworks put in front of large tool sets, used here as the decision itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Sequence

from ..errors import ImagineError
from ..parts import Vector
from ..tools import Tool

if TYPE_CHECKING:
    from ..client import Client

__all__ = ["CHOOSERS", "THRESHOLD", "Choice", "Chooser", "closest_tool"]

Chooser = Literal["auto", "meaning", "model"]
CHOOSERS: tuple[str, ...] = ("auto", "meaning", "model")
THRESHOLD = 0.3  # cosine; see the module docstring for where the weather and unrelated requests fall
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Choice:
    """The tool closest in meaning to the request, and how close (cosine)."""

    tool: str
    similarity: float


def _describe(tool: Tool) -> str:
    return f"{tool.name.replace('_', ' ')}: {tool.description}".strip()


async def closest_tool(request: str, tools: Sequence[Tool], client: "Client",
                       threshold: float = THRESHOLD) -> Choice | None:
    """The tool whose name and description are closest to `request`, if at least `threshold`; None when
    none is, or when no embedder can run here (the model then chooses, as it would without this)."""
    import numpy as np

    from .. import tasks

    if not tools or not request.strip():
        return None
    try:
        response = await tasks.embed([request, *(_describe(t) for t in tools)], client=client, log=False)
    except ImagineError as exc:
        log.info("choosing a tool by meaning is off: %s", exc)
        return None
    vectors = np.array([p.values for p in response.parts if isinstance(p, Vector)], dtype=np.float64)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    similarity = vectors[1:] @ vectors[0]
    best = int(np.argmax(similarity))
    if similarity[best] < threshold:
        return None
    return Choice(tools[best].name, round(float(similarity[best]), 4))
