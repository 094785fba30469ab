"""Built-in tools: imagine's own tasks, offered to the model that drives an agent.

The model names media by handle (`image-1`, `audio-2`: a file the user attached or a part a tool made
earlier in the run) or by a path inside a folder the run allows; it never sees or sends base64 (a
`data:` URL is accepted too: that is how MCP clients, which have no handles, send media).
The same tools serve `imagine mcp serve` (`mcp_server.task_tools`), so an agent and an MCP client run
one implementation of each task. A tool's
media outputs come back to the loop as parts (the loop gives them handles), so an image the agent drew
stays an `Image` in the answer. Paths are resolved with symlinks followed and must stay inside an allowed
folder; URLs are refused except by `fetch`, the one tool marked as sending data, which goes through the
SSRF-safe fetcher.

Where a tool's engine runs decides its marks: a tool routed to a cloud model sends data and spends money
(`sends_data`, `side_effects`); with no model named, a task's tool runs on its local default, and `see`
and `draw` are routed under `local_only`, so data leaves the device only when a cloud model is named for
a tool (`models={"see": "openai:gpt-4o"}`).
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..errors import InputError
from ..parts import Audio, Data, Image, MediaPart, Part, Text, Vector, Video, load_part
from ..tools import Tool, as_tool
from ..media.data_url import decode_data_url, is_data_url
from .safety import inside_folders, not_a_url

if TYPE_CHECKING:
    from ..client import Client

__all__ = ["BUILTIN", "DEFAULT_TOOLS", "Workspace"]

# name -> (side_effects, sends_data, timeout seconds) for the tool on its local default engine
BUILTIN: dict[str, tuple[bool, bool, float]] = {
    "transcribe": (False, False, 300.0), "read_text": (False, False, 120.0), "see": (False, False, 300.0),
    "watch": (False, False, 900.0), "speak": (True, False, 120.0), "draw": (True, False, 600.0),
    "embed": (False, False, 120.0), "search": (False, False, 120.0), "fetch": (False, True, 60.0),
    "read_file": (False, False, 30.0), "frame": (False, False, 120.0),
}
# What `imagine agent` offers when no --tool is named: the tools that neither change anything nor send data.
DEFAULT_TOOLS = tuple(name for name, (effects, sends, _) in BUILTIN.items() if not effects and not sends)
MAX_TEXT = 20_000  # characters of a file or page handed to the model


def _clip(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n[... {len(text) - limit:,} more characters cut]"


class Workspace:
    """What one run's tools may touch: the allowed folders, the media by handle, and the client (with the
    run's policy) their tasks go through."""

    def __init__(self, client: "Client", *, allow_dirs: Sequence[str | os.PathLike[str]] = (),
                 attach: Sequence[str | os.PathLike[str] | Part] = (), models: dict[str, str] | None = None,
                 local_only: bool = False,
                 folder_hint: str = "allow one with --allow-dir DIR (allow_dirs=[...] in Python)") -> None:
        self.client = client
        self.folder_hint = folder_hint
        self.dirs = [Path(d).expanduser().resolve() for d in allow_dirs]
        for folder in self.dirs:
            if not folder.is_dir():
                raise InputError(f"allowed folder {folder} is not a folder")
        self.models = dict(models or {})
        unknown = sorted(set(self.models) - set(BUILTIN))
        if unknown:
            raise InputError(f"no built-in tool named {unknown[0]!r} to give a model to",
                             hint=f"built-in tools: {', '.join(BUILTIN)}")
        self.local_only = local_only
        self.media: dict[str, Part] = {}
        self.names: dict[str, str] = {}  # a user's name for an attachment (its path, its file name) -> handle
        self.attached: list[str] = []
        limits = client.settings.part_limits()
        for source in attach:
            part = source if isinstance(source, Part) else load_part(not_a_url(os.fspath(source), "attach"),
                                                                      limits=limits)
            handle = self.add(part)
            self.attached.append(handle)
            for name in {str(source) if not isinstance(source, Part) else "", getattr(part, "name", None) or ""}:
                if name:
                    self.names[name] = handle
                    self.names[os.path.basename(name)] = handle

    # -- media by handle ------------------------------------------------------------------------------
    def add(self, part: Part) -> str:
        """Keep `part` under a new handle such as `image-3` (numbered per kind, in the order they came)."""
        kind = part.modality.value
        handle = f"{kind}-{sum(1 for h in self.media if h.startswith(kind + '-')) + 1}"
        self.media[handle] = part
        return handle

    def describe(self) -> str:
        """The note the model reads first: which handles and folders its tools may be given."""
        lines = []
        if self.attached:
            lines.append("Files you can pass to tools by name: " + ", ".join(
                f"{h} ({getattr(self.media[h], 'name', None) or self.media[h].modality.value})" for h in self.attached))
        if self.dirs:
            lines.append("Folders whose files tools may read: " + ", ".join(str(d) for d in self.dirs))
        return "\n".join(lines)

    def inside(self, raw: str) -> Path:
        """`raw` as a real path inside one of the run's allowed folders (see `safety.inside_folders`)."""
        return inside_folders(raw, self.dirs, self.folder_hint)

    def resolve(self, ref: str, kinds: tuple[type[Part], ...], what: str) -> Part:
        """A media argument as a part: a handle, an attachment's name, a file inside an allowed folder, or a
        `data:` URL."""
        if not isinstance(ref, str) or not ref.strip():
            raise InputError(f"{what}: name a file or a handle such as image-1")
        ref = ref.strip()
        part = self.media.get(ref) or self.media.get(self.names.get(ref, ""))
        if part is None and is_data_url(ref):
            part = load_part(decode_data_url(ref, what), limits=self.client.settings.part_limits())
        if part is None:
            part = load_part(str(self.inside(not_a_url(ref, what))), limits=self.client.settings.part_limits())
        if not isinstance(part, kinds):
            wanted = " or ".join(k.modality.value for k in kinds)
            raise InputError(f"{what}: {ref} is {part.modality.value}, not {wanted}")
        return part

    # -- the tools --------------------------------------------------------------------------------------
    def _model(self, name: str) -> str | None:
        return self.models.get(name)

    def _cloud(self, name: str) -> bool:
        """Whether the tool's named model runs off the device."""
        model = self._model(name)
        if not model:
            return False
        ref = self.client.registry.expand(model)
        if ref in ("auto", "local", "cloud"):  # routed: only `local` is sure to stay on the device
            return ref != "local"
        return self.client.registry.engine_class(ref.partition(":")[0]).locality != "local"

    def tool(self, name: str) -> Tool:
        """The built-in tool `name`, bound to this workspace, with its marks and timeout."""
        if name not in BUILTIN:
            raise InputError(f"no built-in tool named {name!r}", hint=f"built-in tools: {', '.join(BUILTIN)}")
        effects, sends, timeout = BUILTIN[name]
        cloud = self._cloud(name)
        fn: Callable[..., Any] = getattr(self, f"_{name}")
        tool = as_tool(fn, side_effects=effects or cloud, sends_data=sends or cloud)
        return replace(tool, name=name, timeout=timeout)

    def _task_client(self, name: str) -> "Client":
        """The client a task tool calls through: the run's, or one routed under local_only when no model is
        named for a routed task (so nothing leaves the device unless a cloud model was named)."""
        if self._model(name):
            return self.client
        from ..client import Client

        client = self.client
        return Client(settings=client.settings, registry=client.registry, router=client.router,
                      store=client.store, policy="local_only", log_extra=client.log_extra)

    async def _transcribe(self, audio: str) -> dict[str, Any]:
        """Transcribe the speech in an audio or video file (a handle such as audio-1, or a path)."""
        from .. import tasks

        part = self.resolve(audio, (Audio, Video), "audio")
        response = await tasks.transcribe(part, self._model("transcribe"), client=self.client)
        return {"text": response.text().strip()}

    async def _read_text(self, image: str) -> dict[str, Any]:
        """Read the text in an image (OCR). The image is a handle such as image-1, or a path."""
        from .. import tasks

        part = self.resolve(image, (Image,), "image")
        response = await tasks.read_text(part, self._model("read_text"), client=self.client)
        return {"text": response.text().strip()}

    async def _see(self, image: str, question: str = "Describe this image.") -> dict[str, Any]:
        """Ask a vision model a question about an image (a handle such as image-1, or a path)."""
        from .. import tasks

        part = self.resolve(image, (Image,), "image")
        response = await tasks.see(part, question, self._model("see"), client=self._task_client("see"))
        return {"answer": response.text().strip()}

    def _watch(self, video: str) -> dict[str, Any]:
        """Watch a video: its scenes with their on-screen text, and its speech, on one timeline."""
        from ..timeline import timeline_text, watch

        part = self.resolve(video, (Video,), "video")
        assert isinstance(part, Video)
        model = self._model("watch")
        timeline = watch(part, asr_model=model, client=self.client)
        return {"timeline": _clip(timeline_text(timeline))}

    def _frame(self, video: str, seconds: float = 0.0) -> dict[str, Any]:
        """Take one frame of a video as a PNG image (image-N): the first frame at or after `seconds`."""
        import io

        from ..media.decode import iter_frames

        part = self.resolve(video, (Video,), "video")
        assert isinstance(part, Video)
        chosen, at = None, 0.0
        for when, picture in iter_frames(part.data, every=0.0, limits=self.client.settings.part_limits(),
                                         name=part.name or "video"):
            chosen, at = picture, when
            if when + 1e-6 >= seconds:
                break
        if chosen is None:
            raise InputError("video: it has no frames")
        buffer = io.BytesIO()
        chosen.save(buffer, format="PNG")
        return {"image": Image(buffer.getvalue(), mime="image/png"), "seconds": round(at, 3)}

    async def _speak(self, text: str, voice: str | None = None) -> dict[str, Any]:
        """Speak text aloud: makes an audio clip (audio-N) that is part of the answer. `voice`: a voice
        name of the speech engine (optional)."""
        from .. import tasks

        options: dict[str, Any] = {"voice": voice} if voice else {}
        response = await tasks.speak(text, self._model("speak"), client=self.client, **options)
        audio = next((p for p in response.parts if isinstance(p, Audio)), None)
        if audio is None:
            raise InputError("the speech engine returned no audio")
        return {"audio": audio, "seconds": round(audio.duration, 2)}

    async def _draw(self, prompt: str) -> dict[str, Any]:
        """Draw an image from a text prompt: makes an image (image-N) that is part of the answer."""
        from .. import tasks

        response = await tasks.draw(prompt, self._model("draw"), client=self._task_client("draw"))
        image = next((p for p in response.parts if isinstance(p, Image)), None)
        if image is None:
            raise InputError("the image engine returned no image")
        width, height = image.size
        return {"image": image, "width": width, "height": height}

    async def _embed(self, text: str, compare: list[str] | None = None) -> dict[str, Any]:
        """Embed a text as a vector; with `compare`, the cosine similarity of the text to each of those."""
        import numpy as np

        from .. import tasks

        texts = [text, *(compare or [])]
        response = await tasks.embed(texts, self._model("embed"), client=self.client)
        vectors = [p for p in response.parts if isinstance(p, Vector)]
        out: dict[str, Any] = {"vector": vectors[0], "dimensions": len(vectors[0])}
        if compare:
            first = np.asarray(vectors[0].values, dtype=np.float64)
            sims = {}
            for other, vec in zip(compare, vectors[1:]):
                v = np.asarray(vec.values, dtype=np.float64)
                sims[other] = round(float(first @ v / ((np.linalg.norm(first) * np.linalg.norm(v)) or 1.0)), 4)
            out["similarity"] = sims
        return out

    def _search(self, index: str, query: str, k: int = 5) -> dict[str, Any]:
        """Search one of the user's indexes (imagine index add ...) for a query; returns the best passages."""
        from ..index import Index

        ix = Index(index, self.client)
        try:
            hits = ix.search(query, k=max(1, min(int(k), 20)))
        finally:
            ix.close()
        return {"hits": [{"text": _clip(h.chunk.text, 1000), "source": h.chunk.citation(),
                          "score": round(float(h.score), 4)} for h in hits]}

    def _fetch(self, url: str) -> Any:
        """Fetch a public web page or file by URL: text comes back as text, media as a handle."""
        from ..media.fetch import fetch_url

        fetched = fetch_url(url, limits=self.client.settings.part_limits(),
                            allow_private=self.client.settings.allow_private_urls)
        part = load_part(fetched.data, limits=self.client.settings.part_limits())
        if isinstance(part, Text):
            return {"url": fetched.final_url, "text": _clip(part.text)}
        if isinstance(part, MediaPart):
            return {"url": fetched.final_url, part.modality.value: part}
        return {"url": fetched.final_url, "content": part}

    def _read_file(self, path: str) -> dict[str, Any]:
        """Read a text file inside the folders this run allows (a media file comes back as a handle)."""
        real = self.inside(path)
        if real.is_dir():
            return {"folder": str(real), "files": sorted(p.name + ("/" if p.is_dir() else "")
                                                        for p in real.iterdir())[:200]}
        part = load_part(str(real), limits=self.client.settings.part_limits())
        if isinstance(part, Text):
            return {"path": str(real), "text": _clip(part.text)}
        return {"path": str(real), part.modality.value: part}


def jsonable(value: Any, keep: Callable[[Part], str]) -> Any:
    """A tool's return value as JSON for the model: media and vectors become handles (`keep` stores them),
    text parts their text, data parts their value; anything else unknown is written as text."""
    if isinstance(value, Text):
        return value.text
    if isinstance(value, Data):
        return value.value
    if isinstance(value, Part):
        return keep(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v, keep) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, keep) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return str(value)
