"""The flow file: YAML in, pydantic models out, and a line:column for every path in it.

Loading never evaluates anything: `yaml.SafeLoader` builds plain values, and the same loader's node tree
(`yaml.compose`) gives each path (`("steps", "hear", "task")`) the mark where it was written, so every
error — pydantic's, or the graph checks in `graph.py` — can say `flow.yaml:12:11: ...`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, List, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import InputError

__all__ = ["FlowError", "FlowSpec", "InputSpec", "Marks", "OutputSpec", "StepSpec", "When", "load_spec"]

Path_ = tuple[str | int, ...]
OPS = ("eq", "ne", "lt", "le", "gt", "ge", "contains", "not_contains", "startswith", "endswith", "empty",
       "not_empty")


class FlowError(InputError):
    """A flow file that cannot run as written; the message starts with `file:line:column:` and the field."""


class Marks:
    """Path -> (line, column), both 1-based, read from the YAML node tree."""

    def __init__(self, file: str, root: yaml.Node | None) -> None:
        self.file = file
        self.at: dict[Path_, tuple[int, int]] = {}
        self.key_at: dict[Path_, tuple[int, int]] = {}
        if root is not None:
            self._walk(root, ())

    def _walk(self, node: yaml.Node, path: Path_) -> None:
        self.at[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = (*path, str(key.value))
                self.key_at[sub] = (key.start_mark.line + 1, key.start_mark.column + 1)
                self._walk(value, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, value in enumerate(node.value):
                self._walk(value, (*path, i))

    def where(self, path: Path_, *, key: bool = False) -> str:
        """`file:line:col` of the deepest known prefix of `path` (a missing field points at its parent)."""
        path = tuple(path)
        while path:
            found = (self.key_at if key else self.at).get(path) or self.at.get(path)
            if found:
                return f"{self.file}:{found[0]}:{found[1]}"
            path = path[:-1]
        line, col = self.at.get((), (1, 1))
        return f"{self.file}:{line}:{col}"

    def error(self, path: Path_, message: str, *, key: bool = False, hint: str | None = None) -> FlowError:
        field = ".".join(str(p) for p in path) or "flow"
        return FlowError(f"{self.where(path, key=key)}: {field}: {message}", hint=hint)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class When(_Model):
    """A plain comparison, never code: `{left: "${hear.text}", op: contains, right: "hello"}`."""

    left: Any
    op: Literal["eq", "ne", "lt", "le", "gt", "ge", "contains", "not_contains", "startswith", "endswith",
                "empty", "not_empty"]
    right: Any = None


class InputSpec(_Model):
    """One named input: exactly one of a file, a glob, a folder (with `pattern`), an inline list, or the
    rows of a CSV or JSONL file. Relative paths are read from the flow file's folder."""

    file: str | None = None
    glob: str | None = None
    folder: str | None = None
    pattern: str = "*"
    list: List[Any] | None = None  # noqa: UP006 - the field is named `list`
    csv: str | None = None
    jsonl: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "InputSpec":
        given = [k for k in ("file", "glob", "folder", "list", "csv", "jsonl") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of file, glob, folder, list, csv, jsonl"
                             + (f" (got {', '.join(given)})" if given else ""))
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("file", "glob", "folder", "list", "csv", "jsonl") if getattr(self, k) is not None)

    @property
    def is_collection(self) -> bool:
        return self.kind != "file"

    @classmethod
    def from_path(cls, value: str) -> "InputSpec":
        """`--input name=VALUE` and the YAML shorthand `name: VALUE`: the kind read from the value."""
        if any(c in value for c in "*?["):
            return cls(glob=value)
        if value.endswith("/") or Path(value).is_dir():
            return cls(folder=value)
        if value.lower().endswith(".csv"):
            return cls(csv=value)
        if value.lower().endswith((".jsonl", ".ndjson")):
            return cls(jsonl=value)
        return cls(file=value)


class StepSpec(_Model):
    """One step: a task (or another flow file) with its inputs as `${...}` templates."""

    task: str | None = None
    flow: str | None = None
    input: Any = None
    prompt: str | None = None
    attach: list[str] = Field(default_factory=list)
    reference: str | None = None  # the `wer` step: the text the input is scored against
    inputs: dict[str, Any] = Field(default_factory=dict)  # a flow step: the sub-flow's inputs
    model: str | None = None
    policy: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    when: When | None = None
    retries: int = Field(default=0, ge=0, le=20)
    backoff: float = Field(default=0.5, ge=0, le=600)
    on_error: Literal["fail", "skip", "default"] = "fail"
    default: dict[str, Any] | None = None
    save: str | None = None  # a file name template for the step's main output
    num_gpus: float = Field(default=0, ge=0, le=64)  # the Ray executor reserves this much GPU per item

    @model_validator(mode="after")
    def _task_or_flow(self) -> "StepSpec":
        if (self.task is None) == (self.flow is None):
            raise ValueError("give exactly one of task or flow")
        if self.on_error == "default" and self.default is None:
            raise ValueError("on_error: default needs a `default:` mapping of field -> value")
        return self

    def digest(self) -> str:
        """What the cache key takes from the step itself (not its name, not what decides retries)."""
        keep = self.model_dump(exclude={"when", "retries", "backoff", "on_error", "default", "save",
                                           "num_gpus"})
        return hashlib.sha256(yaml.safe_dump(keep, sort_keys=True).encode()).hexdigest()


class OutputSpec(_Model):
    """A named output: the value `from` takes, written to `file` (a template) under the output folder. A
    file name shared by every item ending in .jsonl collects one line per item. `from` may be a mapping of
    field -> reference: one JSON record (a vector as its numbers), whose fields a .jsonl line takes as its
    own — so a searchable index is one row per item with its text and its vector side by side."""

    from_: str | dict[str, str] = Field(alias="from")
    file: str | None = None


class FlowSpec(_Model):
    name: str | None = None
    description: str | None = None
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    for_each: str | None = None
    steps: dict[str, StepSpec]
    outputs: dict[str, OutputSpec] = Field(default_factory=dict)
    concurrency: dict[str, int] = Field(default_factory=dict)

    @field_validator("inputs", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: ({"file": v} if isinstance(v, str) else {"list": v} if isinstance(v, list) else v)
                    for k, v in value.items()}
        return value

    @field_validator("steps")
    @classmethod
    def _some_steps(cls, value: dict[str, StepSpec]) -> dict[str, StepSpec]:
        if not value:
            raise ValueError("a flow needs at least one step")
        return value


def _loc_path(loc: tuple[Any, ...]) -> Path_:
    """pydantic's error location as a YAML path (model-level validators add no key of their own)."""
    return tuple(str(p) if not isinstance(p, int) else p for p in loc if p not in ("function-after",))


def load_spec(path: str | Path, text: str | None = None) -> tuple[FlowSpec, Marks, str]:
    """Parse and validate the file's shape; returns (spec, marks, sha256 of the text)."""
    file = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise FlowError(f"{file}: no such flow file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise FlowError(f"{file}: cannot read the flow file: {exc}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else file
        raise FlowError(f"{where}: flow: not valid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise FlowError(f"{file}:1:1: flow: not valid YAML: {exc}") from None
    marks = Marks(file, root)
    if not isinstance(data, dict):
        raise marks.error((), "a flow file is a mapping with `steps:` (and inputs, for_each, outputs)")
    try:
        spec = FlowSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = _loc_path(err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = f"unknown field {loc[-1]!r}"
            raise marks.error(loc, message, key=True) from None
        if err["type"] == "missing":
            message = f"missing field {loc[-1]!r}"
        raise marks.error(loc, message) from None
    return spec, marks, hashlib.sha256(text.encode()).hexdigest()
