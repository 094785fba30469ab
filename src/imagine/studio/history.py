"""History: the log's responses, searchable; open one to see its media, provenance and cost, re-run it elsewhere.

The list is read from the log when the page loads, when the tab is opened and on "Refresh"; the search
box filters it by any text in the prompt or the answer, the engine or model, or the routing (task,
policy). Opening a row shows what went in and what came out (media from the blob store), who answered,
how it was routed, its usage and cost. "Re-run" sends the row's input messages (that turn's own messages)
to another model through `Client.respond` — logged like any call — and shows the new answer beside the old.
A row that cannot be read or a model that fails becomes a readable line; the page stays as it was.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import ImagineError
from ..parts import Audio, Image, Message, Modality, Part, Video
from .app import StudioContext
from .chat import media_file

__all__ = ["HEADERS", "build", "detail", "matches", "rerun_messages", "table_rows"]

HEADERS = ["time (UTC)", "engine:model", "input", "output", "ms", "cost $"]
SCAN = 1000  # how many of the newest rows the search looks through
SHOWN = 200  # how many matching rows the table shows


def _clip(text: str, room: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= room else text[: room - 1] + "…"


def input_text(row: dict[str, Any]) -> str:
    """The row's input as text: its messages' text parts, media named by kind."""
    lines: list[str] = []
    logged = row.get("input")
    for message in logged if isinstance(logged, list) else []:
        if not isinstance(message, dict):
            continue
        for part in message.get("parts") or []:
            if not isinstance(part, dict):
                continue
            if part.get("kind") == "text":
                lines.append(str(part.get("text") or ""))
            elif part.get("kind") == "data":
                lines.append(json.dumps(part.get("value"), default=str))
            elif part.get("type") in ("tool_use", "tool_result"):
                lines.append(f"[{part.get('type')} {part.get('name') or ''}]")
            else:
                lines.append(f"[{part.get('kind')} {part.get('name') or part.get('mime') or ''}]".replace(" ]", "]"))
    return "\n".join(line for line in lines if line)


def _count(tokens: Any) -> str:
    return "?" if tokens is None else str(tokens)


def output_text(row: dict[str, Any]) -> str:
    if row.get("error"):
        return f"⚠️ {row['error']}"
    text = row.get("output_text") or ""
    if not text:
        kinds = [p.get("kind") for p in row.get("output_parts") or [] if isinstance(p, dict)]
        text = " ".join(f"[{k}]" for k in kinds if k)
    return text


def matches(row: dict[str, Any], query: str) -> bool:
    """Whether every word of `query` is in the row's prompt, answer, engine:model or routing (any case)."""
    words = query.lower().split()
    if not words:
        return True
    routing = json.dumps(row.get("routing") or {}, default=str)
    hay = " ".join([input_text(row), row.get("output_text") or "", row.get("error") or "",
                    f"{row.get('engine')}:{row.get('model')}", routing, str(row.get("id"))]).lower()
    return all(word in hay for word in words)


def table_rows(rows: list[dict[str, Any]]) -> list[list[Any]]:
    out: list[list[Any]] = []
    for row in rows:
        latency = row.get("latency_ms")
        cost = row.get("cost")
        out.append([str(row.get("created") or "")[5:19].replace("T", " "),
                    _clip(f"{row.get('engine')}:{row.get('model')}", 32), _clip(input_text(row), 60),
                    _clip(output_text(row), 60), "" if latency is None else f"{latency:.0f}",
                    "–" if cost is None else f"{cost:.6f}".rstrip("0").rstrip(".") or "0"])
    return out


def _parts(client: Any, records: Any) -> tuple[list[Part], list[str]]:
    """Media parts of logged records (from the blob store), and a line for each that could not be read."""
    parts: list[Part] = []
    missing: list[str] = []
    for record in records if isinstance(records, list) else []:
        if not isinstance(record, dict) or record.get("kind") not in ("image", "audio", "video"):
            continue
        try:
            parts.append(client.store.part_from_record(record))
        except Exception as exc:  # a blob removed by gc, a damaged record: say so, show the rest
            missing.append(f"{record.get('kind')} {str(record.get('sha256'))[:12]}: {exc}")
    return parts, missing


def media_updates(parts: list[Part]) -> tuple[Any, Any, Any]:
    """Gallery, Audio and Video updates for a list of media parts (hidden when there is none of a kind)."""
    import gradio as gr

    images = [media_file(p) for p in parts if isinstance(p, Image)]
    audio = [media_file(p) for p in parts if isinstance(p, Audio)]
    video = [media_file(p) for p in parts if isinstance(p, Video)]
    return (gr.update(value=images or None, visible=bool(images)),
            gr.update(value=audio[0] if audio else None, visible=bool(audio)),
            gr.update(value=video[0] if video else None, visible=bool(video)))


def detail(row: dict[str, Any]) -> dict[str, Any]:
    """What the provenance panel shows of a row."""
    out: dict[str, Any] = {
        "log id": row.get("id"), "conversation": row.get("conversation_id"), "time": row.get("created"),
        "engine": row.get("engine"), "model": row.get("model"), "engine version": row.get("engine_version"),
        "options": row.get("options") or {}, "routing": row.get("routing") or {},
        "usage": {"input tokens": row.get("input_tokens"), "output tokens": row.get("output_tokens"),
                  "cost $": row.get("cost"), **(row.get("usage") or {})},
        "latency ms": row.get("latency_ms"), "first token ms": row.get("ttft_ms"),
        "finish reason": row.get("finish_reason"),
    }
    if row.get("schema"):
        out["schema"] = row["schema"]
    if row.get("error"):
        out["error"] = row["error"]
    if row.get("bad_columns"):
        out["damaged columns"] = row["bad_columns"]
    return out


def rerun_messages(client: Any, row: dict[str, Any]) -> list[Message]:
    """The row's input messages rebuilt from the log (media from the blob store)."""
    messages: list[Message] = []
    logged = row.get("input")
    for message in logged if isinstance(logged, list) else []:
        try:
            messages.append(Message(message["role"], [client.store.part_from_record(p) for p in message["parts"]]))
        except (KeyError, TypeError, ValueError, ImagineError) as exc:
            raise ImagineError(f"logged response {row.get('id')} cannot be replayed: its input is damaged "
                               f"({type(exc).__name__}: {exc})") from None
    if not messages:
        raise ImagineError(f"logged response {row.get('id')} has no input to replay")
    return messages


def _want(row: dict[str, Any]) -> Modality:
    kinds = {p.get("kind") for p in row.get("output_parts") or [] if isinstance(p, dict)}
    for kind, modality in (("image", Modality.IMAGE), ("audio", Modality.AUDIO), ("video", Modality.VIDEO)):
        if kind in kinds and not row.get("output_text"):
            return modality
    return Modality.TEXT


def build(ctx: StudioContext) -> None:
    import gradio as gr
    from gradio.context import Context

    client = ctx.client

    def load(query: str | None) -> tuple[Any, list[str], Any]:
        query = query or ""
        try:
            rows = [r for r in client.store.recent(SCAN) if matches(r, query or "")][:SHOWN]
        except ImagineError as exc:
            return gr.update(value=[]), [], f"<span class='imagine-error'>⚠️ cannot read the log: {exc}</span>"
        total = client.store.count()
        said = (f"{len(rows)} of the latest {min(total, SCAN)} responses match “{_clip(query, 40)}”" if query.strip()
                else f"latest {len(rows)} of {total} logged responses" if rows else "nothing logged yet")
        return table_rows(rows), [str(r["id"]) for r in rows], said

    with gr.Row(equal_height=True):
        search = gr.Textbox(placeholder="Search prompts, answers, engines, tasks…", show_label=False, scale=5,
                            elem_id="history-search", submit_btn=True)
        refresh = gr.Button("Refresh", scale=0, min_width=150, elem_id="history-refresh")
    said = gr.Markdown(elem_classes="imagine-meta", elem_id="history-count")
    table = gr.Dataframe(headers=HEADERS, datatype="str", interactive=False, wrap=False, max_height=330,
                         column_widths=["13%", "17%", "29%", "29%", "6%", "6%"], elem_id="history-table",
                         label="Logged responses · select a row to open it")
    ids = gr.State([])
    chosen = gr.State(None)

    with gr.Group(visible=False, elem_id="history-detail") as panel:
        title = gr.Markdown(elem_id="history-title", padding=True)
        shown_in = gr.Textbox(label="Input (this turn's messages)", lines=2, max_lines=10, interactive=False,
                              elem_id="history-input")
        with gr.Row():
            gallery = gr.Gallery(label="Images", visible=False, height=220, columns=4, elem_id="history-images")
            audio = gr.Audio(label="Audio", visible=False, interactive=False, elem_id="history-audio")
            video = gr.Video(label="Video", visible=False, interactive=False, elem_id="history-video")
        with gr.Row(equal_height=True):
            model = gr.Dropdown(ctx.models(), value=None, label="Re-run on: ENGINE:MODEL, or auto / local / cloud",
                                allow_custom_value=True, scale=4, elem_id="history-model")
            again = gr.Button("Re-run", variant="primary", scale=1, min_width=140, elem_id="history-rerun")
        with gr.Row():
            with gr.Column():
                shown_out = gr.Textbox(label="Logged answer", lines=4, max_lines=14, interactive=False,
                                       elem_id="history-output")
            with gr.Column():
                new = gr.Textbox(label="New answer", lines=4, max_lines=14, interactive=False, elem_id="history-new")
                with gr.Row():
                    new_gallery = gr.Gallery(label="New images", visible=False, height=220, columns=4)
                    new_audio = gr.Audio(label="New audio", visible=False, interactive=False)
                    new_video = gr.Video(label="New video", visible=False, interactive=False)
        with gr.Accordion("Provenance, routing, usage (as logged)", open=False):
            meta = gr.JSON(show_label=False, elem_id="history-meta")
        with gr.Accordion("The new answer: routing, latency, tokens, cost", open=False):
            new_meta = gr.JSON(show_label=False, elem_id="history-new-meta")

    def open_row(row_ids: list[str], evt: gr.SelectData) -> tuple[Any, ...]:
        index = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        hidden = (*(gr.update(value=None, visible=False),) * 3, None)
        if not isinstance(index, int) or not 0 <= index < len(row_ids):
            return (gr.update(),) * 10 + hidden
        try:
            row = client.store.get(row_ids[index])
        except ImagineError as exc:
            return (None, gr.update(visible=True), f"<span class='imagine-error'>⚠️ {exc}</span>", "", "",
                    *media_updates([]), None, "") + hidden
        parts, missing = _parts(client, [p for m in row.get("input") or [] if isinstance(m, dict)
                                         for p in m.get("parts") or []] + list(row.get("output_parts") or []))
        heading = (f"### {row['engine']}:{row['model']}  \n<span class='imagine-meta'>{row['id']} · "
                   f"{str(row.get('created') or '')[:19].replace('T', ' ')} UTC · "
                   f"{row.get('latency_ms') or 0:.0f} ms · tokens {_count(row.get('input_tokens'))} in / "
                   f"{_count(row.get('output_tokens'))} out · "
                   + ("not priced (local or unknown)" if row.get("cost") is None else f"cost ${row['cost']:g}")
                   + "</span>")
        if missing:
            heading += "\n\n<span class='imagine-error'>⚠️ media not in the blob store: " + "; ".join(missing) + "</span>"
        answer = output_text(row)
        return (row["id"], gr.update(visible=True), heading, input_text(row), answer, *media_updates(parts),
                detail(row), "") + hidden

    open_row.__annotations__["evt"] = gr.SelectData  # this module's annotations are strings Gradio cannot resolve

    async def rerun(row_id: str | None, ref: str | None) -> tuple[Any, ...]:
        none = (*(gr.update(value=None, visible=False),) * 3, None)
        if not row_id:
            return ("⚠️ open a logged response first", *none)
        if not (ref or "").strip():
            return ("⚠️ choose a model to re-run on (ENGINE:MODEL, or auto)", *none)
        try:
            row = client.store.get(row_id)
            messages = rerun_messages(client, row)
            schema = row.get("schema") if isinstance(row.get("schema"), dict) else None
            response = client.respond(messages, (ref or "auto").strip(), want=_want(row), schema=schema)
            await response
        except ImagineError as exc:
            return (f"⚠️ {exc}", *none)
        media: list[Part] = [p for p in response.parts if isinstance(p, (Image, Audio, Video))]
        text = response.text() or ("" if media else "(no text)")
        info: dict[str, Any] = {"log id": response.id, "answered by": response.answered_ref,
                                "latency s": round(response.latency_s or 0, 3),
                                "tokens in/out": [response.usage.input_tokens, response.usage.output_tokens],
                                "cost $": response.usage.cost}
        if response.routing:
            info["routing"] = response.routing
        if _want(row) is Modality.TEXT:
            ctx.remember(task="ask", model=response.answered_ref, prompt=input_text(row), attachments=[])
        return (text, *media_updates(media), info)

    outputs_list = [table, ids, said]
    search.submit(load, search, outputs_list)
    refresh.click(load, search, outputs_list)
    table.select(open_row, ids, [chosen, panel, title, shown_in, shown_out, gallery, audio, video, meta,
                                 new, new_gallery, new_audio, new_video, new_meta])
    again.click(rerun, [chosen, model], [new, new_gallery, new_audio, new_video, new_meta])
    tab = Context.block
    if isinstance(tab, gr.Tab):  # read the log afresh whenever the tab is opened
        tab.select(load, search, outputs_list)
    root = Context.root_block
    if root is not None:
        root.load(load, search, outputs_list)
