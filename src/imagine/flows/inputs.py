"""Inputs and items: what a flow runs over, each item with a stable key.

The key is what run state and `--watch` remember an item by, so it must not change between runs: a
file's path relative to the input's root, or the content hash of a list value or a CSV/JSONL row.
"""

from __future__ import annotations

import csv
import glob as globlib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .spec import FlowError, InputSpec

__all__ = ["Item", "input_value", "items_of", "resolve_path"]


@dataclass(frozen=True)
class Item:
    """One unit of a `for_each`: `fields` are what `${item.field}` reads, `value` what `${item}` reads."""

    key: str
    index: int
    value: Any
    fields: dict[str, Any]

    def record(self) -> dict[str, Any]:
        return {"key": self.key, "index": self.index, **{k: v for k, v in self.fields.items()
                                                         if isinstance(v, (str, int, float, bool)) or v is None}}


def resolve_path(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _file_item(path: Path, index: int, root: Path) -> Item:
    try:
        key = str(path.relative_to(root))
    except ValueError:
        key = str(path)
    fields = {"path": str(path), "name": path.stem, "filename": path.name, "ext": path.suffix.lstrip("."),
              "folder": str(path.parent)}
    return Item(key, index, str(path), fields)


def _value_item(value: Any, index: int) -> Item:
    digest = hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]
    if isinstance(value, dict):
        fields = {str(k): v for k, v in value.items()}
        fields.setdefault("name", str(fields.get("name") or f"{index:04d}"))
    else:
        fields = {"value": value, "text": str(value), "name": f"{index:04d}"}
    return Item(f"{index:04d}-{digest}", index, value, fields)


def items_of(name: str, spec: InputSpec, base: Path) -> list[Item]:
    """The items of a collection input, in a stable order (files sorted by path)."""
    kind = spec.kind
    if kind == "list":
        return [_value_item(v, i) for i, v in enumerate(spec.list or [])]
    if kind in ("glob", "folder"):
        if kind == "glob":
            pattern = str(resolve_path(spec.glob or "", base))
            root = Path(pattern.split("*")[0].split("?")[0].split("[")[0])
            root = root if root.is_dir() else root.parent
            paths = [Path(p) for p in globlib.glob(pattern, recursive=True)]
        else:
            root = resolve_path(spec.folder or "", base)
            if not root.is_dir():
                raise FlowError(f"input {name}: {root} is not a folder")
            paths = list(root.glob(spec.pattern))
        files = sorted(p for p in paths if p.is_file() and not p.name.startswith("."))
        return [_file_item(p, i, root) for i, p in enumerate(files)]
    if kind == "file":
        path = resolve_path(spec.file or "", base)
        return [_file_item(path, 0, path.parent)]
    path = resolve_path(spec.csv or spec.jsonl or "", base)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FlowError(f"input {name}: cannot read {path}: {exc.strerror or exc}") from None
    rows: list[Any]
    if kind == "csv":
        rows = list(csv.DictReader(text.splitlines()))
    else:
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise FlowError(f"input {name}: {path}:{n}: not JSON: {exc.msg}") from None
    return [_value_item(r, i) for i, r in enumerate(rows)]


def input_value(name: str, spec: InputSpec, base: Path) -> Any:
    """What `${inputs.name}` reads: a file's path, or the list of item values of a collection."""
    if spec.kind == "file":
        path = resolve_path(spec.file or "", base)
        if not path.exists():
            raise FlowError(f"input {name}: no such file {path}")
        return str(path)
    return [item.value for item in items_of(name, spec, base)]
