"""The flow as a graph: `${...}` references, the step order, and every check that can fail before a run.

A reference is `${step.field}`, `${item}` / `${item.field}` or `${inputs.name}` — a lookup, never an
expression. A value that is exactly one reference keeps its type (an Audio stays an Audio); text around a
reference makes the whole value text. The checks here (unknown task, missing reference, cycle, wrong
modality, unknown option) all run at load time and name the YAML line and column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

from pydantic import ValidationError

from .spec import FlowSpec, Marks, Path_, StepSpec

if TYPE_CHECKING:
    from ..registry import Registry

__all__ = ["REF", "TASKS", "Graph", "TaskInfo", "refs_in", "single_ref"]

REF = re.compile(r"\$\{\s*([A-Za-z_][\w-]*)(?:\.([A-Za-z_][\w-]*))?\s*\}")
FILE, ANY = "file", "any"  # a path (loaded as whatever it holds) and "whatever it is" (sub-flow inputs)


@dataclass(frozen=True)
class TaskInfo:
    takes: frozenset[str]  # what `input` may be (modality values, or "file")
    gives: dict[str, str]  # field -> modality value
    main: str  # the field `save:` writes
    prompt: bool = False  # `prompt:` means something to it
    engine: bool = True  # calls an engine (so it has options and a concurrency lane)


def _t(*kinds: str) -> frozenset[str]:
    return frozenset({*kinds, FILE, ANY})


TASKS: dict[str, TaskInfo] = {
    "ask": TaskInfo(_t("text"), {"text": "text"}, "text", prompt=True),
    "transcribe": TaskInfo(_t("audio", "video"), {"text": "text", "segments": "segments"}, "text"),
    "speak": TaskInfo(_t("text"), {"audio": "audio"}, "audio"),
    "see": TaskInfo(_t("image"), {"text": "text"}, "text", prompt=True),
    "read_text": TaskInfo(_t("image"), {"text": "text"}, "text"),
    "embed": TaskInfo(_t("text", "image"), {"vector": "vector"}, "vector"),
    "watch": TaskInfo(_t("video"), {"segments": "segments", "text": "text"}, "text"),
    "draw": TaskInfo(_t("text"), {"image": "image"}, "image", prompt=True),
    "edit": TaskInfo(_t("image"), {"image": "image"}, "image", prompt=True),
    # no engine: word error rate of `input` against `reference` (the speech-check report)
    "wer": TaskInfo(_t("text"), {"wer": "data", "text": "text"}, "text", engine=False),
}
TEXTLIKE = {"text", "data", "vector", "segments", FILE, ANY}  # what can be written into a string


def refs_in(value: Any) -> Iterator[tuple[str, str | None]]:
    """Every (head, field) referenced anywhere in a YAML value."""
    if isinstance(value, str):
        for m in REF.finditer(value):
            yield m.group(1), m.group(2)
    elif isinstance(value, dict):
        for v in value.values():
            yield from refs_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from refs_in(v)


def single_ref(value: Any) -> tuple[str, str | None] | None:
    """(head, field) when `value` is exactly one reference and nothing else."""
    if isinstance(value, str):
        m = REF.fullmatch(value.strip())
        if m:
            return m.group(1), m.group(2)
    return None


@dataclass
class Graph:
    """The checked flow: step order, each step's dependencies, and the kind of every step field."""

    spec: FlowSpec
    marks: Marks
    subflows: dict[str, Any] = field(default_factory=dict)  # step name -> loaded Flow (a flow step)
    order: list[str] = field(default_factory=list)
    deps: dict[str, set[str]] = field(default_factory=dict)
    gives: dict[str, dict[str, str]] = field(default_factory=dict)

    def check(self, registry: "Registry | None") -> None:
        spec, marks = self.spec, self.marks
        if spec.for_each is not None:
            name = spec.for_each.removeprefix("inputs.")
            if name not in spec.inputs:
                raise marks.error(("for_each",), f"no input named {name!r}",
                                  hint=f"inputs: {', '.join(spec.inputs) or '(none)'}")
            if not spec.inputs[name].is_collection:
                raise marks.error(("for_each",), f"input {name!r} is one file, not a collection",
                                  hint="use glob:, folder:, list:, csv: or jsonl:")
        for name, step in spec.steps.items():
            if step.task is not None and step.task not in TASKS:
                raise marks.error(("steps", name, "task"), f"unknown task {step.task!r}",
                                  hint=f"tasks: {', '.join(sorted(TASKS))}")
            self.gives[name] = dict(TASKS[step.task].gives) if step.task else self.subflows[name].output_kinds()
        for name, step in spec.steps.items():
            self.deps[name] = set()
            for key, value in _fields(step):
                for head, fld in refs_in(value):
                    self._check_ref(("steps", name, *key), name, head, fld)
        self.order = self._topo()
        for name, step in spec.steps.items():
            if step.task is not None:
                self._check_modality(name, step)
                if registry is not None and TASKS[step.task].engine:
                    self._check_options(name, step, registry)
        for out, o in spec.outputs.items():
            for head, fld in refs_in(o.from_):
                self._check_ref(("outputs", out, "from"), None, head, fld)
            if isinstance(o.from_, dict):  # a record is JSON: each field must read as text, data or numbers
                for fname, value in o.from_.items():
                    self._check_textlike(("outputs", out, "from", fname), value)
            for head, fld in refs_in(o.file or ""):
                self._check_ref(("outputs", out, "file"), None, head, fld)

    def _check_ref(self, path: Path_, owner: str | None, head: str, fld: str | None) -> None:
        spec, marks = self.spec, self.marks
        if head == "item":
            if spec.for_each is None:
                raise marks.error(path, "${item...} needs `for_each:` (there is no item)")
            return
        if head == "inputs":
            if fld is None or fld not in spec.inputs:
                raise marks.error(path, f"no input named {fld!r}", hint=f"inputs: {', '.join(spec.inputs) or '(none)'}")
            return
        if head not in spec.steps:
            raise marks.error(path, f"reference to unknown step {head!r}",
                              hint=f"steps: {', '.join(spec.steps)}; or item, inputs")
        if head == owner:
            raise marks.error(path, f"step {head!r} refers to itself (a cycle)")
        gives = self.gives[head]
        if fld is None or fld not in gives:
            raise marks.error(path, f"step {head!r} has no field {fld!r}", hint=f"it gives: {', '.join(gives)}")
        if owner is not None:
            self.deps[owner].add(head)

    def _topo(self) -> list[str]:
        order: list[str] = []
        state: dict[str, int] = {}  # 1 visiting, 2 done

        def visit(name: str, trail: list[str]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                loop = trail[trail.index(name):] + [name]
                raise self.marks.error(("steps", name), f"cycle: {' -> '.join(loop)}", key=True)
            state[name] = 1
            for dep in sorted(self.deps[name]):
                visit(dep, [*trail, name])
            state[name] = 2
            order.append(name)

        for name in self.spec.steps:
            visit(name, [])
        return order

    def kind_of(self, value: Any) -> str:
        """The modality a value will have: one reference keeps its source's; a mapping is data (a record);
        anything else is text."""
        if isinstance(value, dict):
            return "data"
        ref = single_ref(value)
        if ref is None:
            return "text"
        head, fld = ref
        if head == "item":
            return FILE if fld in ("path", None) and self._item_is_file() else "text"
        if head == "inputs":
            inp = self.spec.inputs.get(fld or "")
            return FILE if inp is not None and inp.kind == "file" else ANY
        return self.gives.get(head, {}).get(fld or "", ANY)

    def _item_is_file(self) -> bool:
        name = (self.spec.for_each or "").removeprefix("inputs.")
        inp = self.spec.inputs.get(name)
        return inp is not None and inp.kind in ("glob", "folder")

    def _check_modality(self, name: str, step: StepSpec) -> None:
        info = TASKS[step.task or ""]
        marks = self.marks
        if step.input is None and not (info.prompt and step.prompt is not None):
            raise marks.error(("steps", name), f"task {step.task} needs `input:`", key=True)
        if step.input is not None:
            if single_ref(step.input) is None:
                self._check_textlike(("steps", name, "input"), step.input)
            kind = self.kind_of(step.input)
            if kind not in info.takes:
                takes = " or ".join(sorted(info.takes - {FILE, ANY}))
                raise marks.error(("steps", name, "input"),
                                  f"task {step.task} takes {takes}, but {step.input!r} is {kind}")
        for key, value in (("prompt", step.prompt), ("reference", step.reference)):
            if value is not None:
                self._check_textlike(("steps", name, key), value)
        if step.prompt is not None and not info.prompt:
            raise marks.error(("steps", name, "prompt"), f"task {step.task} takes no prompt")

    def _check_textlike(self, path: Path_, value: Any) -> None:
        """Text templates: every reference inside must be something that reads as text."""
        if single_ref(value) is not None:
            kind = self.kind_of(value)
        else:
            kinds = [self.kind_of("${%s%s}" % (h, f".{f}" if f else "")) for h, f in refs_in(value)]
            kind = next((k for k in kinds if k not in TEXTLIKE), "text")
        if kind not in TEXTLIKE:
            raise self.marks.error(path, f"expects text, but a reference in {value!r} is {kind}")

    def _check_options(self, name: str, step: StepSpec, registry: "Registry") -> None:
        from ..errors import ImagineError

        engine_id = engine_of(step, registry)
        if engine_id is None:
            return
        try:
            options_cls = registry.engine_class(engine_id).Options
        except ImagineError as exc:
            raise self.marks.error(("steps", name, "model"), str(exc)) from None
        try:
            options_cls.model_validate(step.options)
        except ValidationError as exc:
            err = exc.errors()[0]
            key = str(err["loc"][0]) if err["loc"] else ""
            path: Path_ = ("steps", name, "options", key) if key else ("steps", name, "options")
            if err["type"] == "extra_forbidden":
                known = ", ".join(options_cls.model_fields) or "(none)"
                raise self.marks.error(path, f"unknown option {key!r} for engine {engine_id}", key=True,
                                       hint=f"its options: {known}") from None
            raise self.marks.error(path, f"{err['msg']} (engine {engine_id})") from None


def _fields(step: StepSpec) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(YAML key path, value) of every templated field of a step."""
    for key in ("input", "prompt", "reference", "save"):
        value = getattr(step, key)
        if value is not None:
            yield (key,), value
    for i, a in enumerate(step.attach):
        yield ("attach", str(i)), a
    for k, v in step.inputs.items():
        yield ("inputs", k), v
    if step.when is not None:
        yield ("when", "left"), step.when.left
        yield ("when", "right"), step.when.right
    for k, v in (step.default or {}).items():
        yield ("default", k), v


def engine_of(step: StepSpec, registry: "Registry") -> str | None:
    """The engine id a step will use when that is known before running (a named model or the task's
    default engine); None when the router decides (auto, local, cloud, a policy)."""
    if step.model:
        ref = registry.expand(step.model)
        engine_id = ref.partition(":")[0]
        return engine_id if engine_id in registry.ids else None
    if step.policy:
        return None
    from ..tasks import TASK_DEFAULTS, task_default

    task = step.task or ""
    if task in ("transcribe", "speak", "read_text", "embed"):
        try:
            return task_default(task, registry) if task in ("speak",) else TASK_DEFAULTS[task]
        except Exception:  # noqa: BLE001 - a broken default is the run's error, not validation's
            return None
    if task == "ask":
        engine_id = registry.expand("auto").partition(":")[0]
        return engine_id if engine_id in registry.ids else None
    return None
