"""Running one step: fill its templates, check `when`, ask the cache, else call the task on the Client.

Every engine call goes through the caller's `Client` (its tasks, so it is logged like any other call);
nothing here reaches for a global client. Step values are Parts (a text is a `Text`), so a result can be
hashed for the cache key of the next step and stored in the blob store as it is.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ImagineError, InputError
from ..parts import Data, Part, Segments, Text, Vector, load_part
from .graph import REF, TASKS, engine_of, single_ref
from .inputs import Item
from .spec import FlowError, StepSpec, When

if TYPE_CHECKING:
    from ..client import Client
    from .state import RunState

__all__ = ["Context", "StepOutcome", "cache_key", "call_task", "check_when", "load_cached", "output_value",
           "plain", "resolve", "save_cached", "text_of", "wer"]


@dataclass
class Context:
    """What references read while one item runs."""

    item: Item | None
    inputs: dict[str, Any]
    steps: dict[str, dict[str, Part]] = field(default_factory=dict)


@dataclass
class StepOutcome:
    status: str  # done | cached | skipped | default | failed
    values: dict[str, Part] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


class Missing(Exception):
    """A reference to a step that did not run for this item (its `when` was false)."""


def lookup(head: str, fld: str | None, ctx: Context) -> Any:
    if head == "item":
        if ctx.item is None:
            raise FlowError("${item} outside for_each")
        if fld is None:
            return ctx.item.value
        if fld not in ctx.item.fields:
            raise InputError(f"item {ctx.item.key} has no field {fld!r} (it has: {', '.join(ctx.item.fields)})")
        return ctx.item.fields[fld]
    if head == "inputs":
        return ctx.inputs[fld or ""]
    if head not in ctx.steps:
        raise Missing(head)
    return ctx.steps[head][fld or ""]


def text_of(value: Any) -> str:
    """How a value reads inside a text template."""
    if isinstance(value, Text):
        return value.text
    if isinstance(value, Data):
        return value.value if isinstance(value.value, str) else json.dumps(value.value)
    if isinstance(value, Segments):
        return "\n".join(s.text.strip() for s in value.items if s.text.strip())
    if isinstance(value, Vector):
        return json.dumps(value.values)
    if isinstance(value, Part):
        raise InputError(f"a {value.modality.value} cannot be written into text")
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return "" if value is None else str(value)


def plain(value: Any) -> Any:
    """A value as JSON for a record output: text as a string, data as it is, a vector as its numbers."""
    if isinstance(value, Text):
        return value.text
    if isinstance(value, Data):
        return value.value
    if isinstance(value, Vector):
        return list(value.values)
    if isinstance(value, Segments):
        return [{"start": s.start, "end": s.end, "text": s.text} for s in value.items]
    if isinstance(value, Part):
        raise InputError(f"a {value.modality.value} cannot go into a record; give it an output file of its own")
    return value


def output_value(template: str | dict[str, str], ctx: Context) -> Any:
    """What an output's `from` gives: the reference's value, or for a mapping one `Data` record."""
    if isinstance(template, dict):
        return Data({k: plain(resolve(v, ctx)) for k, v in template.items()})
    return resolve(template, ctx)


def resolve(value: Any, ctx: Context) -> Any:
    """A template with its references filled: one reference keeps its value, text around makes text."""
    if isinstance(value, str):
        ref = single_ref(value)
        if ref is not None:
            return lookup(ref[0], ref[1], ctx)
        return REF.sub(lambda m: text_of(lookup(m.group(1), m.group(2), ctx)), value)
    if isinstance(value, list):
        return [resolve(v, ctx) for v in value]
    if isinstance(value, dict):
        return {k: resolve(v, ctx) for k, v in value.items()}
    return value


def _number(value: Any) -> float | None:
    try:
        return float(text_of(value))
    except (ValueError, InputError):
        return None


def check_when(when: When, ctx: Context) -> bool:
    """The comparison, on numbers when both sides read as numbers, else on text."""
    left, right = resolve(when.left, ctx), resolve(when.right, ctx)
    op = when.op
    if op in ("empty", "not_empty"):
        return (not text_of(left).strip()) == (op == "empty")
    ln, rn = _number(left), _number(right)
    if op in ("lt", "le", "gt", "ge"):
        if ln is None or rn is None:
            raise InputError(f"when: {op} compares numbers, got {text_of(left)!r} and {text_of(right)!r}")
        return {"lt": ln < rn, "le": ln <= rn, "gt": ln > rn, "ge": ln >= rn}[op]
    lt, rt = text_of(left), text_of(right)
    if op in ("eq", "ne"):
        same = ln == rn if ln is not None and rn is not None else lt == rt
        return same if op == "eq" else not same
    return {"contains": rt in lt, "not_contains": rt not in lt, "startswith": lt.startswith(rt),
            "endswith": lt.endswith(rt)}[op]


# -- the cache ----------------------------------------------------------------------------------------

def _digest(value: Any) -> str:
    if isinstance(value, Part):
        return value.sha256
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def cache_key(step: StepSpec, args: dict[str, Any], client: "Client") -> str:
    """step spec + engine id and version + options + the hashes of the input parts."""
    registry = client.registry
    engine_id = engine_of(step, registry) if TASKS[step.task or ""].engine else None
    version = ""
    if engine_id is not None:
        try:
            version = registry.engine_class(engine_id).version()
        except ImagineError:
            version = "?"
    body = {"v": 1, "step": step.digest(), "engine": engine_id, "version": version,
            "default_model": client.settings.model if engine_id is None else None,
            "args": {k: _digest(v) for k, v in sorted(args.items())}}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def save_cached(key: str, outcome: StepOutcome, client: "Client", state: "RunState") -> None:
    store = client.store
    record = {"fields": {k: store.put_part(p) for k, p in outcome.values.items()}, "provenance": outcome.provenance}
    body = json.dumps(record, sort_keys=True, default=str).encode()
    sha = hashlib.sha256(body).hexdigest()
    store.blobs.put(body, sha)
    store.pin(sha, "flows")  # no log row names a cached result: the pin keeps it (and its parts) from `logs gc`
    previous = state.cached(key)
    state.remember(key, sha)
    if previous is not None and previous != sha:
        store.unpin(previous, "flows")


def load_cached(key: str, client: "Client", state: "RunState") -> StepOutcome | None:
    """The stored result, or None when there is none or a blob it needs is gone (then it is recomputed)."""
    sha = state.cached(key)
    if sha is None:
        return None
    store = client.store
    try:
        record = json.loads(store.blobs.get(sha))
        values = {k: store.part_from_record(r) for k, r in record["fields"].items()}
    except (ImagineError, ValueError, KeyError):
        state.forget(key)
        return None
    return StepOutcome("cached", values, {**record.get("provenance", {}), "cached": True})


# -- calling the task -----------------------------------------------------------------------------------

def media(value: Any, client: "Client") -> Any:
    """A path (a file input, `${item.path}`) becomes the part it holds; parts and text pass through."""
    if isinstance(value, str) and not isinstance(value, Part):
        return load_part(value, limits=client.settings.part_limits())
    return value


def step_args(step: StepSpec, ctx: Context, client: "Client") -> dict[str, Any]:
    """The step's resolved inputs, media loaded, so their hashes can key the cache."""
    task = step.task or ""
    args: dict[str, Any] = {}
    if step.input is not None:
        value = resolve(step.input, ctx)
        if task in ("ask", "speak", "draw", "wer"):
            value = text_of(value)
        elif task == "embed":  # a string is a text to embed; a part (an image) is embedded as it is
            value = value if isinstance(value, Part) and not isinstance(value, (Text, Data)) else text_of(value)
        else:
            value = media(value, client)
        args["input"] = value
    if step.prompt is not None:
        args["prompt"] = text_of(resolve(step.prompt, ctx))
    if step.reference is not None:
        args["reference"] = text_of(resolve(step.reference, ctx))
    if step.attach:
        args["attach"] = [media(resolve(a, ctx), client) for a in step.attach]
    return args


async def call_task(step: StepSpec, args: dict[str, Any], client: "Client") -> StepOutcome:
    """Run the task once; the outcome's values are keyed by the task's field names."""
    task, model, options = step.task or "", step.model, dict(step.options)
    if task == "wer":
        score = wer(args.get("reference", ""), args.get("input", ""))
        return StepOutcome("done", {"wer": Data(score), "text": Text(f"{score:.3f}")}, {"engine": None})
    if step.policy:
        from ..client import Client as _Client

        client = _Client(settings=client.settings, registry=client.registry, router=client.router,
                         store=client.store, policy=step.policy)
    value = args.get("input")
    if task == "watch":
        from ..timeline import timeline_text, watch

        timeline = await asyncio.to_thread(watch, value, client=client, **options)  # type: ignore[arg-type]
        return StepOutcome("done", {"segments": timeline, "text": Text(timeline_text(timeline))},
                           {"engine": "watch", "log_id": None})
    if task == "ask":
        prompt = "\n\n".join(p for p in (args.get("prompt"), value) if p)
        response = client.ask(prompt, model, attach=args.get("attach", ()), options=options)
    elif task == "see":
        response = client.see(value, args.get("prompt") or "Describe this image.", model, **options)
    elif task == "draw":
        response = client.draw("\n".join(p for p in (value, args.get("prompt")) if p), model, **options)
    elif task == "edit":
        response = client.edit(value, args.get("prompt") or "", model, **options)
    else:  # transcribe, speak, read_text, embed: the input is the whole request
        response = getattr(client, task)(value, model, **options)
    await response
    values: dict[str, Part] = {}
    parts = response.parts
    if task in ("speak",):
        values["audio"] = next(p for p in parts if p.modality.value == "audio")
    elif task in ("draw", "edit"):
        values["image"] = next(p for p in parts if p.modality.value == "image")
    elif task == "embed":
        values["vector"] = next(p for p in parts if isinstance(p, Vector))
    else:
        values["text"] = Text(response.text())
        if task == "transcribe":
            values["segments"] = next((p for p in parts if isinstance(p, Segments)), Segments([]))
    return StepOutcome("done", values, {"engine": response.answered_ref, "model_ref": response.model_ref,
                                        "log_id": response.id})


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: word-level edit distance over the reference's length (case and punctuation off)."""
    def words(text: str) -> list[str]:
        return ["".join(c for c in w.lower() if c.isalnum() or c == "'") for w in text.split()
                if any(c.isalnum() for c in w)]

    ref, hyp = words(reference), words(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / len(ref)
