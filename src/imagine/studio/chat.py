"""Chat: talk to any engine or router policy with text, images, audio and video; the reply streams in.

The conversation is the log's: each turn is a `Client.respond` under one conversation id, so it can be
reloaded here (or continued with `imagine chat -c ID`). "Speak the reply" adds Piper's reading of it.
A reply's routing decision, latency, tokens and cost are shown on demand under it. A failure (a file
that is not media, a model that is not there, an engine error) becomes a readable line in the chat and
the rest of the conversation stays as it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator

from ..errors import ImagineError
from ..parts import Audio, Image, Message, Modality, Part, Video, load_part
from .app import TEMP_DIR, StudioContext

__all__ = ["build", "details", "media_file", "parse_options", "turn_parts"]

_MEDIA_DIR = TEMP_DIR


def media_file(part: Part) -> str:
    """A file for Gradio to serve for a media part (content-addressed: the same part is written once)."""
    _MEDIA_DIR.mkdir(parents=True, exist_ok=True)
    suffix = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "audio/wav": ".wav",
              "audio/mpeg": ".mp3", "video/mp4": ".mp4"}.get(getattr(part, "mime", ""), "")
    path = _MEDIA_DIR / f"{part.sha256[:24]}{suffix}"  # type: ignore[attr-defined]
    if not path.exists():
        path.write_bytes(part.data)  # type: ignore[attr-defined]
    return str(path)


def turn_parts(text: str, files: list[str], limits: Any) -> list[Part | str]:
    """The parts of one user turn; an upload that is not an image, audio or video is an InputError."""
    parts: list[Part | str] = []
    for file in files:
        part = load_part(file, limits=limits)
        if not isinstance(part, (Image, Audio, Video)):
            raise ImagineError(f"{Path(file).name} is not an image, audio or video file",
                               hint="attach PNG, JPEG, WebP, WAV, MP3, FLAC, MP4 or WebM")
        parts.append(part)
    if text.strip():
        parts.append(text.strip())
    return parts


def parse_options(text: str) -> dict[str, Any]:
    """`temperature=0, max_tokens=64` -> {"temperature": 0, "max_tokens": 64}: values read as JSON when they
    are JSON (numbers, true/false, quoted strings), else kept as text. Nothing is evaluated."""
    import json

    options: dict[str, Any] = {}
    for item in [p.strip() for p in text.replace("\n", ",").split(",") if p.strip()]:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ImagineError(f"option {item!r} is not key=value", hint="e.g. temperature=0, max_tokens=64")
        try:
            options[key.strip()] = json.loads(value.strip())
        except ValueError:
            options[key.strip()] = value.strip()
    return options


def details(response: Any) -> dict[str, Any]:
    """What the "details" panel shows of a reply."""
    usage = response.usage
    out: dict[str, Any] = {"log id": response.id, "answered by": response.answered_ref,
                           "latency s": round(response.latency_s or 0, 3),
                           "first token s": round(response.ttft_s or 0, 3) if response.ttft_s else None,
                           "tokens in/out": [usage.input_tokens, usage.output_tokens], "cost $": usage.cost}
    if usage.output_tokens and response.latency_s:
        out["tokens/s"] = round(usage.output_tokens / response.latency_s, 1)
    routing = response.routing
    if routing:
        out["routing"] = routing
    return out


def _history_from_log(client: Any, conversation: str) -> tuple[list[dict[str, Any]], list[Message]]:
    messages = client.store.conversation(conversation)
    shown: list[dict[str, Any]] = []
    for message in messages:
        if message.role not in ("user", "assistant"):
            continue
        for part in message.parts:
            if isinstance(part, (Image, Audio, Video)):
                shown.append({"role": message.role, "content": {"path": media_file(part)}})
        if message.text:
            shown.append({"role": message.role, "content": message.text})
    return shown, [m for m in messages if m.role in ("user", "assistant", "system")]


def build(ctx: StudioContext) -> None:
    import gradio as gr

    client = ctx.client
    with gr.Row():
        model = gr.Dropdown(ctx.models(), value="auto", label="Model or policy", allow_custom_value=True,
                            info="ENGINE:MODEL, or auto / local / cloud: the router decides", scale=3,
                            elem_id="chat-model")
        options = gr.Textbox(label="Options", placeholder="temperature=0, max_tokens=128", scale=2,
                             elem_id="chat-options", info="the engine's options, key=value")
        speak = gr.Checkbox(label="Speak the reply", value=False, scale=1, elem_id="chat-speak")
        conversations = gr.Dropdown([], label="Reload a conversation", allow_custom_value=True, scale=2,
                                    elem_id="chat-conversations")
    chatbot = gr.Chatbot(label="Conversation", height=420, elem_id="chat-log", buttons=["copy"])
    box = gr.MultimodalTextbox(placeholder="Ask anything; attach images, audio or video",
                               file_types=["image", "audio", "video"], file_count="multiple",
                               sources=["upload", "microphone"], elem_id="chat-input", show_label=False)
    with gr.Accordion("Webcam: a snapshot goes with the next message", open=False):
        webcam = gr.Image(sources=["webcam"], type="filepath", label="Snapshot", height=240, elem_id="chat-webcam")
    with gr.Accordion("Details of the last reply", open=False):
        meta = gr.JSON(label="routing, latency, tokens, cost", elem_id="chat-details")
    with gr.Row():
        new = gr.Button("New conversation", size="sm", elem_id="chat-new")
    state = gr.State({"conversation": None, "messages": []})

    async def send(message: dict[str, Any], history: list[dict[str, Any]], chosen: str, raw_options: str,
                   say: bool, st: dict[str, Any], snapshot: str | None) -> AsyncIterator[Any]:
        from ..engine import new_id

        text, files = (message or {}).get("text", ""), list((message or {}).get("files", []))
        if snapshot:
            files.append(snapshot)  # the webcam's picture rides along with this message
        history = list(history or [])
        for file in files:
            history.append({"role": "user", "content": {"path": file}})
        if text.strip():
            history.append({"role": "user", "content": text})
        try:
            parts = turn_parts(text, files, client.settings.part_limits())
            opts = parse_options(raw_options or "")
            if not parts:
                raise ImagineError("nothing to send", hint="type a message or attach a file")
        except ImagineError as exc:
            history.append({"role": "assistant", "content": f"⚠️ {exc}"})
            yield history, None, st, gr.update(value=None)
            return
        conversation = st.get("conversation") or new_id()
        user = Message.user(*parts)
        messages = [*st.get("messages", []), user]
        history.append({"role": "assistant", "content": ""})
        yield history, None, st, gr.update(value=None)
        try:
            response = client.respond(messages, (chosen or "auto").strip(), want=Modality.TEXT, options=opts or None,
                                      new_messages=[user], conversation_id=conversation)
            async for delta in response:
                history[-1]["content"] += delta
                yield history, None, st, gr.update()
            await response
        except ImagineError as exc:
            history[-1]["content"] = (history[-1]["content"] + f"\n\n⚠️ {exc}").strip()
            yield history, None, st, gr.update()
            return
        st = {"conversation": conversation, "messages": [*messages, response.as_message()]}
        ctx.remember(task="ask", model=response.answered_ref, prompt=text, options=opts,
                     attachments=[Path(f).name for f in files])
        if say and response.text().strip():
            try:
                spoken = client.speak(response.text())
                await spoken
                history.append({"role": "assistant", "content": {"path": media_file(spoken.parts[0])}})
            except ImagineError as exc:
                history.append({"role": "assistant", "content": f"⚠️ could not speak the reply: {exc}"})
        yield history, details(response), st, gr.update()

    def recent() -> Any:
        rows = client.store.recent(200)
        seen: list[str] = []
        for row in rows:
            if row.get("conversation_id") and row["conversation_id"] not in seen:
                seen.append(row["conversation_id"])
        return gr.update(choices=seen[:30])

    def reload(conversation: str) -> tuple[Any, Any]:
        if not conversation:
            return gr.update(), gr.update()
        try:
            shown, messages = _history_from_log(client, conversation.strip())
        except ImagineError as exc:
            return [{"role": "assistant", "content": f"⚠️ {exc}"}], {"conversation": None, "messages": []}
        return shown, {"conversation": conversation.strip(), "messages": messages}

    box.submit(send, [box, chatbot, model, options, speak, state, webcam], [chatbot, meta, state, box]).then(
        lambda: None, None, webcam)  # a snapshot is sent once
    conversations.focus(recent, None, conversations)
    conversations.change(reload, conversations, [chatbot, state])
    new.click(lambda: ([], {"conversation": None, "messages": []}, None), None, [chatbot, state, meta])
