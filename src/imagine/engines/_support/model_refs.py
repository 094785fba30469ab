"""What a model name refers to: a bundled model, a local path, a hub id, or a bare name. One set of rules.

The MODEL in `ENGINE:MODEL` is a string, and every local engine has to decide whether `org/model` is a
folder next to the user or a repository on the Hugging Face hub. Decided per engine, the rules drifted
apart (`a/b/c` was a hub file for one engine and a folder for another). They are decided here, in order:

1. **bundled** — one of the engine's bundled names (ignoring case and surrounding spaces): the model that
   ships inside an installed package (`smollm2`, `tiny.en`, `joe`, ...). Checked first, so a bundled
   name always means the bundled model.
2. **local** — it says it is a path: it exists on disk; or it starts with `.`, `/` or `~`; or it holds a
   backslash or a drive letter (`C:`); or it ends with one of the engine's file suffixes (`.onnx`).
3. **hub** — it has the shape of the engine's hub reference: `OWNER/NAME` (a repository), or with
   `hub_file=True` `OWNER/NAME/FILE` (a file in one, FILE may hold more slashes or a glob). OWNER and
   NAME are the characters the hub allows: letters, digits, `-`, `_` and `.`.
4. **local** — it holds a `/` but is not hub-shaped: a relative path (`models/x.gguf`, `a/b/c`).
5. a bare word (no `/`): **name** — what the engine's own table knows (a faster-whisper size, a Piper
   voice, a sentence-transformers name) — or, for engines that have no names (`bare="path"`), **local**.

Engines whose models never come from the hub pass `hub=None` and step 3 is skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Iterable, Literal

__all__ = ["ModelRef", "parse_model_ref"]

BUNDLED: Final = "bundled"
LOCAL: Final = "local"
HUB: Final = "hub"
NAME: Final = "name"
Kind = Literal["bundled", "local", "hub", "name"]

_SEGMENT = re.compile(r"[\w.-]+")
_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")


@dataclass(frozen=True)
class ModelRef:
    """A parsed model name. `path` is the text as a path (user-expanded, not resolved; what a local ref
    names); `repo` and `file` are set for hub refs (`file` only with hub_file=True)."""
    text: str            # the name as given, stripped
    kind: Kind
    path: Path
    repo: str | None = None
    file: str | None = None
    explicit: bool = False  # local because the text itself says path (rule 2), not only by elimination

    @property
    def is_bundled(self) -> bool:
        return self.kind == BUNDLED

    @property
    def is_local(self) -> bool:
        return self.kind == LOCAL

    @property
    def is_hub(self) -> bool:
        return self.kind == HUB

    @property
    def is_name(self) -> bool:
        return self.kind == NAME


def _hub_shaped(text: str, with_file: bool) -> tuple[str, str | None] | None:
    pieces = text.split("/", 2) if with_file else text.split("/")
    if len(pieces) != (3 if with_file else 2):
        return None
    owner, name = pieces[0], pieces[1]
    if not (_SEGMENT.fullmatch(owner) and _SEGMENT.fullmatch(name)) or owner in (".", "..") or name in (".", ".."):
        return None
    if with_file and not pieces[2].strip("/"):
        return None
    return f"{owner}/{name}", pieces[2] if with_file else None


def parse_model_ref(model: str, *, bundled: Iterable[str] = (), hub: bool = True, hub_file: bool = False,
                    bare: Literal["name", "path"] = "name", suffixes: tuple[str, ...] = ()) -> ModelRef:
    """Classify `model` by the rules in this module's docstring. Parameters say what the engine takes:
    `bundled` its bundled names; `hub` whether it loads from the hub at all, `hub_file` whether a hub
    reference names a file in a repo (llama-cpp's GGUFs) rather than the repo; `bare` what a word
    without a slash is; `suffixes` the file endings that mark a path."""
    text = model.strip()
    path = Path(text).expanduser()
    if text.lower() in {b.lower() for b in bundled}:
        return ModelRef(text, BUNDLED, path)
    says_path = (text.startswith((".", "/", "~")) or "\\" in text or _DRIVE.match(text) is not None
                 or (bool(suffixes) and text.lower().endswith(tuple(s.lower() for s in suffixes))))
    if says_path or (text and path.exists()):
        return ModelRef(text, LOCAL, path, explicit=True)
    if hub:
        shaped = _hub_shaped(text, hub_file)
        if shaped is not None:
            return ModelRef(text, HUB, path, repo=shaped[0], file=shaped[1])
    if "/" in text or bare == "path":
        return ModelRef(text, LOCAL, path)
    return ModelRef(text, NAME, path)
