"""Flows: pick an example or upload a YAML flow, run it with live progress, browse what it wrote.

The editor holds the flow as YAML; "Run" saves it to a fresh folder (beside links to the example's own
files, so its relative inputs and sub-flows resolve as they would next to the example), loads it with the
real loader (`imagine.flows.Flow`: every error names line and column) and runs it locally into a temp
output folder, the progress of each step shown as it goes. Then the output files are listed; opening one
previews it (text and JSON, audio, images, video). "Save as flow" turns what the person just did in Chat,
Compare or Tasks (this browser session's, `StudioContext.last_action()`) into a one-step flow over inputs of that kind.
"""

from __future__ import annotations

import asyncio
import html
import json
import mimetypes
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, AsyncIterator

import yaml

from ..errors import ImagineError
from .app import TEMP_DIR, StudioContext

__all__ = ["Progress", "build", "examples_dir", "flow_from_action", "output_rows", "prepare"]

_WORK = TEMP_DIR / "flows"
_TEXT = {".txt", ".json", ".jsonl", ".ndjson", ".csv", ".md", ".yaml", ".yml", ".srt", ".vtt", ".tsv"}
_PREVIEW_BYTES = 200_000
# what each task reads, and the folder pattern a flow over files of that kind uses
_TAKES = {"ask": "text", "speak": "text", "draw": "text", "embed": "text", "see": "image", "read_text": "image",
          "edit": "image", "transcribe": "audio", "watch": "video"}
_GIVES = {"speak": "audio", "draw": "image", "edit": "image", "embed": "vector"}


def examples_dir() -> Path | None:
    """The repository's examples/flows when the package runs from a checkout (not from an installed wheel)."""
    here = Path(__file__).resolve()
    for parent in here.parents[:5]:
        candidate = parent / "examples" / "flows"
        if candidate.is_dir() and any(candidate.glob("*.yaml")):
            return candidate
    return None


def examples() -> dict[str, Path]:
    folder = examples_dir()
    return {p.name: p for p in sorted(folder.glob("*.yaml"))} if folder else {}


def _name(text: str, fallback: str = "flow") -> str:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        data = None
    name = str(data.get("name") or fallback) if isinstance(data, dict) else fallback
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip("-.") or "flow"
    return safe[:60]


def prepare(text: str, base: Path | None, name: str) -> Path:
    """Write the editor's YAML to a fresh folder as `name`.yaml; with `base` (the example's folder) the
    folder also links to each of base's files, so the flow's relative paths mean what they mean there."""
    folder = _WORK / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    path = folder / (name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    if base is not None and base.is_dir():
        for child in base.iterdir():
            if child.name != path.name and not child.name.startswith("."):
                (folder / child.name).symlink_to(child.resolve())
    path.write_text(text, encoding="utf-8")
    return path


def _readable(exc: BaseException, path: Path | None) -> str:
    """An error line with the temp folder taken out of file names (line:column stays)."""
    text = str(exc)
    if path is not None:
        text = text.replace(str(path), path.name).replace(str(path.parent) + "/", "")
    hint = getattr(exc, "hint", None)
    return text + (f"\nhint: {hint}" if hint and hint not in text else "")


class Progress:
    """The runner's progress callback, kept as counts: items total/finished, and per step its statuses."""

    def __init__(self, steps: list[str]) -> None:
        self.total: int | None = None
        self.items: dict[str, int] = {}
        self.steps: dict[str, dict[str, int]] = {s: {} for s in steps}
        self.last = ""
        self.changed = asyncio.Event()

    def __call__(self, step: str, key: str, status: str) -> None:
        if step == "total":
            self.total = int(status)
        elif step == "item":
            self.items[status] = self.items.get(status, 0) + 1
        else:
            counts = self.steps.setdefault(step, {})
            counts[status] = counts.get(status, 0) + 1
            self.last = f"{step} · {key[-40:]}: {status}"
        self.changed.set()

    def html(self, state: str, elapsed: float) -> str:
        finished = sum(self.items.values())
        total = self.total or 0
        rows = [_bar("items", finished, total, ", ".join(f"{n} {s}" for s, n in sorted(self.items.items())))]
        for step, counts in self.steps.items():
            rows.append(_bar(step, sum(counts.values()), total,
                             ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))))
        head = f"<b>{html.escape(state)}</b> · {finished}/{total if self.total is not None else '?'} items · {elapsed:.1f} s"
        if self.last and state == "running":
            head += f" · <span class='imagine-meta'>{html.escape(self.last)}</span>"
        return f"<div id='flows-progress-box' style='padding:4px 2px'><p>{head}</p>" + "".join(rows) + "</div>"


def _bar(label: str, done: int, total: int, note: str) -> str:
    width = 0 if not total else min(100, round(100 * done / total))
    return (f"<div style='display:flex;align-items:center;gap:12px;margin:4px 0'>"
            f"<code style='flex:0 0 9rem;overflow:hidden;text-overflow:ellipsis'>{html.escape(label)}</code>"
            f"<div style='flex:1 1 auto;background:#e5e7eb;border-radius:6px;height:10px'>"
            f"<div style='width:{width}%;background:#6366f1;border-radius:6px;height:10px'></div></div>"
            f"<span style='flex:0 0 14rem;white-space:nowrap'>{done}/{total or '?'}"
            f"<span class='imagine-meta'> · {html.escape(note or 'waiting')}</span></span></div>")


def output_rows(out: Path) -> list[list[Any]]:
    """file (relative), kind, size of everything a run wrote, the manifest last."""
    files = sorted((p for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")),
                   key=lambda p: (p.name == "manifest.json", str(p.relative_to(out))))
    rows: list[list[Any]] = []
    for path in files:
        rows.append([str(path.relative_to(out)), _kind(path), _size(path.stat().st_size)])
    return rows


def _kind(path: Path) -> str:
    if path.suffix.lower() in _TEXT:
        return path.suffix.lower().lstrip(".")
    mime = mimetypes.guess_type(path.name)[0] or ""
    return mime.split("/")[0] if mime.startswith(("audio/", "image/", "video/")) else "file"


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def preview(path: Path) -> tuple[Any, Any, Any, Any]:
    """Code, Audio, Image and Video updates showing one output file."""
    import gradio as gr

    hide = gr.update(value=None, visible=False)
    kind = _kind(path)
    if kind in ("audio", "image", "video"):
        shown = gr.update(value=str(path), visible=True, label=path.name)
        return (hide, shown if kind == "audio" else hide, shown if kind == "image" else hide,
                shown if kind == "video" else hide)
    data = path.read_bytes()[:_PREVIEW_BYTES]
    text = data.decode("utf-8", errors="replace")
    language = None
    if kind == "json":
        language = "json"
    elif kind in ("yaml", "yml"):
        language = "yaml"
    elif kind == "md":
        language = "markdown"
    if path.stat().st_size > _PREVIEW_BYTES:
        text += f"\n… ({_size(path.stat().st_size)}; the first {_size(_PREVIEW_BYTES)} shown)"
    elif kind == "file" and b"\0" in data:
        text = f"({_size(path.stat().st_size)} of binary data)"
    return gr.update(value=text, language=language, visible=True, label=path.name), hide, hide, hide


# -- save as flow ---------------------------------------------------------------------------------

def _kind_of_name(name: str) -> str | None:
    mime = mimetypes.guess_type(name)[0] or ""
    return mime.split("/")[0] if mime.startswith(("image/", "audio/", "video/")) else None


def flow_from_action(action: dict[str, Any]) -> str:
    """A one-step flow YAML that does what `action` did (task, model, prompt, options) over a collection of
    inputs of that kind: the prompt typed as a list to add to, or a folder of files like the one given."""
    task = str(action.get("task") or "ask")
    if task not in _TAKES:
        raise ImagineError(f"“{task}” cannot be saved as a flow step",
                           hint=f"flow steps: {', '.join(sorted(_TAKES))}")
    models = [str(m) for m in action.get("models") or [] if m]  # compare: several models, the first is kept
    model = action.get("model") or (models[0] if models else None)
    prompt = str(action.get("prompt") or action.get("text") or "").strip()
    names = [str(n) for n in action.get("attachments") or action.get("inputs") or action.get("files") or [] if n]
    options = action.get("options") if isinstance(action.get("options"), dict) else {}
    takes = _TAKES[task]
    media = next((k for k in map(_kind_of_name, names) if k), None)
    if takes != "text":
        media = takes
    step: dict[str, Any] = {"task": task}
    if model and str(model).strip() not in ("", "auto"):
        step["model"] = str(model).strip()
    inputs: dict[str, Any]
    if media is None:  # text in: the prompt as the first item of a list
        inputs = {"texts": {"list": [prompt or "Hello!"]}}
        step["input"] = "${item}"
        each = "texts"
    else:
        suffix = next((Path(n).suffix.lower() for n in names if _kind_of_name(n) == media and Path(n).suffix), "")
        folder = {"image": "images", "audio": "audio", "video": "videos"}[media]
        inputs = {folder: {"folder": f"inputs/{folder}", "pattern": f"*{suffix}" if suffix else "*"}}
        each = folder
        if takes == "text":  # ask with an attachment: the prompt, and each file attached
            step["input"] = prompt or "Describe this."
            step["attach"] = ["${item.path}"]
        else:
            step["input"] = "${item.path}"
            if prompt and task in ("see", "edit"):
                step["prompt"] = prompt
    if options:
        step["options"] = dict(options)
    gives = _GIVES.get(task, "text")
    output = {"text": {"from": f"${{{task}.text}}", "file": "answers.jsonl"},
              "audio": {"from": f"${{{task}.audio}}", "file": "audio/${item.name}.wav"},
              "image": {"from": f"${{{task}.image}}", "file": "images/${item.name}.png"},
              "vector": {"from": {"vector": f"${{{task}.vector}}"}, "file": "vectors.jsonl"}}[gives]
    spec = {"name": f"my-{task.replace('_', '-')}", "description": f"saved from the studio: {task}"
            + (f" on {step['model']}" if "model" in step else "") + " over each input",
            "inputs": inputs, "for_each": each, "steps": {task: step}, "outputs": {gives: output}}
    where = ("put the files in inputs/" + each + "/ next to this file, or run with --input " + each + "=FOLDER"
             if media else "add more texts to the list, or use csv:/jsonl: with a column per field")
    head = (f"# Saved from the studio: {task}" + (f" on {step['model']}" if "model" in step else "") + ".\n"
            + (f"# Compared: {', '.join(models)} (set model: to another to run on it)\n" if len(models) > 1 else "")
            + f"# {where}\n#   imagine flow run {spec['name']}.yaml -O out/\n")
    return head + yaml.safe_dump(spec, sort_keys=False, allow_unicode=True, width=100)


# -- the tab ------------------------------------------------------------------------------------

def build(ctx: StudioContext) -> None:
    import gradio as gr

    client = ctx.client
    found = examples()
    first = "speech_check.yaml" if "speech_check.yaml" in found else next(iter(found), None)

    def read_example(name: str | None) -> str:
        path = found.get(name or "")
        return path.read_text(encoding="utf-8") if path else ""

    with gr.Row(equal_height=True):
        example = gr.Dropdown(list(found), value=first, label="Example flows" if found else
                              "No example flows here (an installed package): upload one",
                              interactive=bool(found), scale=3, elem_id="flows-example")
        upload = gr.UploadButton("Upload YAML…", file_types=[".yaml", ".yml"], scale=1, min_width=150,
                                 elem_id="flows-upload")
        save = gr.Button("Save last action as flow", scale=1, min_width=200, elem_id="flows-save")
    editor = gr.Code(read_example(first), language="yaml", lines=16, max_lines=28, interactive=True,
                     label=first or "flow.yaml", elem_id="flows-yaml")
    source = gr.State({"name": first or "flow.yaml", "base": str(found[first].parent) if first else None})
    with gr.Row(equal_height=True):
        run = gr.Button("Run", variant="primary", scale=2, elem_id="flows-run")
        check = gr.Button("Check", scale=1, elem_id="flows-check")
        download = gr.DownloadButton("Download YAML", scale=1, elem_id="flows-download", visible=False)
    error = gr.Markdown(elem_id="flows-error", elem_classes="imagine-error")
    status = gr.HTML(elem_id="flows-progress")
    with gr.Row():
        with gr.Column(scale=2):
            files = gr.Dataframe(headers=["file", "kind", "size"], datatype="str", interactive=False,
                                 max_height=360, column_widths=["64%", "16%", "20%"], visible=False,
                                 label="Outputs · select a file to preview it", elem_id="flows-outputs")
            bundle = gr.DownloadButton("Download all outputs (.zip)", visible=False, size="sm",
                                       elem_id="flows-zip")
        with gr.Column(scale=3):
            shown_text = gr.Code(visible=False, interactive=False, lines=10, max_lines=24, wrap_lines=True,
                                 elem_id="flows-preview")
            shown_audio = gr.Audio(visible=False, interactive=False, elem_id="flows-audio")
            shown_image = gr.Image(visible=False, interactive=False, elem_id="flows-image")
            shown_video = gr.Video(visible=False, interactive=False, elem_id="flows-video")
    out_dir = gr.State(None)
    previews = [shown_text, shown_audio, shown_image, shown_video]

    def choose(name: str | None) -> tuple[Any, ...]:
        if not name or name not in found:
            return gr.update(), gr.update(), "", gr.update(visible=False)
        return (gr.update(value=read_example(name), label=name), {"name": name, "base": str(found[name].parent)},
                "", gr.update(visible=False))

    def uploaded(file: Any) -> tuple[Any, ...]:
        path = Path(file if isinstance(file, str) else getattr(file, "name", ""))
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            return gr.update(), gr.update(), f"⚠️ cannot read {path.name}: {exc}", gr.update()
        return (gr.update(value=text, label=path.name), {"name": path.name, "base": None}, "",
                gr.update(value=None))

    def load(text: str, src: dict[str, Any]) -> tuple[Any, Path]:
        from ..flows import Flow

        if not (text or "").strip():
            raise ImagineError("the editor is empty", hint="pick an example, upload a YAML file or write one")
        name = str(src.get("name") or "flow.yaml")
        path = prepare(text, Path(src["base"]) if src.get("base") else None, name)
        try:
            return Flow.load(path, client=client), path
        except ImagineError as exc:
            raise ImagineError(_readable(exc, path)) from None

    def checked(text: str, src: dict[str, Any]) -> tuple[str, str]:
        try:
            flow, _ = load(text, src)
        except ImagineError as exc:
            return f"⚠️ {exc}", ""
        return "", f"<p><b>ok</b> · {len(flow.spec.steps)} steps</p><pre>{html.escape(flow.show())}</pre>"

    async def go(text: str, src: dict[str, Any]) -> AsyncIterator[tuple[Any, ...]]:
        keep = (gr.update(),) * 7
        hidden = (gr.update(value=None, visible=False), gr.update(visible=False), None,
                  *(gr.update(value=None, visible=False),) * 4)
        try:
            flow, path = load(text, src)
        except ImagineError as exc:
            yield (f"⚠️ {exc}", "", *hidden)
            return
        out = path.parent / "out"
        progress = Progress(list(flow.graph.order))
        started = time.monotonic()
        yield ("", progress.html("starting", 0), *hidden)
        task = asyncio.ensure_future(flow.arun(out=out, client=client, progress=progress))
        try:
            while not task.done():
                progress.changed.clear()
                try:
                    await asyncio.wait_for(asyncio.shield(progress.changed.wait()), timeout=0.5)
                except asyncio.TimeoutError:
                    pass
                if not task.done():
                    yield ("", progress.html("running", time.monotonic() - started), *keep)
            result = task.result()
        except ImagineError as exc:
            yield (f"⚠️ {_readable(exc, path)}", progress.html("failed", time.monotonic() - started), *hidden)
            return
        except Exception as exc:  # an engine's own error: a line, and the page goes on
            yield (f"⚠️ the run failed: {type(exc).__name__}: {exc}",
                   progress.html("failed", time.monotonic() - started), *hidden)
            return
        finally:
            if not task.done():  # the page went away: stop the run
                task.cancel()
        counts = ", ".join(f"{n} {s}" for s, n in sorted(result.manifest.get("counts", {}).items())) or "no items"
        failures = [f"item {i['key']}: {i.get('error')}" for i in result.items if i["status"] == "failed"]
        message = ("⚠️ " + "; ".join(failures[:3])) if failures else ""
        rows = output_rows(result.out_dir)
        state = f"{result.status} — run {result.run_id} ({counts})"
        zipped = shutil.make_archive(str(path.parent / f"{path.stem}-outputs"), "zip", result.out_dir)
        first_file = next((r[0] for r in rows if r[1] in ("jsonl", "json", "txt") and r[0] != "manifest.json"),
                          rows[0][0] if rows else None)
        shown = preview(result.out_dir / first_file) if first_file else (gr.update(visible=False),) * 4
        yield (message, progress.html(state, time.monotonic() - started),
               gr.update(value=rows, visible=True), gr.update(value=zipped, visible=True), str(result.out_dir),
               *shown)

    def open_file(folder: str | None, evt: gr.SelectData) -> tuple[Any, ...]:
        index = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        if not folder or not isinstance(index, int):
            return (gr.update(),) * 4
        rows = output_rows(Path(folder))
        if not 0 <= index < len(rows):
            return (gr.update(),) * 4
        return preview(Path(folder) / rows[index][0])

    open_file.__annotations__["evt"] = gr.SelectData  # this module's annotations are strings Gradio cannot resolve

    def save_as_flow() -> tuple[Any, ...]:
        action = ctx.last_action()
        if not action:
            return (gr.update(), gr.update(), "⚠️ nothing to save yet: ask something in Chat, Compare or Tasks first",
                    gr.update(visible=False))
        try:
            text = flow_from_action(action)
        except ImagineError as exc:
            return gr.update(), gr.update(), f"⚠️ {exc}", gr.update(visible=False)
        name = _name(text, "my-flow") + ".yaml"
        folder = _WORK / "saved" / uuid.uuid4().hex[:8]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
        return (gr.update(value=text, label=name), {"name": name, "base": None}, "",
                gr.update(value=str(folder / name), visible=True))

    example.change(choose, example, [editor, source, error, download])
    upload.upload(uploaded, upload, [editor, source, error, download])
    check.click(checked, [editor, source], [error, status])
    run.click(go, [editor, source], [error, status, files, bundle, out_dir, *previews])
    files.select(open_file, out_dir, previews)
    save.click(save_as_flow, None, [editor, source, error, download])
