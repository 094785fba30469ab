"""`imagine flow show --png FILE`: the DAG as a picture, drawn with Pillow.

Pillow is a core dependency, so the picture needs no extra (graphviz's `dot` is often not installed and
matplotlib comes only with the torch extra). The layout is the plain layered one: a step sits one row below
the deepest step it reads; the item (or the flow's inputs) is the top row, the outputs the bottom one.
Good enough for the tens of steps a flow has; it is a picture to look at, not a graph-drawing library.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .graph import refs_in

if TYPE_CHECKING:
    from PIL import ImageDraw

    from .flow import Flow

__all__ = ["layers", "save_png"]

BOX_W, BOX_H, GAP_X, GAP_Y, MARGIN = 220, 54, 40, 56, 30
COLOURS = {"source": "#dbeafe", "step": "#fef3c7", "flow": "#fde68a", "output": "#dcfce7"}


def layers(flow: "Flow") -> list[list[tuple[str, str, str]]]:
    """Rows of boxes (id, label, kind): the source, the steps by depth, the outputs."""
    graph = flow.graph
    depth: dict[str, int] = {}
    for name in graph.order:  # topological: a step's deps already have their depth
        depth[name] = 1 + max((depth[d] for d in graph.deps[name]), default=0)
    source = f"for each {flow.spec.for_each}" if flow.spec.for_each else "inputs"
    if flow.spec.inputs:
        source += ": " + ", ".join(flow.spec.inputs)
    rows: list[list[tuple[str, str, str]]] = [[("@source", source, "source")]]
    for name in graph.order:
        step = flow.spec.steps[name]
        what = step.task or f"flow {Path(step.flow or '').name}"
        model = step.model or step.policy or ""
        while len(rows) <= depth[name]:
            rows.append([])
        rows[depth[name]].append((name, f"{name}\n{what}" + (f" [{model}]" if model else ""),
                                  "flow" if step.flow else "step"))
    if flow.spec.outputs:
        rows.append([(f"@out:{n}", f"output {n}" + (f"\n-> {o.file}" if o.file else ""), "output")
                     for n, o in flow.spec.outputs.items()])
    return rows


def _edges(flow: "Flow") -> list[tuple[str, str]]:
    graph = flow.graph
    edges = [(dep, name) for name in graph.order for dep in sorted(graph.deps[name])]
    edges += [("@source", name) for name in graph.order if not graph.deps[name]]
    for out, o in flow.spec.outputs.items():
        heads = {head for head, _ in refs_in(o.from_)} & set(flow.spec.steps)
        edges += [(h, f"@out:{out}") for h in sorted(heads)] or [("@source", f"@out:{out}")]
    return edges


def _arrow(draw: "ImageDraw.ImageDraw", start: tuple[float, float], end: tuple[float, float]) -> None:
    draw.line([start, end], fill="#475569", width=2)
    (x0, y0), (x1, y1) = start, end
    length = max(((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5, 1e-6)
    ux, uy = (x1 - x0) / length, (y1 - y0) / length
    left = (x1 - 10 * ux + 5 * uy, y1 - 10 * uy - 5 * ux)
    right = (x1 - 10 * ux - 5 * uy, y1 - 10 * uy + 5 * ux)
    draw.polygon([end, left, right], fill="#475569")


def save_png(flow: "Flow", path: str | Path) -> Path:
    """Draw the flow's DAG to `path` (PNG); returns the path written."""
    from PIL import Image, ImageDraw, ImageFont

    rows = layers(flow)
    widest = max(len(r) for r in rows)
    width = MARGIN * 2 + widest * BOX_W + (widest - 1) * GAP_X
    height = MARGIN * 2 + 40 + len(rows) * BOX_H + (len(rows) - 1) * GAP_Y
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    try:
        font = ImageFont.load_default(size=14)
        title_font = ImageFont.load_default(size=18)
    except TypeError:  # Pillow < 10.1: one fixed size
        font = title_font = ImageFont.load_default()  # type: ignore[assignment]
    draw.text((MARGIN, MARGIN), f"flow {flow.name}", fill="black", font=title_font)
    where: dict[str, tuple[float, float, float, float]] = {}
    for r, row in enumerate(rows):
        y = MARGIN + 40 + r * (BOX_H + GAP_Y)
        x = MARGIN + (width - 2 * MARGIN - (len(row) * BOX_W + (len(row) - 1) * GAP_X)) / 2
        for i, (ident, label, kind) in enumerate(row):
            box = (x + i * (BOX_W + GAP_X), y, x + i * (BOX_W + GAP_X) + BOX_W, y + BOX_H)
            where[ident] = box
            draw.rounded_rectangle(box, radius=8, fill=COLOURS[kind], outline="#334155", width=2)
            draw.multiline_text(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), label, fill="black",
                                font=font, anchor="mm", align="center")
    for a, b in _edges(flow):
        if a in where and b in where:
            ax0, _, ax1, ay1 = where[a]
            bx0, by0, bx1, _ = where[b]
            _arrow(draw, ((ax0 + ax1) / 2, ay1), ((bx0 + bx1) / 2, by0))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out, format="PNG")
    return out
